//! The `authgraph` binary: see `authgraph --help`.

use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    match authgraph::cli::run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            // `{:#}` prints the context chain; configuration errors name the variable.
            eprintln!("authgraph: {err:#}");
            ExitCode::FAILURE
        }
    }
}
