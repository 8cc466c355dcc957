//! One integration-test binary (one link step on 2 cores); each concept has its own module.

mod integration {
    mod cli;
    pub mod common;
    mod onnx;
    mod parity;
    mod runtime;
    mod weights;
}
