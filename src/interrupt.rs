//! Ctrl-C and SIGTERM: a request to stop at the next step boundary, saved where the loop can
//! see it. Training writes a checkpoint and returns [`Interrupted`]; `eesmm run` writes its
//! summary; the process exits with 130. A second signal exits at once.

use std::sync::atomic::{AtomicBool, Ordering};

static REQUESTED: AtomicBool = AtomicBool::new(false);

/// The error of work stopped by a signal.
#[derive(Debug, thiserror::Error)]
#[error("interrupted{}", .0.as_deref().map(|at| format!(" {at}")).unwrap_or_default())]
pub struct Interrupted(pub Option<String>);

/// The exit status of an interrupted command (128 + SIGINT, as shells report it).
pub const EXIT_STATUS: i32 = 130;

/// Catches SIGINT and SIGTERM for the rest of the process.
pub fn install() -> anyhow::Result<()> {
    ctrlc::set_handler(|| {
        if REQUESTED.swap(true, Ordering::SeqCst) {
            std::process::exit(EXIT_STATUS);
        }
        eprintln!("\nstopping at the next step (again to stop now)");
    })
    .map_err(|e| anyhow::anyhow!("cannot catch Ctrl-C: {e}"))
}

/// Whether a stop was requested.
pub fn requested() -> bool {
    REQUESTED.load(Ordering::SeqCst)
}
