//! The `eesmm` command line: one subcommand per thing a user does. Each command's flags convert
//! to the plain options of the library function that does the work (`options()`).

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use eesmm::backend::DeviceSpec;
use eesmm::bench::ThroughputOptions;
use eesmm::onnx::{ExportOptions, Precision};
use eesmm::runtime::bench::OnnxBenchOptions;
use eesmm::runtime::infer::InferOptions;
use eesmm::runtime::verify::VerifyOptions;
use eesmm::train::nodes::NodeOptions;

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
        #[command(flatten)]
        nodes: NodeArgs,
    },
    /// Fine-tune a classifier (encoder + pool + linear head) from a stage YAML.
    Finetune {
        /// Stage YAML (model, init, data, eval_data, augment, optimizer, train).
        #[arg(long)]
        config: PathBuf,
        /// Resume from this checkpoint folder (default: the run directory's latest, if any).
        #[arg(long)]
        resume: Option<PathBuf>,
        #[command(flatten)]
        nodes: NodeArgs,
    },
    /// Evaluate a classifier: top-1/top-5, per-class accuracy, confusion matrix (JSON + PNG).
    Eval {
        /// Stage YAML (weights, data, out_dir).
        #[arg(long)]
        config: PathBuf,
    },
    /// Train a linear classifier on a frozen encoder's pooled features.
    LinearProbe {
        /// Stage YAML (weights, train_data, test_data, probe, out_dir).
        #[arg(long)]
        config: PathBuf,
    },
    /// Classify by a k-nearest-neighbour vote over a frozen encoder's pooled features.
    Knn {
        /// Stage YAML (weights, train_data, test_data, knn, out_dir).
        #[arg(long)]
        config: PathBuf,
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
    /// Summaries of experiments: tables and plots.
    #[command(subcommand)]
    Report(ReportCommand),
    /// Write a model as ONNX (opset 17, dynamic batch) with a model card in its metadata.
    Export(ExportArgs),
    /// Run an exported model in ONNX Runtime and burn on the same inputs; exit 1 above --tol.
    Verify(VerifyArgs),
    /// Classify images (or embed them, --features) with an exported model in ONNX Runtime.
    Infer(InferArgs),
    /// Run a pipeline: the stages of one YAML file in order, each skipped while its
    /// configuration and inputs are unchanged since it last finished.
    Run(RunArgs),
}

#[derive(Debug, Subcommand)]
pub enum ReportCommand {
    /// The label-efficiency experiment (scripts/experiments/label_efficiency.py): a Markdown table of
    /// top-1 mean ± std per pretraining and label count, and a plot.
    LabelEfficiency {
        /// Its rows (docs/results/label-efficiency.json).
        #[arg(long)]
        results: PathBuf,
        /// The PNG to write.
        #[arg(long)]
        plot: PathBuf,
    },
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// Pipeline YAML (name, run_dir, vars, defaults, stages).
    pub pipeline: PathBuf,
    /// Override a value: STAGE.KEY.SUB=VALUE, vars.NAME=VALUE or defaults.KEY=VALUE (YAML value).
    #[arg(long = "set", value_name = "PATH=VALUE")]
    pub set: Vec<String>,
    /// Run from this stage on; the stages before it must be up to date.
    #[arg(long, value_name = "STAGE", conflicts_with = "only")]
    pub from: Option<String>,
    /// Run only this stage.
    #[arg(long, value_name = "STAGE")]
    pub only: Option<String>,
    /// Run the selected stages even when they are up to date.
    #[arg(long)]
    pub force: bool,
    /// Check the pipeline and print the resolved plan; run and write nothing.
    #[arg(long)]
    pub dry_run: bool,
    #[command(flatten)]
    pub nodes: NodeArgs,
}

