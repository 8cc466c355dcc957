//! A small ONNX graph builder over the generated `proto` types: named float/int64 initializers,
//! nodes with generated output names, typed graph inputs/outputs, and the model wrapper
//! (IR version, opset, metadata). Float initializers and the compute between the graph's inputs
//! and outputs are of the builder's [`Precision`]; inputs and outputs are float32 either way.

use std::collections::HashSet;

use anyhow::{bail, Result};
use burn::tensor::f16;

use super::proto::{
    attribute_proto::AttributeType, tensor_proto::DataType, tensor_shape_proto, type_proto,
    AttributeProto, GraphProto, ModelProto, NodeProto, OperatorSetIdProto, StringStringEntryProto,
    TensorProto, TensorShapeProto, TypeProto, ValueInfoProto,
};
use super::Precision;

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

/// A float32 value of the graph's interface (inputs and outputs are float32 in every precision).
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

/// A node `Cast(input) -> output` to the ONNX element type `to`.
fn cast(input: &str, output: &str, to: DataType) -> NodeProto {
    NodeProto {
        op_type: Some("Cast".into()),
        name: Some(format!("{output}/Cast")),
        input: vec![input.to_string()],
        output: vec![output.to_string()],
        attribute: vec![attribute("to", Attr::Int(to as i64))],
        ..Default::default()
    }
}

/// `values` as little-endian bytes of `precision`; the first value float16 cannot hold (beyond
/// ±65504, which would become an infinity) is an error.
fn encode_floats(precision: Precision, values: &[f32]) -> Result<Vec<u8>, f32> {
    match precision {
        Precision::Fp32 => Ok(values.iter().flat_map(|v| v.to_le_bytes()).collect()),
        Precision::Fp16 => values
            .iter()
            .map(|&v| {
                let h = f16::from_f32(v);
                if h.is_finite() || !v.is_finite() {
                    Ok(h.to_le_bytes())
                } else {
                    Err(v)
                }
            })
            .collect::<Result<Vec<[u8; 2]>, f32>>()
            .map(|halves| halves.concat()),
    }
}

/// Accumulates the nodes and initializers of one graph, in topological order.
pub struct GraphBuilder {
    precision: Precision,
    /// The first initializer whose values do not fit `precision`, reported by `into_model`.
    overflow: Option<String>,
    nodes: Vec<NodeProto>,
    initializers: Vec<TensorProto>,
    inputs: Vec<ValueInfoProto>,
    outputs: Vec<ValueInfoProto>,
    /// Names of the shared int64 / scalar constants already stored.
    constants: HashSet<String>,
    next_id: usize,
}

impl GraphBuilder {
    /// An empty graph whose weights and compute are of `precision`.
    pub fn new(precision: Precision) -> Self {
        Self {
            precision,
            overflow: None,
            nodes: Vec::new(),
            initializers: Vec::new(),
            inputs: Vec::new(),
            outputs: Vec::new(),
            constants: HashSet::new(),
            next_id: 0,
        }
    }

    /// Declares a float32 graph input; returns the value the graph computes on (the input
    /// itself, or its Cast to the builder's precision).
    pub fn input(&mut self, name: &str, dims: &[Dim]) -> String {
        self.inputs.push(value_info(name, dims));
        match self.precision {
            Precision::Fp32 => name.to_string(),
            precision => {
                let compute = format!("{name}:{precision}");
                self.nodes.push(cast(name, &compute, precision.data_type()));
                compute
            }
        }
    }

    /// Marks `value` as a float32 graph output called `name`: through an Identity when the
    /// names differ, or a Cast to float32 when the graph computes in another precision.
    pub fn output(&mut self, value: &str, name: &str, dims: &[Dim]) {
        if self.precision != Precision::Fp32 {
            self.nodes.push(cast(value, name, DataType::Float));
        } else if value != name {
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

    /// A constant tensor of the builder's precision, stored as raw little-endian bytes.
    pub fn weight(&mut self, name: &str, dims: &[usize], data: &[f32]) -> String {
        assert_eq!(
            dims.iter().product::<usize>(),
            data.len(),
            "{name}: shape {dims:?} does not match {} values",
            data.len()
        );
        let raw = match encode_floats(self.precision, data) {
            Ok(raw) => raw,
            Err(value) => {
                self.overflow.get_or_insert_with(|| {
                    format!(
                        "{name} holds {value}, beyond float16's range (±65504): export it with \
                         precision fp32"
                    )
                });
                Vec::new()
            }
        };
        self.initializers.push(TensorProto {
            name: Some(name.to_string()),
            dims: dims.iter().map(|&d| d as i64).collect(),
            data_type: Some(self.precision.data_type() as i32),
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

    /// A scalar (rank 0) constant of the builder's precision (`value` is one of the model's own
    /// constants, such as √2, which every precision holds).
    pub fn scalar(&mut self, value: f32) -> String {
        let raw = encode_floats(self.precision, &[value]).expect("a constant within float16");
        let name = format!("const_{}_{value:e}", self.precision);
        self.shared_constant(name, vec![], self.precision.data_type(), raw)
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

    /// Wraps the graph into a model with the given metadata (`metadata_props`); an error when a
    /// weight did not fit the precision.
    pub fn into_model(
        self,
        graph_name: &str,
        metadata: Vec<(String, String)>,
    ) -> Result<ModelProto> {
        if let Some(overflow) = self.overflow {
            bail!("cannot export in {}: {overflow}", self.precision);
        }
        Ok(ModelProto {
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
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fp16_weights_are_half_the_bytes_and_an_overflow_names_the_weight() {
        let mut g = GraphBuilder::new(Precision::Fp16);
        g.weight("small", &[2], &[1.0, -0.5]);
        let model = GraphBuilder::new(Precision::Fp16).into_model("m", vec![]);
        assert!(model.is_ok());
        let tensor = &g.initializers[0];
        assert_eq!(tensor.data_type, Some(DataType::Float16 as i32));
        assert_eq!(
            tensor.raw_data.as_deref(),
            Some(&[0x00, 0x3c, 0x00, 0xb8][..])
        );
        g.weight("layers.0.big", &[2], &[1.0, 1e5]);
        let error = g.into_model("m", vec![]).unwrap_err().to_string();
        assert_eq!(
            error,
            "cannot export in fp16: layers.0.big holds 100000, beyond float16's range (±65504): \
             export it with precision fp32"
        );
    }

    #[test]
    fn fp16_graphs_cast_the_float32_input_and_outputs() {
        let mut g = GraphBuilder::new(Precision::Fp16);
        let x = g.input("images", &[Dim::Dynamic("batch")]);
        let y = g.node("s", "Relu", &[&x], vec![]);
        g.output(&y, "pooled", &[Dim::Dynamic("batch")]);
        let graph = g.into_model("m", vec![]).unwrap().graph.unwrap();
        let ops: Vec<(&str, &[String], &[String])> = graph
            .node
            .iter()
            .map(|n| (n.op_type(), &n.input[..], &n.output[..]))
            .collect();
        let strings = |s: &[&str]| s.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(ops[0].0, "Cast");
        assert_eq!(ops[0].1, strings(&["images"]));
        assert_eq!(ops[0].2, strings(&["images:fp16"]));
        assert_eq!(ops[2].0, "Cast");
        assert_eq!(ops[2].2, strings(&["pooled"]));
        let to = |i: usize| graph.node[i].attribute[0].i;
        assert_eq!(to(0), Some(DataType::Float16 as i64));
        assert_eq!(to(2), Some(DataType::Float as i64));
    }
}
