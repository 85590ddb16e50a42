//! `kv-node` binary: parses flags, sets up logging, runs the server until
//! SIGINT or SIGTERM.

use clap::parser::ValueSource;
use clap::{CommandFactory, FromArgMatches};
use kv_node::{run, AppState, Config};
use tokio::net::TcpListener;
use tracing_subscriber::EnvFilter;

/// mimalloc, without transparent huge pages, spends less CPU per request
/// than glibc's allocator (`docs/results.md`, "A faster allocator"). The
/// static musl build keeps Rust's default, which needs no C compiler.
#[cfg(target_env = "gnu")]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::io::Result<()> {
    let matches = Config::command().get_matches();
    let mut config = Config::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    config.self_restart = true;
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    if config.worker_threads > 0 {
        runtime.worker_threads(config.worker_threads);
    }
    runtime
        .enable_all()
        .build()?
        .block_on(serve(&matches, config))
}

/// Sets up logging, then serves until SIGINT or SIGTERM.
async fn serve(matches: &clap::ArgMatches, config: Config) -> std::io::Result<()> {
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new(config.log_level.clone()));
    tracing_subscriber::fmt().with_env_filter(filter).init();
    // Any local user can read a process's command line (`ps`).
    for (id, better) in [
        ("admin_token", "ADMIN_TOKEN or --admin-token-file"),
        ("cluster_secret", "CLUSTER_SECRET or --cluster-secret-file"),
    ] {
        if matches.value_source(id) == Some(ValueSource::CommandLine) {
            tracing::warn!(
                "--{} was given on the command line, where every local user can read it; use {better}",
                id.replace('_', "-")
            );
        }
    }

    let state = match AppState::try_new(config.clone()) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("kv-node: {e}");
            std::process::exit(2);
        }
    };
    let listener = TcpListener::bind((config.bind, config.port)).await?;
    let addr = listener.local_addr()?;
    let c = state.cluster.config();
    tracing::info!(
        node_id = config.node_id,
        mode = %config.mode(),
        role = %config.role(),
        n = c.n,
        w = c.w,
        r = c.r,
        ui = kv_node::ui::is_built(),
        "listening on http://{addr}"
    );
    run(listener, state, shutdown_signal()).await?;
    tracing::info!("stopped");
    Ok(())
}

/// Completes on SIGINT (Ctrl-C) or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
    tracing::info!("shutdown signal received; finishing requests in flight");
}