/// Multi-node data parallelism (docs/multi-node.md): one command per machine, the same but
/// for --node-rank. Each flag can be given as its environment variable instead, as torchrun's.
#[derive(Debug, Args)]
pub struct NodeArgs {
    /// Machines (processes) in the run; each runs its `device:` list.
    #[arg(
        long,
        env = "EESMM_NODES",
        default_value_t = 1,
        help_heading = "Multi-node"
    )]
    pub nodes: usize,
    /// This machine's rank, 0..NODES-1; node 0 runs the orchestrator and writes every output.
    #[arg(
        long,
        env = "EESMM_NODE_RANK",
        default_value_t = 0,
        help_heading = "Multi-node"
    )]
    pub node_rank: usize,
    /// HOST:PORT of node 0's orchestrator (the same on every node).
    #[arg(
        long,
        env = "EESMM_COORDINATOR",
        value_name = "HOST:PORT",
        help_heading = "Multi-node"
    )]
    pub coordinator: Option<String>,
    /// HOST:PORT where the other nodes reach this node's data service (default: this machine's
    /// address towards the coordinator, port = the coordinator's + 1 + the node rank).
    #[arg(
        long,
        env = "EESMM_NODE_ADDRESS",
        value_name = "HOST:PORT",
        help_heading = "Multi-node"
    )]
    pub node_address: Option<String>,
    /// Seconds a node waits for the others in one collective operation before it exits 1.
    #[arg(
        long,
        env = "EESMM_NODE_TIMEOUT",
        default_value_t = 600,
        help_heading = "Multi-node"
    )]
    pub node_timeout: u64,
}

impl NodeArgs {
    pub fn options(&self) -> NodeOptions {
        NodeOptions {
            nodes: self.nodes,
            node_rank: self.node_rank,
            coordinator: self.coordinator.clone(),
            node_address: self.node_address.clone(),
            timeout_s: self.node_timeout,
        }
    }
}

#[derive(Debug, Args)]
pub struct ExportArgs {
    /// Model preset (YAML; default: the architecture in the weights' .json sidecar).
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// Weights: an eesmm checkpoint, timm safetensors or PyTorch .pth/.pt (timm or Microsoft).
    #[arg(long)]
    pub weights: PathBuf,
    /// Output .onnx file.
    #[arg(long)]
    pub out: PathBuf,
    /// Export the classifier (adds the `logits` output; the weights must have a head).
    #[arg(long)]
    pub head: bool,
    /// Also output the final feature map `features` [batch, H/s, W/s, C] (NHWC).
    #[arg(long)]
    pub feature_map: bool,
    /// Class names for the model card, one per line (default: those in the weights' .json
    /// sidecar written by eesmm, else class_0, class_1, ...).
    #[arg(long)]
    pub labels: Option<PathBuf>,
    /// Normalisation mean per channel for the model card (default: the sidecar's, else ImageNet's).
    #[arg(long, value_delimiter = ',')]
    pub mean: Option<Vec<f32>>,
    /// Normalisation std per channel for the model card (default: the sidecar's, else ImageNet's).
    #[arg(long, value_delimiter = ',')]
    pub std: Option<Vec<f32>>,
    /// Weights and compute in fp32 or fp16 (inputs and outputs stay float32, through Casts).
    #[arg(long, default_value = "fp32")]
    pub precision: Precision,
}

