use clap::Parser;
use eesmm::cli::Cli;

/// mimalloc reuses freed memory: with glibc's malloc every large tensor buffer was a fresh
/// mapping, zero-filled page by page (README, "Speed").
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
/// training step; README, "Speed"). `MIMALLOC_PURGE_DELAY` still overrides this.
fn keep_freed_memory() {
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
        // SAFETY: sets one of mimalloc's documented options to a documented value (-1: never
        // purge), before any thread but this one exists.
        unsafe { mi_option_set(MI_OPTION_PURGE_DELAY, -1) };
    }
}

fn main() {
    keep_freed_memory();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "eesmm=info".into()),
        )
        .with_writer(std::io::stderr)
        .without_time()
        .init();
    if let Err(error) = eesmm::commands::run(Cli::parse().command) {
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
