//! One integration-test binary (one link step on 2 cores); each concept has its own module.

mod integration {
    mod cli;
    pub mod common;
    mod config_docs;
    mod data;
    mod finetune;
    mod gradients;
    mod onnx;
    mod parity;
    mod pipeline;
    mod pretrain;
    mod runtime;
    mod weights;
    #[cfg(feature = "wgpu")]
    mod wgpu;
}
