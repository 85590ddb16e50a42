//! Helpers of the Terraform tests (`terraform.rs`, `deploy_ssh.rs`, `container.rs`): the
//! toolchain, bounded commands, a blocking HTTP client, polling with a deadline, a lock that
//! makes tests take turns across processes, and the static `kv-node` build.
#![allow(dead_code)]

use serde_json::{json, Value};
use std::ffi::OsStr;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The Rust target of the static `kv-node` (`scripts/build.sh --static`).
pub const STATIC_TARGET: &str = "x86_64-unknown-linux-musl";

/// The static (musl) release `kv-node`, with the dashboard embedded when `web-ui/dist` holds a
/// build. Built here when missing or stale (a no-op when `scripts/test.sh` built it before the
/// tests: the same cargo command); fails the test when the musl target is not installed.
pub fn static_kv_node() -> PathBuf {
    let target_dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .unwrap()
        .to_path_buf();
    let _turn = Turn::take("static-build");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.args([
        "build",
        "--release",
        "--target",
        STATIC_TARGET,
        "-p",
        "kv-node",
    ])
    .current_dir(repo_root())
    .env("CARGO_TARGET_DIR", &target_dir);
    let out = run_bounded(cmd, Duration::from_secs(1200));
    assert!(
        out.status.success(),
        "the static build failed (scripts/setup.sh adds the {STATIC_TARGET} target):\n{}",
        text(&out)
    );
    let bin = target_dir.join(STATIC_TARGET).join("release/kv-node");
    assert!(bin.is_file(), "no {} after the build", bin.display());
    bin
}

/// Runs `terraform ARGS` in `dir` with the toolchain's environment, bounded by `timeout`.
pub fn terraform<S: AsRef<OsStr>>(dir: &Path, args: &[S], timeout: Duration) -> Output {
    let (terraform, env) = toolchain();
    run_terraform(&terraform, &env, dir, args, timeout)
}

/// Runs the `bin` terraform with `ARGS` in `dir`, with `env` set, bounded by `timeout`.
pub fn run_terraform<S: AsRef<OsStr>>(
    bin: &Path,
    env: &[(String, String)],
    dir: &Path,
    args: &[S],
    timeout: Duration,
) -> Output {
    let mut cmd = Command::new(bin);
    cmd.args(args).current_dir(dir).env("TF_IN_AUTOMATION", "1");
    for (k, v) in env {
        cmd.env(k, v);
    }
    run_bounded(cmd, timeout)
}

