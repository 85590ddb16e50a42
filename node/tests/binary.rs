//! The `kv-node` executable: configuration from the environment, graceful
//! shutdown on SIGTERM.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// Kills the node if the test fails before it stopped it.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn binary_honours_port_env_and_stops_cleanly_on_sigterm() {
    let mut guard = KillOnDrop(
        Command::new(env!("CARGO_BIN_EXE_kv-node"))
            .env("PORT", "0")
            .env("NODE_ID", "3")
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let child = &mut guard.0;
    // The node logs its address once it listens; read lines until then.
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let addr = common::listening_addr(&mut lines).expect("node logs its address");
    assert!(
        addr.starts_with("127.0.0.1:"),
        "binds 127.0.0.1 by default: {addr}"
    );

    let body = blocking_get(&format!("http://{addr}/health"));
    assert!(body.contains("\"node_id\":3"), "{body}");

    let pid = child.id().to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    // Bounded wait for the exit.
    for _ in 0..100 {
        if let Some(status) = child.try_wait().unwrap() {
            assert!(status.success(), "exit status {status}");
            let rest: Vec<String> = lines.map_while(Result::ok).collect();
            assert!(rest.iter().any(|l| l.contains("stopped")), "{rest:?}");
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("kv-node did not stop within 5 s of SIGTERM");
}

/// A blocking GET over a fresh runtime (the test itself is synchronous).
fn blocking_get(url: &str) -> String {
    tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(async { reqwest::get(url).await.unwrap().text().await.unwrap() })
}
