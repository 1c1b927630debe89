//! The `trunkline` binary: parses the command line and runs the command. Errors are printed as
//! one clear message with their causes, and the process exits 1 — never a panic.

use clap::Parser;

/// The snapshot's large arrays on huge pages (see `trunkline::memory`).
#[global_allocator]
static ALLOCATOR: trunkline::memory::LargeBlocksOnHugePages =
    trunkline::memory::LargeBlocksOnHugePages;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = trunkline::cli::Cli::parse();
    match trunkline::cli::run(cli).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("trunkline: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
