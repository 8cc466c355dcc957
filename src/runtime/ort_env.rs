//! Finding and loading the ONNX Runtime shared library (loaded at run time, `load-dynamic`), and
//! the process's one ORT environment.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use anyhow::{bail, Result};
use ort::environment::Environment;

/// The ONNX Runtime release eesmm is built against (`ort`'s `api-31`: 1.31 or newer).
pub const ORT_VERSION: &str = "1.31.1";
const LIBRARY: &str = "libonnxruntime.so.1.31.1";

/// Where the library is looked for, in order: `$ORT_DYLIB_PATH` (only there, when set), next to
/// the executable, the project cache `.ort/` that `scripts/setup_ort.sh` fills (in the source
/// tree this binary was built from), and `$XDG_CACHE_HOME/eesmm` (or `~/.cache/eesmm`).
pub fn library_candidates() -> Vec<PathBuf> {
    if let Some(path) = std::env::var_os("ORT_DYLIB_PATH") {
        return vec![PathBuf::from(path)];
    }
    let mut dirs = Vec::new();
    if let Some(dir) = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(Path::to_path_buf))
    {
        dirs.push(dir);
    }
    dirs.push(Path::new(env!("CARGO_MANIFEST_DIR")).join(".ort"));
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| Path::new(&home).join(".cache")));
    if let Some(cache) = cache {
        dirs.push(cache.join("eesmm"));
    }
    dirs.into_iter().map(|dir| dir.join(LIBRARY)).collect()
}

fn load() -> Result<Environment> {
    let candidates = library_candidates();
    let Some(path) = candidates.iter().find(|p| p.is_file()) else {
        let looked: Vec<String> = candidates.iter().map(|p| p.display().to_string()).collect();
        bail!(
            "ONNX Runtime {ORT_VERSION} not found (looked for {}). Get it with \
             `scripts/setup_ort.sh` (from the onnxruntime=={ORT_VERSION} PyPI wheel, into .ort/), \
             or set ORT_DYLIB_PATH to the absolute path of {LIBRARY}",
            looked.join(", ")
        );
    };
    let builder = ort::init_from(path)
        .map_err(|e| anyhow::anyhow!("cannot load ONNX Runtime from {}: {e}", path.display()))?;
    builder
        .with_name("eesmm")
        .with_telemetry(false)
        .build()
        .map_err(|e| anyhow::anyhow!("cannot start ONNX Runtime: {e}"))
}

/// The process-wide ORT environment, loaded on first use (ORT allows one per process).
pub fn environment() -> Result<&'static Environment> {
    static ENV: OnceLock<Result<Environment, String>> = OnceLock::new();
    ENV.get_or_init(|| load().map_err(|e| format!("{e:#}")))
        .as_ref()
        .map_err(|e| anyhow::anyhow!("{e}"))
}
