use clap::Parser;
use eesmm::cli::Cli;

/// mimalloc reuses freed memory: with glibc's malloc every large tensor buffer was a fresh
/// mapping, zero-filled page by page (README, "Speed").
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
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
