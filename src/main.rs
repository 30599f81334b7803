//! The `authgraph` binary: see `authgraph --help`.

use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    let result = authgraph::cli::run().await;
    // Log lines still queued for standard output are written before the process ends.
    authgraph::telemetry::flush();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            // `{:#}` prints the context chain; configuration errors name the variable.
            eprintln!("authgraph: {err:#}");
            ExitCode::FAILURE
        }
    }
}