#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// The exported .onnx file.
    pub onnx: PathBuf,
    /// The weights it was exported from.
    #[arg(long)]
    pub weights: PathBuf,
    /// Model preset (default: the config in the model card).
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// Real images (files or folders) to compare on, besides random inputs.
    #[arg(long, num_args = 1..)]
    pub images: Vec<PathBuf>,
    /// Largest allowed absolute difference on any output (default 1e-4; an fp16 export: 1e-2
    /// relative to the largest burn output).
    #[arg(long)]
    pub tol: Option<f32>,
    /// Random inputs, and the larger batch of the latency measurement.
    #[arg(long, default_value_t = 8)]
    pub batch: usize,
    /// Timed runs per latency (the median is reported).
    #[arg(long, default_value_t = 3)]
    pub iters: usize,
    /// Print one JSON report.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct InferArgs {
    /// Image files or folders (every file in a folder; the format is read from the content).
    #[arg(required = true)]
    pub images: Vec<PathBuf>,
    /// The exported .onnx file.
    #[arg(long)]
    pub model: PathBuf,
    /// Classes to print per image.
    #[arg(long, default_value_t = 5)]
    pub topk: usize,
    /// One JSON object per line and image: {file, topk: [{label, index, prob}]}.
    #[arg(long)]
    pub json: bool,
    /// Write the pooled embeddings [N, C] of the readable images here instead of classifying.
    #[arg(long)]
    pub features: Option<PathBuf>,
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
    Encoder(ThroughputArgs),
    /// The matrix products of a model's Linear layers (forward, input and weight gradient) in
    /// GFLOP/s: the CPU kernels against matrixmultiply (`--model`, default swin-micro-28).
    Gemm(ThroughputArgs),
    /// Latency of the exported ONNX graph in ONNX Runtime vs the burn forward.
    Onnx(OnnxBenchArgs),
    /// Pretraining steps: EESMM vs SimMIM images/s and peak memory at the same encoder batch.
    Pretrain(ThroughputArgs),
}

#[derive(Debug, Args)]
pub struct OnnxBenchArgs {
    /// Model presets (random weights); default swin-micro-32 and swin-t.
    #[arg(long)]
    pub model: Vec<PathBuf>,
    /// Batch sizes.
    #[arg(long, value_delimiter = ',', default_value = "1,32")]
    pub batch: Vec<usize>,
    /// Timed iterations; the median is reported.
    #[arg(long, default_value_t = 5)]
    pub iters: usize,
    /// Untimed iterations first.
    #[arg(long, default_value_t = 1)]
    pub warmup: usize,
    /// Print one JSON object per case instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// Arguments of `bench encoder` and `bench pretrain`.
#[derive(Debug, Args)]
pub struct ThroughputArgs {
    /// Model preset; without it, the two standard cases run: swin-micro-32 at batch 32 and
    /// swin-t at batch 8.
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// Batch size (with --model); for `pretrain`, encoder inputs (an EESMM input holds two images).
    #[arg(long, default_value_t = 8)]
    pub batch: usize,
    /// Timed iterations (optimizer steps for `pretrain`); the median is reported.
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

impl ExportArgs {
    pub fn options(&self) -> ExportOptions {
        ExportOptions {
            model: self.model.clone(),
            weights: self.weights.clone(),
            out: self.out.clone(),
            head: self.head,
            feature_map: self.feature_map,
            labels: self.labels.clone(),
            mean: self.mean.clone(),
            std: self.std.clone(),
            precision: self.precision,
        }
    }
}

impl VerifyArgs {
    pub fn options(&self) -> VerifyOptions {
        VerifyOptions {
            onnx: self.onnx.clone(),
            weights: self.weights.clone(),
            model: self.model.clone(),
            images: self.images.clone(),
            tol: self.tol,
            batch: self.batch,
            iters: self.iters,
        }
    }
}

impl InferArgs {
    pub fn options(&self) -> InferOptions {
        InferOptions {
            images: self.images.clone(),
            model: self.model.clone(),
            topk: self.topk,
            json: self.json,
            features: self.features.clone(),
        }
    }
}

impl OnnxBenchArgs {
    pub fn options(&self) -> OnnxBenchOptions {
        OnnxBenchOptions {
            model: self.model.clone(),
            batch: self.batch.clone(),
            iters: self.iters,
            warmup: self.warmup,
            json: self.json,
        }
    }
}

impl ThroughputArgs {
    pub fn options(&self) -> ThroughputOptions {
        ThroughputOptions {
            model: self.model.clone(),
            batch: self.batch,
            iters: self.iters,
            warmup: self.warmup,
            device: self.device,
            json: self.json,
        }
    }
}
