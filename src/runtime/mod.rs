//! Running exported models in ONNX Runtime: the library and environment (`ort_env.rs`), a
//! session with its model card ([`OnnxModel`]), checking against burn (`verify.rs`), image
//! classification (`infer.rs`, images read by `crate::data::preprocess`) and the ORT-vs-burn benchmark (`bench.rs`).

pub mod bench;
pub mod infer;
pub mod ort_env;

pub mod verify;

use std::collections::HashMap;
use std::path::Path;

use anyhow::{ensure, Context, Result};
use ort::session::builder::GraphOptimizationLevel;
use ort::session::Session;
use ort::value::TensorRef;

use crate::onnx::ModelCard;

/// One output of a run: shape and row-major values.
#[derive(Debug, Clone, PartialEq)]
pub struct Output {
    pub name: String,
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
}

/// An exported eesmm model in an ORT session, with its card.
pub struct OnnxModel {
    session: Session,
    pub card: ModelCard,
}

impl OnnxModel {
    /// Loads an `.onnx` file written by `eesmm export`.
    pub fn load(path: &Path) -> Result<Self> {
        ort_env::environment()?;
        let bytes =
            std::fs::read(path).with_context(|| format!("{}: cannot read", path.display()))?;
        Self::from_bytes(&bytes).with_context(|| path.display().to_string())
    }

    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        let env = ort_env::environment()?;
        let cannot_load = |e: String| anyhow::anyhow!("ONNX Runtime cannot load the model: {e}");
        let session = Session::builder(env)
            .map_err(|e| cannot_load(e.to_string()))?
            .with_optimization_level(GraphOptimizationLevel::All)
            .map_err(|e| cannot_load(e.to_string()))?
            .commit_from_memory(bytes)
            .map_err(|e| cannot_load(e.to_string()))?;
        let no_metadata = |e: ort::Error| anyhow::anyhow!("cannot read the model metadata: {e}");
        let metadata = session.metadata().map_err(no_metadata)?;
        let keys = metadata.custom_keys().map_err(no_metadata)?;
        let props: HashMap<String, String> = keys
            .into_iter()
            .filter_map(|k| metadata.custom(&k).map(|v| (k, v)))
            .collect();
        let card = ModelCard::from_metadata(&props)?;
        drop(metadata);
        Ok(Self { session, card })
    }

    pub fn has_output(&self, name: &str) -> bool {
        self.card.outputs.iter().any(|o| o == name)
    }

    /// Runs `images` (`[batch, in_chans, H, W]` row-major) and returns every graph output.
    pub fn run(&mut self, images: &[f32], batch: usize) -> Result<Vec<Output>> {
        let side = self.card.image_size;
        let shape = [batch, self.card.in_chans, side, side];
        ensure!(
            images.len() == shape.iter().product::<usize>(),
            "{} values are not a batch of shape {shape:?}",
            images.len()
        );
        let input = TensorRef::from_array_view((shape, images))
            .map_err(|e| anyhow::anyhow!("cannot make the input tensor: {e}"))?;
        let outputs = self
            .session
            .run(ort::inputs!["images" => input])
            .map_err(|e| anyhow::anyhow!("ONNX Runtime failed: {e}"))?;
        outputs
            .iter()
            .map(|(name, value)| {
                let (shape, data) = value
                    .try_extract_tensor::<f32>()
                    .map_err(|e| anyhow::anyhow!("output {name}: {e}"))?;
                Ok(Output {
                    name: name.to_string(),
                    shape: shape.iter().map(|&d| d as usize).collect(),
                    data: data.to_vec(),
                })
            })
            .collect()
    }
}
