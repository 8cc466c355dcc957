//! eesmm: pretrain Swin Transformer backbones with EESMM masked image modeling, fine-tune them,
//! and ship them as ONNX. The modules follow the data flow; see docs/architecture.md for the map.
//! The command line (`cli`, `commands`) belongs to the binary, `src/main.rs`: no library module
//! can import it.

pub mod backend;
pub mod bench;
pub mod compare;
pub mod cuda_probe;
pub mod data;
pub mod evaluate;
pub mod finetune;
pub mod fsutil;
pub mod hash;
pub mod interrupt;
pub mod kernels;
pub mod limits;
pub mod lock;
pub mod model;
pub mod npy;
pub mod onnx;
pub mod pipeline;
pub mod pretrain;
pub mod runtime;
pub mod stages;
pub mod timing;
pub mod train;
pub mod yaml;