/// Writes `key`, retrying while the fresh cluster answers 503 (peers not connected yet).
pub fn write_when_ready(http: &Http, url: &str, key: &str, value: &str) {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let (status, body) = http.post(&format!("{url}/set"), &json!({"key": key, "value": value}));
        if status == 201 {
            return;
        }
        assert!(
            status == 503 && Instant::now() < deadline,
            "write at {url}: {status} {body}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The value of `key` in the local store of the node at `url`, if it has one.
pub fn local_value(http: &Http, url: &str, key: &str) -> Option<String> {
    let (status, body) = http.get(&format!("{url}/local_read?key={key}"));
    (status == 200).then(|| body["value"].as_str().unwrap_or_default().to_owned())
}

/// The terraform binary and the environment that `scripts/install-terraform.sh --print-env`
/// names; fails the test with instructions when the toolchain is not installed.
pub fn toolchain() -> (PathBuf, Vec<(String, String)>) {
    let script = repo_root().join("scripts/install-terraform.sh");
    let out = Command::new("bash")
        .arg(&script)
        .arg("--print-env")
        .output()
        .expect("run install-terraform.sh");
    assert!(
        out.status.success(),
        "the Terraform toolchain is not installed: run scripts/install-terraform.sh (scripts/setup.sh does)\n{}",
        text(&out)
    );
    let env: Vec<(String, String)> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_once('=').map(|(k, v)| (k.to_owned(), v.to_owned())))
        .collect();
    let terraform = env
        .iter()
        .find(|(k, _)| k == "TERRAFORM")
        .map(|(_, v)| PathBuf::from(v));
    let terraform = terraform.expect("install-terraform.sh --print-env names TERRAFORM");
    assert!(
        terraform.exists(),
        "{} does not exist: run scripts/install-terraform.sh",
        terraform.display()
    );
    (terraform, env)
}

/// The top of the repository.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// Copies the Terraform sources, leaving out state, provider caches and run directories.
pub fn copy_sources(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with(".terraform") || name.starts_with("terraform.tfstate") || name == ".run"
        {
            continue;
        }
        let target = to.join(&name);
        if entry.file_type().unwrap().is_dir() {
            copy_sources(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// Runs `cmd` to completion with its output captured, killing it after `timeout`.
pub fn run_bounded(mut cmd: Command, timeout: Duration) -> Output {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = drain(&mut child, true);
    let stderr = drain(&mut child, false);
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("{cmd:?} did not finish within {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    Output {
        status,
        stdout: stdout.join().unwrap(),
        stderr: stderr.join().unwrap(),
    }
}

/// Reads the child's stdout or stderr to the end on a thread.
pub fn drain(child: &mut Child, stdout: bool) -> std::thread::JoinHandle<Vec<u8>> {
    let mut pipe: Box<dyn Read + Send> = if stdout {
        Box::new(child.stdout.take().unwrap())
    } else {
        Box::new(child.stderr.take().unwrap())
    };
    std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = pipe.read_to_end(&mut buf);
        buf
    })
}

/// Stdout then stderr of a finished command, as text.
pub fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Polls `done` every 100 ms until it holds; fails the test after `limit`.
pub fn wait_until(limit: Duration, what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !done() {
        assert!(
            Instant::now() < deadline,
            "timed out after {limit:?} waiting until {what}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A blocking HTTP client over a private runtime (the tests themselves are synchronous).
pub struct Http {
    rt: tokio::runtime::Runtime,
    client: reqwest::Client,
}

impl Http {
    /// A client without proxy, pooled connections or redirects to follow, 10 s per request.
    pub fn new() -> Self {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        // No pooled connections: the redeploy test replaces the processes behind the same ports.
        let client = reqwest::Client::builder()
            .pool_max_idle_per_host(0)
            .no_proxy()
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap();
        Self { rt, client }
    }

    /// `GET url`: status and body text.
    pub fn get_text(&self, url: &str) -> (u16, String) {
        self.rt.block_on(async {
            let resp = self
                .client
                .get(url)
                .send()
                .await
                .unwrap_or_else(|e| panic!("GET {url}: {e}"));
            (resp.status().as_u16(), resp.text().await.unwrap())
        })
    }

    /// `GET url`: status and body as JSON (a string when it is not JSON).
    pub fn get(&self, url: &str) -> (u16, Value) {
        let (status, body) = self.get_text(url);
        (
            status,
            serde_json::from_str(&body).unwrap_or(Value::String(body)),
        )
    }

    /// `GET url` as JSON, or None when the request fails (no connection, timeout).
    pub fn try_get(&self, url: &str) -> Option<(u16, Value)> {
        self.rt.block_on(async {
            let resp = self.client.get(url).send().await.ok()?;
            let status = resp.status().as_u16();
            let text = resp.text().await.ok()?;
            Some((
                status,
                serde_json::from_str(&text).unwrap_or(Value::String(text)),
            ))
        })
    }

    /// `POST url` with a JSON body and `Authorization: Bearer token`: status and body as JSON.
    pub fn post_as(&self, url: &str, body: &Value, token: &str) -> (u16, Value) {
        self.rt.block_on(async {
            let resp = self
                .client
                .post(url)
                .bearer_auth(token)
                .json(body)
                .send()
                .await
                .unwrap_or_else(|e| panic!("POST {url}: {e}"));
            let status = resp.status().as_u16();
            let text = resp.text().await.unwrap();
            (
                status,
                serde_json::from_str(&text).unwrap_or(Value::String(text)),
            )
        })
    }

    /// `POST url` with a JSON body: status and body as JSON.
    pub fn post(&self, url: &str, body: &Value) -> (u16, Value) {
        self.rt.block_on(async {
            let resp = self
                .client
                .post(url)
                .json(body)
                .send()
                .await
                .unwrap_or_else(|e| panic!("POST {url}: {e}"));
            let status = resp.status().as_u16();
            let text = resp.text().await.unwrap();
            (
                status,
                serde_json::from_str(&text).unwrap_or(Value::String(text)),
            )
        })
    }
}

/// This test's turn to run a deployment: a lock directory in the target's temporary
/// directory, holding the owner's pid; a lock whose owner has died is taken over.
pub struct Turn {
    dir: PathBuf,
}

impl Turn {
    /// Waits (up to 15 min) until no other live process holds the lock `name`, then holds it.
    pub fn take(name: &str) -> Self {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("{name}.lock"));
        let deadline = Instant::now() + Duration::from_secs(900);
        loop {
            match std::fs::create_dir(&dir) {
                Ok(()) => {
                    std::fs::write(dir.join("pid"), std::process::id().to_string()).unwrap();
                    return Self { dir };
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    let owner = std::fs::read_to_string(dir.join("pid")).unwrap_or_default();
                    let dead = !owner.is_empty()
                        && !Path::new(&format!("/proc/{}", owner.trim())).exists();
                    if dead {
                        let _ = std::fs::remove_dir_all(&dir);
                        continue;
                    }
                }
                Err(e) => panic!("cannot create {}: {e}", dir.display()),
            }
            assert!(
                Instant::now() < deadline,
                "waited 15 min for {}",
                dir.display()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Turn {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A base port such that `count` consecutive ports from it are free on 127.0.0.1, below the
/// ephemeral range so that outgoing connections do not take them meanwhile.
pub fn free_port_range(count: u16) -> u16 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    let seed = u64::from(std::process::id()) ^ u64::from(nanos);
    for attempt in 0..200u64 {
        let base = 20_000 + ((seed.wrapping_mul(7919) + attempt * 211) % 10_000) as u16;
        let free =
            (base..base + count).all(|p| std::net::TcpListener::bind(("127.0.0.1", p)).is_ok());
        if free {
            return base;
        }
    }
    panic!("no {count} consecutive free ports between 20000 and 30000");
}
