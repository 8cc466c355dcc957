use clap::Parser;
use eesmm::cli::Cli;

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
        std::process::exit(1);
    }
}
