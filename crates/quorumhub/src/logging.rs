//! Text logs by default, JSON with `--log-format json`.

use tracing_subscriber::EnvFilter;

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum Format {
    Text,
    Json,
}

const DEFAULT_FILTER: &str =
    "info,openraft=warn,sled=warn,h2=warn,tower=warn,hyper=warn,tonic=warn";

pub fn init(format: Format, node: Option<u64>) {
    let filter =
        EnvFilter::try_from_env("QUORUMHUB_LOG").unwrap_or_else(|_| EnvFilter::new(DEFAULT_FILTER));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(std::io::stderr);
    let _ = match format {
        Format::Text => builder.try_init(),
        Format::Json => builder.json().flatten_event(true).try_init(),
    };
    if let Some(node) = node {
        tracing::info!(
            node,
            version = env!("CARGO_PKG_VERSION"),
            "quorumhub starting"
        );
    }
}
