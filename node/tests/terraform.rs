//! The Terraform deployment (`terraform/`) drives real `kv-node` processes.
//!
//! For each preset, `terraform apply` starts five native replicas that behave as the preset
//! promises, and `terraform destroy` leaves no process of the run behind; applying twice changes
//! nothing and changing W/R or the preset re-deploys cleanly; a start that cannot succeed fails
//! `apply` with a clear message and leaves nothing running.
//!
//! Needs the toolchain that `scripts/install-terraform.sh` installs (the test command runs the
//! set-up first); without it every test fails saying so. Each test works in its own copy of
//! `terraform/` (own state, own pid and log directory) on free ports, and the tests take turns,
//! one cluster at a time, through a lock directory, so that they also take turns when
//! cargo-nextest runs each test in its own process.

mod tf_support;

use serde_json::{json, Value};
use std::ffi::OsStr;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;
use tf_support::{
    copy_sources, free_port_range, local_value, repo_root, text, toolchain, wait_until,
    write_when_ready, Http, Turn,
};

/// Nodes per deployment (every preset has N = 5).
const N: u16 = 5;
/// Longest any one terraform command may take before the test gives up on it.
const TERRAFORM_TIMEOUT: Duration = Duration::from_secs(180);

#[test]
fn preset_lf_w3r3_deploys_replicates_and_destroys_cleanly() {
    check_preset("lf-w3r3", "leader-follower", 3, 3);
}

#[test]
fn preset_lf_w5r1_deploys_replicates_and_destroys_cleanly() {
    check_preset("lf-w5r1", "leader-follower", 5, 1);
}

#[test]
fn preset_lf_w1r5_deploys_replicates_and_destroys_cleanly() {
    check_preset("lf-w1r5", "leader-follower", 1, 5);
}

#[test]
fn preset_leaderless_deploys_replicates_and_destroys_cleanly() {
    check_preset("leaderless", "leaderless", 5, 1);
}

/// Applying the same configuration again touches nothing; a change of W/R, then of the mode,
/// replaces every node (the old processes are gone, the new ones run the new configuration).
#[test]
fn reapply_changes_nothing_and_changing_quorums_or_preset_redeploys_cleanly() {
    let tf = Deployment::new("redeploy");
    let http = Http::new();
    tf.apply_ok("lf-w3r3", &[]);
    let first = tf.recorded_nodes();
    assert_eq!(first.len(), usize::from(N), "one pid file per node");

    let again = tf.apply_ok("lf-w3r3", &[]);
    assert!(again.contains("0 added, 0 changed, 0 destroyed"), "{again}");
    assert_eq!(
        tf.recorded_nodes(),
        first,
        "a second apply must not restart any node"
    );
    let plan = tf.terraform(&tf.apply_args("plan", "lf-w3r3", &["-detailed-exitcode"]));
    assert_eq!(
        plan.status.code(),
        Some(0),
        "plan after apply shows changes:\n{}",
        text(&plan)
    );

    tf.apply_ok("lf-w3r3", &["-var", "w=5", "-var", "r=1"]);
    assert_all_gone(&first);
    let second = tf.recorded_nodes();
    for url in tf.urls() {
        let (_, config) = http.get(&format!("{url}/config"));
        assert_eq!(
            (config["w"].as_u64(), config["r"].as_u64()),
            (Some(5), Some(1)),
            "{url}: {config}"
        );
    }

    tf.apply_ok("leaderless", &[]);
    assert_all_gone(&second);
    for url in tf.urls() {
        let (_, health) = http.get(&format!("{url}/health"));
        assert_eq!(health["mode"], "leaderless", "{url}: {health}");
    }
    tf.destroy_ok();
}

