//! Helpers shared by the integration tests: real nodes on 127.0.0.1.
#![allow(dead_code)]

use kv_node::{run, AppState, Config};
use std::net::SocketAddr;
use tokio::net::TcpListener;
use tokio::sync::oneshot;

/// A node served in this process on a free port of 127.0.0.1.
pub struct TestNode {
    /// Where it listens.
    pub addr: SocketAddr,
    /// Its base URL, `http://127.0.0.1:PORT`.
    pub url: String,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl TestNode {
    /// Starts a standalone node.
    pub async fn start(config: Config) -> Self {
        let listener = TcpListener::bind((config.bind, config.port)).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = oneshot::channel();
        let task = tokio::spawn(run(listener, AppState::new(config), async move {
            let _ = rx.await;
        }));
        Self {
            addr,
            url: format!("http://{addr}"),
            stop: Some(tx),
            task,
        }
    }

    /// Stops the node gracefully and waits until it has stopped.
    pub async fn stop(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        (&mut self.task).await.unwrap().unwrap();
    }
}
