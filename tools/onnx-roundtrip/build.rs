//! Generates burn code and weights from the exported model that run.sh writes to
//! `model/swin-micro-32.onnx`.

use burn_onnx::ModelGen;

fn main() {
    let onnx = "model/swin-micro-32.onnx";
    println!("cargo:rerun-if-changed={onnx}");
    assert!(
        std::path::Path::new(onnx).is_file(),
        "{onnx} is missing: run tools/onnx-roundtrip/run.sh, which exports it first"
    );
    ModelGen::new()
        .input(onnx)
        .out_dir("model/")
        .run_from_script();
}
