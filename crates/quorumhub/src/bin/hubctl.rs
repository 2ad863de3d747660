//! `hubctl`: the same as `quorumhub ctl`.

#[path = "../ctl.rs"]
mod ctl;

use clap::Parser;

#[derive(Parser)]
#[command(
    name = "hubctl",
    version,
    about = "Administer a quorumhub cluster over gRPC"
)]
struct Cli {
    #[command(flatten)]
    args: ctl::CtlArgs,
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    match ctl::run(cli.args).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
