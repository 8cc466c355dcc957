//! The `eesmm` command line: one subcommand per thing a user does.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::backend::DeviceSpec;

#[derive(Debug, Parser)]
#[command(
    name = "eesmm",
    version,
    about = "Pretrain Swin backbones with EESMM, fine-tune, ship ONNX"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Parameter count, per-stage shapes and FLOPs of a model preset.
    Info {
        /// Model preset (YAML with timm SwinTransformer keys), e.g. models/swin-t.yaml.
        model: PathBuf,
    },
    /// Run the encoder on an NCHW float32 .npy and write pooled features (and logits).
    Features(FeaturesArgs),
    /// Pretrain an encoder (EESMM or the SimMIM baseline) from a stage YAML.
    Pretrain {
        /// Stage YAML (model, data, objective, optimizer, train).
        #[arg(long)]
        config: PathBuf,
        /// Resume from this checkpoint folder (default: the run directory's latest, if any).
        #[arg(long)]
        resume: Option<PathBuf>,
    },
    /// Compare two .npy arrays (e.g. eesmm features against PyTorch's); exit 1 above --tol.
    Diff {
        actual: PathBuf,
        expected: PathBuf,
        /// Largest allowed absolute difference.
        #[arg(long, default_value_t = 1e-4)]
        tol: f32,
    },
    /// Throughput benchmarks (images/s).
    #[command(subcommand)]
    Bench(BenchCommand),
}

#[derive(Debug, Args)]
pub struct FeaturesArgs {
    /// Model preset (YAML).
    #[arg(long)]
    pub model: PathBuf,
    /// Weights: timm safetensors, PyTorch .pth/.pt (timm or Microsoft/SimMIM layout).
    #[arg(long)]
    pub weights: PathBuf,
    /// Input images, float32 .npy of shape [N, in_chans, img_size, img_size].
    #[arg(long)]
    pub input: PathBuf,
    /// Where to write the pooled features, [N, num_features].
    #[arg(long)]
    pub out: PathBuf,
    /// Also write the classifier logits [N, classes] here (the weights must have a head).
    #[arg(long)]
    pub logits: Option<PathBuf>,
    #[arg(long, default_value = "cpu")]
    pub device: DeviceSpec,
}

#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Encoder forward and forward+backward images/s.
    Encoder(EncoderBenchArgs),
}

#[derive(Debug, Args)]
pub struct EncoderBenchArgs {
    /// Model preset; without it, the two standard cases run: swin-micro-32 at batch 32 and
    /// swin-t at batch 8.
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// Batch size (with --model).
    #[arg(long, default_value_t = 8)]
    pub batch: usize,
    /// Timed iterations; the median is reported.
    #[arg(long, default_value_t = 5)]
    pub iters: usize,
    /// Untimed iterations first.
    #[arg(long, default_value_t = 1)]
    pub warmup: usize,
    #[arg(long, default_value = "cpu")]
    pub device: DeviceSpec,
    /// Print one JSON object per case instead of a table.
    #[arg(long)]
    pub json: bool,
}