/// Destroy signals only what the deployment started: a pid file that names another kv-node
/// (as after the kernel gave a dead node's pid to a new process) does not get that process
/// killed, and the node it should have named is still found and stopped.
#[test]
fn destroy_signals_only_the_processes_it_started() {
    let tf = Deployment::new("bystander");
    let http = Http::new();
    tf.apply_ok(
        "lf-w3r3",
        &["-var", "replicas=2", "-var", "w=1", "-var", "r=1"],
    );
    let port = free_port_range(1);
    let bystander = Bystander::start(port);
    wait_until(Duration::from_secs(15), "the bystander answers", || {
        TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    let recycled = format!("{} 1\n", bystander.0.id());
    std::fs::write(tf.run_dir.join("node-2.pid"), recycled).unwrap();

    let out = tf.destroy_ok();
    assert!(out.contains("node 2: found by its environment"), "{out}");
    let (status, health) = http.get(&format!("http://127.0.0.1:{port}/health"));
    assert_eq!(status, 200, "the bystander must survive destroy: {health}");
}

/// A port of the deployment held by another process: apply names the port, stops the nodes it
/// had already started, leaves nothing running; once the port is free, apply succeeds.
#[test]
fn apply_fails_clearly_when_a_port_is_taken_and_leaves_nothing_running() {
    let tf = Deployment::new("port-taken");
    let taken = tf.base_port + 2;
    let listener = TcpListener::bind(("127.0.0.1", taken)).expect("bind the port to take");

    let out = tf.terraform(&tf.apply_args("apply", "lf-w3r3", &["-auto-approve"]));
    let all = text(&out);
    assert!(!out.status.success(), "apply must fail:\n{all}");
    let expected = format!("port {taken} on 127.0.0.1 is already in use");
    assert!(
        all.contains(&expected),
        "no clear message ({expected}):\n{all}"
    );
    assert!(
        all.contains("stopping the node(s) this run started: 1 2"),
        "{all}"
    );
    drop(listener);
    tf.assert_nothing_left();

    tf.apply_ok("lf-w3r3", &[]);
    tf.destroy_ok();
}

/// A node that exits at start (here: a flag it refuses) fails apply with that node's log tail.
#[test]
fn apply_fails_with_the_node_log_when_a_node_cannot_start() {
    let tf = Deployment::new("bad-flag");
    let args = ["-auto-approve", "-var", r#"extra_args=["--no-such-flag"]"#];
    let out = tf.terraform(&tf.apply_args("apply", "lf-w3r3", &args));
    let all = text(&out);
    assert!(!out.status.success(), "apply must fail:\n{all}");
    assert!(all.contains("exited"), "{all}");
    assert!(all.contains("last 20 lines of"), "no log tail:\n{all}");
    assert!(
        all.contains("--no-such-flag"),
        "the log tail shows the node's own error:\n{all}"
    );
    tf.assert_nothing_left();
    tf.destroy_ok();
}

/// Deploys `preset`, checks every node's mode, role and quorums, writes once and reads at every
/// node, then destroys and checks that no process of the run is left.
fn check_preset(preset: &str, mode: &str, w: u64, r: u64) {
    let tf = Deployment::new(preset);
    let http = Http::new();
    tf.apply_ok(preset, &[]);

    let outputs = tf.outputs();
    let urls = tf.urls();
    assert_eq!(urls.len(), usize::from(N), "{outputs}");
    let leader = mode == "leader-follower";
    let expected_leader = if leader { json!(urls[0]) } else { Value::Null };
    assert_eq!(outputs["leader_url"]["value"], expected_leader, "{outputs}");
    assert_eq!(
        outputs["dashboard_url"]["value"],
        json!(format!("{}/", urls[0]))
    );
    assert!(outputs["try_curl"]["value"]
        .as_str()
        .unwrap()
        .contains("curl -X POST"));
    let (status, _) = http.get_text(&format!("{}/", urls[0]));
    assert_eq!(status, 200, "the dashboard URL answers");
    check_nodes(&http, &urls, mode, w, r);

    // The write goes to the leader, or (leaderless) to a node in the middle: any node coordinates.
    let writer = if leader { &urls[0] } else { &urls[2] };
    let key = format!("tf-{preset}");
    write_when_ready(&http, writer, &key, "v1");
    let local_hits = urls
        .iter()
        .filter(|u| local_value(&http, u, &key).as_deref() == Some("v1"));
    let local_hits = local_hits.count() as u64;
    assert!(
        local_hits >= w,
        "an acknowledged write is on at least W={w} replicas, found {local_hits}"
    );
    for url in &urls {
        let (status, body) = http.get(&format!("{url}/get?key={key}"));
        assert_eq!(
            (status, &body["value"]),
            (200, &json!("v1")),
            "R+W>N: read at {url}: {body}"
        );
    }
    wait_until(
        Duration::from_secs(15),
        "every replica holds the write",
        || {
            urls.iter()
                .all(|u| local_value(&http, u, &key).as_deref() == Some("v1"))
        },
    );

    let nodes = tf.recorded_nodes();
    tf.destroy_ok();
    assert_all_gone(&nodes);
}

/// Every node reports the deployment's mode, its role, and the preset's N, W and R.
fn check_nodes(http: &Http, urls: &[String], mode: &str, w: u64, r: u64) {
    for (i, url) in urls.iter().enumerate() {
        let (status, health) = http.get(&format!("{url}/health"));
        assert_eq!(status, 200, "{url}/health: {health}");
        let role = match (mode, i) {
            ("leaderless", _) => "peer",
            (_, 0) => "leader",
            _ => "follower",
        };
        assert_eq!(
            (health["mode"].as_str(), health["role"].as_str()),
            (Some(mode), Some(role)),
            "{url}: {health}"
        );
        assert_eq!(health["node_id"], json!(i + 1), "{url}: {health}");
        let (_, config) = http.get(&format!("{url}/config"));
        let nwr = (
            config["n"].as_u64(),
            config["w"].as_u64(),
            config["r"].as_u64(),
        );
        assert_eq!(
            nwr,
            (Some(u64::from(N)), Some(w), Some(r)),
            "{url}/config: {config}"
        );
    }
}

/// One deployment: a private copy of `terraform/`, its run directory and its ports.
struct Deployment {
    terraform: PathBuf,
    env: Vec<(String, String)>,
    dir: PathBuf,
    run_dir: PathBuf,
    base_port: u16,
    _turn: Turn,
}

impl Deployment {
    /// Waits for this test's turn, copies `terraform/`, picks ports and runs `terraform init`.
    fn new(name: &str) -> Self {
        let (terraform, env) = toolchain();
        let turn = Turn::take("terraform-tests");
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("terraform-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        copy_sources(&repo_root().join("terraform"), &dir);
        let tf = Self {
            terraform,
            env,
            run_dir: dir.join(".run"),
            dir,
            base_port: free_port_range(N),
            _turn: turn,
        };
        let init = tf.terraform(&["init", "-input=false", "-no-color"]);
        assert!(
            init.status.success(),
            "terraform init failed:\n{}",
            text(&init)
        );
        tf
    }

    /// Runs terraform in this deployment's directory, bounded by [`TERRAFORM_TIMEOUT`].
    fn terraform<S: AsRef<OsStr>>(&self, args: &[S]) -> Output {
        tf_support::run_terraform(
            &self.terraform,
            &self.env,
            &self.dir,
            args,
            TERRAFORM_TIMEOUT,
        )
    }

    /// `COMMAND -input=false -no-color -var-file=presets/PRESET.tfvars` plus this deployment's
    /// binary, ports and run directory, plus `extra`.
    fn apply_args(&self, command: &str, preset: &str, extra: &[&str]) -> Vec<String> {
        let mut args = vec![
            command.to_owned(),
            "-input=false".to_owned(),
            "-no-color".to_owned(),
            format!("-var-file=presets/{preset}.tfvars"),
            format!("-var=kv_node_binary={}", env!("CARGO_BIN_EXE_kv-node")),
            format!("-var=base_port={}", self.base_port),
            format!("-var=log_dir={}", self.run_dir.display()),
        ];
        args.extend(extra.iter().map(|a| (*a).to_owned()));
        args
    }

    /// Applies `preset` (plus `extra`), failing the test with Terraform's output if it fails.
    fn apply_ok(&self, preset: &str, extra: &[&str]) -> String {
        let mut args = vec!["-auto-approve"];
        args.extend_from_slice(extra);
        let out = self.terraform(&self.apply_args("apply", preset, &args));
        let all = text(&out);
        assert!(
            out.status.success(),
            "terraform apply ({preset}) failed:\n{all}"
        );
        all
    }

    /// Destroys the deployment, checks that none of its processes is left, returns the output.
    fn destroy_ok(&self) -> String {
        let out = self.terraform(&self.apply_args("destroy", "lf-w3r3", &["-auto-approve"]));
        let all = text(&out);
        assert!(out.status.success(), "terraform destroy failed:\n{all}");
        self.assert_nothing_left();
        all
    }

    /// `terraform output -json`.
    fn outputs(&self) -> Value {
        let out = self.terraform(&["output", "-json", "-no-color"]);
        assert!(
            out.status.success(),
            "terraform output failed:\n{}",
            text(&out)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    }

    /// The `node_urls` output.
    fn urls(&self) -> Vec<String> {
        let outputs = self.outputs();
        let urls = outputs["node_urls"]["value"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        urls.iter()
            .map(|u| u.as_str().unwrap().to_owned())
            .collect()
    }

    /// `(pid, start time)` of every node recorded in the run directory's pid files.
    fn recorded_nodes(&self) -> Vec<(u32, String)> {
        let mut nodes = Vec::new();
        for id in 1..=N {
            let Ok(line) = std::fs::read_to_string(self.run_dir.join(format!("node-{id}.pid")))
            else {
                continue;
            };
            let mut parts = line.split_whitespace();
            let pid = parts
                .next()
                .and_then(|p| p.parse().ok())
                .expect("pid in pid file");
            nodes.push((pid, parts.next().unwrap_or_default().to_owned()));
        }
        nodes
    }

    /// No process of this run: none marked with its run directory, none with its binary and
    /// ports, and every port of the deployment refuses connections.
    fn assert_nothing_left(&self) {
        let left = self.leftover_pids();
        assert!(
            left.is_empty(),
            "kv-node processes of this run still alive: {left:?}"
        );
        for port in self.base_port..self.base_port + N {
            assert!(
                TcpStream::connect(("127.0.0.1", port)).is_err(),
                "port {port} still answers"
            );
        }
    }

    /// Pids of live processes that belong to this run.
    fn leftover_pids(&self) -> Vec<u32> {
        let marker = format!("KV_DEPLOYMENT_NODE={}/node-", self.run_dir.display());
        let ports: Vec<String> = (self.base_port..self.base_port + N)
            .map(|p| p.to_string())
            .collect();
        let mut pids = Vec::new();
        for entry in std::fs::read_dir("/proc").unwrap().flatten() {
            let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
                continue;
            };
            let environ = std::fs::read(entry.path().join("environ")).unwrap_or_default();
            let marked = environ
                .split(|b| *b == 0)
                .any(|v| v.starts_with(marker.as_bytes()));
            let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
            let args: Vec<String> = cmdline
                .split(|b| *b == 0)
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .collect();
            let ours = args.first().is_some_and(|a| a.ends_with("kv-node"))
                && args
                    .windows(2)
                    .any(|w| w[0] == "--port" && ports.contains(&w[1]));
            if marked || ours {
                pids.push(pid);
            }
        }
        pids
    }
}

impl Drop for Deployment {
    /// Whatever happened, the run's processes are stopped: `terraform destroy`, then SIGKILL
    /// for anything left. The directory is kept when the test failed, for its logs.
    fn drop(&mut self) {
        if !self.leftover_pids().is_empty() {
            let _ = self.terraform(&self.apply_args("destroy", "lf-w3r3", &["-auto-approve"]));
            for pid in self.leftover_pids() {
                let _ = Command::new("kill")
                    .args(["-KILL", &pid.to_string()])
                    .status();
            }
        }
        if std::thread::panicking() {
            eprintln!("deployment kept for inspection: {}", self.dir.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// A standalone kv-node that belongs to no deployment; killed when dropped.
struct Bystander(Child);

impl Bystander {
    fn start(port: u16) -> Self {
        let child = Command::new(env!("CARGO_BIN_EXE_kv-node"))
            .args(["--port", &port.to_string(), "--log-level", "warn"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        Self(child)
    }
}

impl Drop for Bystander {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Every recorded node process has exited (a pid now used by another process does not count).
fn assert_all_gone(nodes: &[(u32, String)]) {
    for (pid, start) in nodes {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let fields: Vec<&str> = stat
            .rsplit_once(") ")
            .map(|(_, f)| f.split(' ').collect())
            .unwrap_or_default();
        let running = fields.len() > 19 && fields[0] != "Z" && fields[19] == start;
        assert!(!running, "node process {pid} is still running");
    }
}
