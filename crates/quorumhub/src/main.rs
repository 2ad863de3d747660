//! `quorumhub`: one binary for every role.
//!
//! - `quorumhub hub`: one hub replica
//! - `quorumhub proxy`: one stateless proxy replica
//! - `quorumhub ctl` (also installed as `hubctl`): the gRPC admin client
//! - `quorumhub dev`: a local cluster (3 replicas + proxy) with sane defaults
//! - `quorumhub reseed`: rebuild a damaged replica's data dir from a peer
//! - `quorumhub singleuser`: the built-in demo single-user server

mod backup;
mod ctl;
mod dev;
mod logging;
mod reseed;
mod secrets;
mod signals;
mod tomlargs;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "quorumhub",
    version,
    about = "A highly available, Raft-replicated, JupyterHub-compatible hub"
)]
#[command(args_override_self = true)]
struct Cli {
    /// Log format.
    #[arg(
        long,
        global = true,
        value_enum,
        default_value = "text",
        env = "QUORUMHUB_LOG_FORMAT"
    )]
    log_format: logging::Format,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
// Parsed once at start; boxing the large flag sets would buy nothing.
#[allow(clippy::large_enum_variant)]
enum Cmd {
    /// Run one hub replica.
    Hub {
        /// TOML file with the same keys as the flags (e.g. node_id = 1,
        /// peer = ["1=...", ...]); flags given on the command line win.
        #[arg(long)]
        config: Option<PathBuf>,
        #[command(flatten)]
        hub: Box<quorumhub_hub::HubConfig>,
    },
    /// Run one stateless proxy replica.
    Proxy(quorumhub_proxy::ProxyConfig),
    /// Administer a cluster over gRPC (same as `hubctl`).
    Ctl(ctl::CtlArgs),
    /// Run a local cluster: 3 hub replicas and a proxy on 127.0.0.1:8000.
    Dev(dev::DevArgs),
    /// Re-seed a damaged replica's data dir from a healthy peer.
    Reseed(reseed::ReseedArgs),
    /// Write a backup from a stopped replica's data dir (after losing the
    /// quorum for good); online, use `hubctl backup`.
    Backup(backup::BackupArgs),
    /// Turn a backup into an empty data dir of a new cluster's member.
    Restore(backup::RestoreArgs),
    /// The built-in demo single-user server.
    Singleuser(quorumhub_spawner::singleuser::SingleUserArgs),
}

fn main() -> std::process::ExitCode {
    let args = match tomlargs::expand(std::env::args_os().collect()) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("error: {e:#}");
            return std::process::ExitCode::from(2);
        }
    };
    let mut cli = Cli::parse_from(args);
    // Before any thread exists: clap has copied the secrets it was given by
    // environment; erase them from this process's environment block.
    let from_env = secrets::scrub_env(secrets::SECRET_ENV);
    if let Err(e) = secrets::load_files(&mut cli.cmd) {
        eprintln!("error: {e:#}");
        return std::process::ExitCode::from(2);
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(run(cli, from_env));
    match result {
        Ok(code) => code,
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli, from_env: Vec<&'static str>) -> anyhow::Result<std::process::ExitCode> {
    let long_running = matches!(cli.cmd, Cmd::Hub { .. } | Cmd::Proxy(_) | Cmd::Dev(_));
    let warn_env = move || {
        if long_running {
            for key in &from_env {
                tracing::warn!(
                    "{key} was given in the environment: erased from this process's \
                     /proc/<pid>/environ, but whatever started it may still hold it; \
                     prefer the --*-file flag"
                );
            }
        }
    };
    match cli.cmd {
        Cmd::Hub { hub, .. } => {
            logging::init(cli.log_format, Some(hub.node_id));
            warn_env();
            quorumhub_hub::run(*hub, signals::terminated()).await?;
        }
        Cmd::Proxy(config) => {
            logging::init(cli.log_format, None);
            warn_env();
            quorumhub_proxy::run(config, signals::terminated()).await?;
        }
        Cmd::Ctl(args) => return ctl::run(args).await,
        Cmd::Dev(args) => {
            logging::init(cli.log_format, None);
            dev::run(args).await?;
        }
        Cmd::Reseed(args) => {
            logging::init(cli.log_format, None);
            reseed::run(args).await?;
        }
        Cmd::Backup(args) => {
            logging::init(cli.log_format, None);
            backup::backup(args).await?;
        }
        Cmd::Restore(args) => {
            logging::init(cli.log_format, None);
            backup::restore(args).await?;
        }
        Cmd::Singleuser(args) => {
            logging::init(cli.log_format, None);
            quorumhub_spawner::singleuser::run(args).await?;
        }
    }
    Ok(std::process::ExitCode::SUCCESS)
}
