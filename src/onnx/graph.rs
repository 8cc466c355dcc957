//! A small ONNX graph builder over the generated `proto` types: named float/int64 initializers,
//! nodes with generated output names, typed graph inputs/outputs, and the model wrapper
//! (IR version, opset, metadata).

use std::collections::HashSet;

use super::proto::{
    attribute_proto::AttributeType, tensor_proto::DataType, tensor_shape_proto, type_proto,
    AttributeProto, GraphProto, ModelProto, NodeProto, OperatorSetIdProto, StringStringEntryProto,
    TensorProto, TensorShapeProto, TypeProto, ValueInfoProto,
};

/// ONNX IR version 8 (ONNX 1.10+) with the default-domain opset 17 (LayerNormalization).
pub const IR_VERSION: i64 = 8;
pub const OPSET: i64 = 17;

/// One dimension of a graph input or output: fixed, or named and dynamic (the batch).
#[derive(Debug, Clone, PartialEq)]
pub enum Dim {
    Fixed(usize),
    Dynamic(&'static str),
}

/// A node attribute value.
pub enum Attr {
    Int(i64),
    Ints(Vec<i64>),
    Float(f32),
}

fn attribute(name: &str, value: Attr) -> AttributeProto {
    let mut proto = AttributeProto {
        name: Some(name.to_string()),
        ..Default::default()
    };
    let kind = match value {
        Attr::Int(i) => {
            proto.i = Some(i);
            AttributeType::Int
        }
        Attr::Ints(ints) => {
            proto.ints = ints;
            AttributeType::Ints
        }
        Attr::Float(f) => {
            proto.f = Some(f);
            AttributeType::Float
        }
    };
    proto.r#type = Some(kind as i32);
    proto
}

fn value_info(name: &str, dims: &[Dim]) -> ValueInfoProto {
    let dim = dims
        .iter()
        .map(|d| tensor_shape_proto::Dimension {
            value: Some(match d {
                Dim::Fixed(n) => tensor_shape_proto::dimension::Value::DimValue(*n as i64),
                Dim::Dynamic(name) => {
                    tensor_shape_proto::dimension::Value::DimParam(name.to_string())
                }
            }),
            ..Default::default()
        })
        .collect();
    ValueInfoProto {
        name: Some(name.to_string()),
        r#type: Some(TypeProto {
            value: Some(type_proto::Value::TensorType(type_proto::Tensor {
                elem_type: Some(DataType::Float as i32),
                shape: Some(TensorShapeProto { dim }),
            })),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Accumulates the nodes and initializers of one graph, in topological order.
#[derive(Default)]
pub struct GraphBuilder {
    nodes: Vec<NodeProto>,
    initializers: Vec<TensorProto>,
    inputs: Vec<ValueInfoProto>,
    outputs: Vec<ValueInfoProto>,
    /// Names of the shared int64 / scalar constants already stored.
    constants: HashSet<String>,
    next_id: usize,
}

impl GraphBuilder {
    /// Declares a float32 graph input.
    pub fn input(&mut self, name: &str, dims: &[Dim]) -> String {
        self.inputs.push(value_info(name, dims));
        name.to_string()
    }

    /// Marks `value` as a float32 graph output called `name` (through an Identity when the
    /// names differ).
    pub fn output(&mut self, value: &str, name: &str, dims: &[Dim]) {
        if value != name {
            self.nodes.push(NodeProto {
                op_type: Some("Identity".into()),
                name: Some(format!("{name}/Identity")),
                input: vec![value.to_string()],
                output: vec![name.to_string()],
                ..Default::default()
            });
        }
        self.outputs.push(value_info(name, dims));
    }

    /// A float32 constant tensor, stored as raw little-endian bytes.
    pub fn weight(&mut self, name: &str, dims: &[usize], data: &[f32]) -> String {
        assert_eq!(
            dims.iter().product::<usize>(),
            data.len(),
            "{name}: shape {dims:?} does not match {} values",
            data.len()
        );
        let raw = data.iter().flat_map(|v| v.to_le_bytes()).collect();
        self.initializers.push(TensorProto {
            name: Some(name.to_string()),
            dims: dims.iter().map(|&d| d as i64).collect(),
            data_type: Some(DataType::Float as i32),
            raw_data: Some(raw),
            ..Default::default()
        });
        name.to_string()
    }

    /// A 1-D int64 constant (shapes, slice bounds, axes), named after its values so that equal
    /// constants are stored once.
    pub fn ints(&mut self, values: &[i64]) -> String {
        let text: Vec<String> = values.iter().map(i64::to_string).collect();
        let name = format!("const_i64_[{}]", text.join(","));
        let raw = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        self.shared_constant(name, vec![values.len()], DataType::Int64, raw)
    }

    /// A scalar (rank 0) float32 constant.
    pub fn scalar(&mut self, value: f32) -> String {
        let raw = value.to_le_bytes().to_vec();
        self.shared_constant(format!("const_f32_{value:e}"), vec![], DataType::Float, raw)
    }

    fn shared_constant(
        &mut self,
        name: String,
        dims: Vec<usize>,
        data_type: DataType,
        raw: Vec<u8>,
    ) -> String {
        if self.constants.insert(name.clone()) {
            self.initializers.push(TensorProto {
                name: Some(name.clone()),
                dims: dims.iter().map(|&d| d as i64).collect(),
                data_type: Some(data_type as i32),
                raw_data: Some(raw),
                ..Default::default()
            });
        }
        name
    }

    /// Appends a node with one output, named `{scope}/{op}_{n}`; returns the output's name.
    pub fn node(
        &mut self,
        scope: &str,
        op: &str,
        inputs: &[&str],
        attrs: Vec<(&str, Attr)>,
    ) -> String {
        let name = format!("{scope}/{op}_{}", self.next_id);
        self.next_id += 1;
        let output = format!("{name}:0");
        self.nodes.push(NodeProto {
            op_type: Some(op.to_string()),
            name: Some(name),
            input: inputs.iter().map(|s| s.to_string()).collect(),
            output: vec![output.clone()],
            attribute: attrs
                .into_iter()
                .map(|(name, value)| attribute(name, value))
                .collect(),
            ..Default::default()
        });
        output
    }

    /// Wraps the graph into a model with the given metadata (`metadata_props`).
    pub fn into_model(self, graph_name: &str, metadata: Vec<(String, String)>) -> ModelProto {
        ModelProto {
            ir_version: Some(IR_VERSION),
            opset_import: vec![OperatorSetIdProto {
                domain: Some(String::new()),
                version: Some(OPSET),
            }],
            producer_name: Some("eesmm".into()),
            producer_version: Some(env!("CARGO_PKG_VERSION").into()),
            graph: Some(GraphProto {
                name: Some(graph_name.to_string()),
                node: self.nodes,
                initializer: self.initializers,
                input: self.inputs,
                output: self.outputs,
                ..Default::default()
            }),
            metadata_props: metadata
                .into_iter()
                .map(|(key, value)| StringStringEntryProto {
                    key: Some(key),
                    value: Some(value),
                })
                .collect(),
            ..Default::default()
        }
    }
}
