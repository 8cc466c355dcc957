//! The `eesmm` binary: the composition root. `cli` turns flags into the engines' options and
//! `commands` runs them; the library (`src/lib.rs`) knows neither.

mod cli;
mod commands;

use clap::Parser;
use cli::Cli;

/// mimalloc reuses freed memory: with glibc's malloc every large tensor buffer was a fresh
/// mapping, zero-filled page by page (docs/speed.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

unsafe extern "C" {
    /// mimalloc's `mi_option_set` (mimalloc.h), in the library the allocator links.
    fn mi_option_set(option: std::ffi::c_int, value: std::ffi::c_long);
}

/// `mi_option_purge_delay` in mimalloc 3's `mi_option_t`.
const MI_OPTION_PURGE_DELAY: std::ffi::c_int = 15;

/// Keeps freed pages mapped: by default mimalloc hands them back to the OS after 10 ms, and
/// the next step's tensors page-fault them in again, zero-filled by the kernel (a tenth of a
/// training step; docs/speed.md). `MIMALLOC_PURGE_DELAY` still overrides this.
fn keep_freed_memory() {
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
        // SAFETY: sets one of mimalloc's documented options to a documented value (-1: never
        // purge), before any thread but this one exists.
        unsafe { mi_option_set(MI_OPTION_PURGE_DELAY, -1) };
    }
}

/// Colour codes only where a person reads them: stderr is a terminal and `NO_COLOR` is unset or
/// empty (no-color.org). Logs captured in a file stay plain text.
fn colour_logs() -> bool {
    use std::io::IsTerminal;
    std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

fn main() {
    keep_freed_memory();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "eesmm=info".into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(colour_logs())
        .without_time()
        .init();
    if let Err(error) = commands::run(Cli::parse().command) {
        eprintln!("error: {error:#}");
        let interrupted = error
            .chain()
            .any(|e| e.is::<eesmm::interrupt::Interrupted>());
        std::process::exit(match interrupted {
            true => eesmm::interrupt::EXIT_STATUS,
            false => 1,
        });
    }
}
