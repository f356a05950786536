//! The `gantry` binary: the control plane (`gantry server`) and the all-in-one node
//! (`gantry up`). It parses the command line, opens the store, wires the control plane to the API
//! and serves; everything else lives in the library crates.

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use gantry_api::{ApiConfig, router};
use gantry_control::ControlPlane;
use gantry_core::{SeededIds, SystemClock};
use gantry_store::SqliteStore;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

/// The port Gantry listens on by default: clear of the usual web, database and emulator ports.
const DEFAULT_PORT: u16 = 7360;

#[derive(Parser)]
#[command(name = "gantry", version, about = "Amazon ECS that you run yourself")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the control plane: the ECS API and its store.
    Server {
        #[command(flatten)]
        common: Common,
        /// Allow `POST /_gantry/reset` to wipe all state (for integration tests).
        #[arg(long)]
        enable_reset: bool,
    },
    /// Run an all-in-one node: the control plane plus an in-process agent. The reset endpoint is
    /// enabled.
    Up {
        #[command(flatten)]
        common: Common,
    },
}

#[derive(Args)]
struct Common {
    /// Address to listen on.
    #[arg(long, default_value_t = SocketAddr::from(([127, 0, 0, 1], DEFAULT_PORT)))]
    listen: SocketAddr,
    /// Directory for Gantry's state (default: $XDG_DATA_HOME/gantry or ~/.local/share/gantry).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// The AWS account ID in every ARN.
    #[arg(long, env = "GANTRY_ACCOUNT_ID", default_value = "000000000000")]
    account_id: String,
}

fn default_data_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("XDG_DATA_HOME").filter(|d| !d.is_empty()) {
        return PathBuf::from(d).join("gantry");
    }
    match std::env::var_os("HOME") {
        Some(h) => PathBuf::from(h).join(".local/share/gantry"),
        None => PathBuf::from(".gantry"),
    }
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("GANTRY_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let (common, enable_reset, mode) = match cli.command {
        Command::Server { common, enable_reset } => (common, enable_reset, "server"),
        Command::Up { common } => (common, true, "up"),
    };
    if common.account_id.len() != 12 || !common.account_id.bytes().all(|b| b.is_ascii_digit()) {
        anyhow::bail!("--account-id must be 12 digits, got '{}'", common.account_id);
    }
    // One worker thread per core; TOKIO_WORKER_THREADS overrides.
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    rt.block_on(serve(common, enable_reset, mode))
}

async fn serve(common: Common, enable_reset: bool, mode: &str) -> anyhow::Result<()> {
    let data_dir = common.data_dir.unwrap_or_else(default_data_dir);
    std::fs::create_dir_all(&data_dir)
        .with_context(|| format!("cannot create the data directory {}", data_dir.display()))?;
    let db = data_dir.join("gantry.db");
    let store =
        SqliteStore::open(&db).with_context(|| format!("cannot open the store at {}", db.display()))?;
    let control =
        ControlPlane::new(Arc::new(store), Arc::new(SystemClock), Arc::new(SeededIds::from_entropy()));
    let app = router(
        control,
        ApiConfig {
            account_id: common.account_id.clone(),
            enable_reset,
            poll_timeout: std::time::Duration::from_secs(5),
        },
    );
    let listener = tokio::net::TcpListener::bind(common.listen)
        .await
        .with_context(|| format!("cannot listen on {}", common.listen))?;
    let addr = listener.local_addr()?;
    let endpoint = format!("http://{addr}");
    println!("Gantry {} ({mode}): the ECS API is at {endpoint}", env!("CARGO_PKG_VERSION"));
    println!("  account {}, state in {}", common.account_id, data_dir.display());
    if mode == "up" {
        println!("  the agent arrives in a later version: this node serves the API only");
    }
    println!("Try it:");
    println!(
        "  AWS_ENDPOINT_URL={endpoint} AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test AWS_DEFAULT_REGION=us-east-1 aws ecs create-cluster --cluster-name demo"
    );
    tracing::info!(%addr, data_dir = %data_dir.display(), "listening");
    axum::serve(listener, app)
        .with_graceful_shutdown(async {
            let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = async { match term.as_mut() { Some(t) => { t.recv().await; } None => std::future::pending().await } } => {}
            }
            tracing::info!("shutting down");
        })
        .await?;
    Ok(())
}
