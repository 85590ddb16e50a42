//! The SSH target of the Terraform deployment (`terraform/modules/ssh`) on five hosts.
//!
//! The hosts are network namespaces of this machine, each with its own address on a private
//! bridge that the test makes (10.213.0.1 here, 10.213.0.11–15 there) and Debian's sshd listening
//! on that address (ports 22 and 2222) with its own configuration, host key and authorized key,
//! generated in a temporary directory. Terraform runs here and reaches them over SSH as it would
//! reach real machines. The namespaces share this machine's files and processes, which lets the
//! tests see what was installed and what runs.
//!
//! Needs root, `ip` (iproute2), `/usr/sbin/sshd` (openssh-server), the Terraform toolchain and
//! the static `kv-node` (built when missing); without one of them a test fails saying which.
//! The tests take turns (one set of namespaces at a time), and a guard removes the namespaces,
//! the bridge and every process in them even when a test fails; what a killed run left behind
//! is removed by the next one.

mod tf_support;

use serde_json::{json, Value};
use std::ffi::OsStr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};
use tf_support::{
    copy_sources, local_value, repo_root, run_bounded, static_kv_node, text, toolchain, wait_until,
    write_when_ready, Http, Turn,
};

/// Hosts (network namespaces) per test, one node each (every preset has N = 5).
const HOSTS: usize = 5;
/// The first three bytes of every address the tests create.
const SUBNET: &str = "10.213.0";
/// The node port on every host: each namespace has its own network stack.
const NODE_PORT: u16 = 8080;
/// Longest any one terraform command may take before the test gives up on it.
const TERRAFORM_TIMEOUT: Duration = Duration::from_secs(300);
/// Prefixes of the names of namespaces and links, followed by the owning test's pid.
const NS_PREFIX: &str = "kvssh";
const LINK_PREFIX: &str = "ks";

/// Five hosts, one node each: every node is healthy and reachable at its host's address and
/// binds it; secrets are in files of mode 0600, not on a command line; a write through one host
/// reads back on another; a host cut off shows as down in another node's /status and up again
/// once its link is back; destroy leaves no process and no installed file.
#[test]
fn ssh_target_deploys_on_five_hosts_notices_a_cut_link_and_destroys_cleanly() {
    let hosts = Hosts::start();
    let tf = SshDeployment::new("story", &hosts);
    let http = Http::new();
    tf.apply_ok("lf-w3r3", &["-var=admin_token=ssh-test-admin-token"]);

    let outputs = tf.outputs();
    let urls = tf.urls();
    let expected: Vec<String> = (1..=HOSTS)
        .map(|i| format!("http://{}:{NODE_PORT}", hosts.addr(i)))
        .collect();
    assert_eq!(urls, expected, "{outputs}");
    assert_eq!(outputs["leader_url"]["value"], json!(urls[0]), "{outputs}");
    assert_eq!(
        outputs["dashboard_url"]["value"],
        json!(format!("{}/", urls[0]))
    );
    let (status, _) = http.get_text(&format!("{}/", urls[0]));
    assert_eq!(status, 200, "the dashboard URL answers");

    for (i, url) in urls.iter().enumerate() {
        let id = i + 1;
        let (status, health) = http.get(&format!("{url}/health"));
        assert_eq!(status, 200, "{url}/health: {health}");
        assert_eq!(
            (&health["node_id"], &health["ready"]),
            (&json!(id), &json!(true))
        );
        let (_, node_status) = http.get(&format!("{url}/status"));
        assert_eq!(
            node_status["url"],
            json!(url),
            "advertised URL: {node_status}"
        );
        assert_eq!(
            node_status["security"]["admin"],
            json!("token"),
            "the admin token reached node {id} through its env file: {node_status}"
        );
        let args = cmdline(tf.node_pid(id));
        let bind = args.windows(2).find(|w| w[0] == "--bind").map(|w| &w[1]);
        assert_eq!(
            bind,
            Some(&hosts.addr(id)),
            "node {id} binds its host: {args:?}"
        );
        let secret = std::fs::read_to_string(tf.node_dir(id).join("cluster-secret")).unwrap();
        let joined = args.join(" ");
        assert!(
            !joined.contains(secret.trim()) && !joined.contains("ssh-test-admin-token"),
            "a secret on node {id}'s command line: {joined}"
        );
        for (file, mode) in [("", 0o700), ("env", 0o600), ("cluster-secret", 0o600)] {
            let meta = std::fs::metadata(tf.node_dir(id).join(file)).unwrap();
            assert_eq!(
                meta.permissions().mode() & 0o777,
                mode,
                "node-{id}/{file} mode"
            );
        }
    }

    // A follower forwards the write to the leader; another host reads it back.
    write_when_ready(&http, &urls[1], "ssh-k", "v1");
    let (status, body) = http.get(&format!("{}/get?key=ssh-k", urls[3]));
    assert_eq!((status, &body["value"]), (200, &json!("v1")), "{body}");

    // Host 5 cut off its link: node 1 sees it down, then up again once the link is back.
    hosts.set_link(5, false);
    wait_until(Duration::from_secs(20), "node 1 sees node 5 down", || {
        peer_up(&http, &urls[0], 5) == Some(false)
    });
    hosts.set_link(5, true);
    wait_until(
        Duration::from_secs(30),
        "node 1 sees node 5 up again",
        || peer_up(&http, &urls[0], 5) == Some(true),
    );
    write_when_ready(&http, &urls[1], "ssh-k", "v2");
    wait_until(
        Duration::from_secs(20),
        "node 5 holds the write made after the heal",
        || local_value(&http, &urls[4], "ssh-k").as_deref() == Some("v2"),
    );

    tf.destroy_ok();
}

/// A second apply changes nothing; a change of one host's SSH settings replaces that host's node
/// only (the other nodes keep their processes), and the cluster works on.
#[test]
fn changing_one_host_replaces_only_its_node() {
    let hosts = Hosts::start();
    let mut tf = SshDeployment::new("one-host", &hosts);
    let http = Http::new();
    tf.apply_ok("leaderless", &[]);
    let before: Vec<u32> = (1..=HOSTS).map(|id| tf.node_pid(id)).collect();

    let again = tf.apply_ok("leaderless", &[]);
    assert!(again.contains("0 added, 0 changed, 0 destroyed"), "{again}");

    tf.set_ssh_port(3, 2222);
    let changed = tf.apply_ok("leaderless", &[]);
    // Node 3 and the readiness check that follows every change of a node.
    assert!(
        changed.contains("2 added, 0 changed, 2 destroyed"),
        "{changed}"
    );
    assert!(
        changed.contains(r#"module.ssh[0].null_resource.node["3"]: Destruction complete"#),
        "{changed}"
    );
    for id in 1..=HOSTS {
        let now = tf.node_pid(id);
        if id == 3 {
            assert_ne!(now, before[id - 1], "node 3 was replaced");
            assert!(!alive(before[id - 1]), "the old node 3 has stopped");
        } else {
            assert_eq!(now, before[id - 1], "node {id} kept its process");
        }
    }
    let urls = tf.urls();
    write_when_ready(&http, &urls[2], "one-host", "v1");
    let (status, body) = http.get(&format!("{}/get?key=one-host", urls[0]));
    assert_eq!((status, &body["value"]), (200, &json!("v1")), "{body}");
    tf.destroy_ok();
}

/// A node that exits at start (a flag it refuses) fails apply with its own log, as the host
/// shows it; nothing of it keeps running and nothing it installed is left.
#[test]
fn a_node_that_cannot_start_fails_apply_with_its_log_and_leaves_nothing_running() {
    let hosts = Hosts::start();
    let tf = SshDeployment::new("bad-flag", &hosts);
    let out = tf.apply("lf-w3r3", &[r#"-var=extra_args=["--no-such-flag"]"#]);
    let all = text(&out);
    assert!(!out.status.success(), "apply must fail:\n{all}");
    assert!(all.contains("kv-node exited during start"), "{all}");
    assert!(all.contains("last 20 lines of"), "no log tail:\n{all}");
    assert!(
        all.contains("--no-such-flag"),
        "the node's own error:\n{all}"
    );
    let left = tf.processes();
    assert!(
        left.is_empty(),
        "processes left after the failed apply: {left:?}"
    );
    assert!(
        !tf.remote_dir.exists(),
        "a failed start removes what it installed (destroy does not run for a tainted node)"
    );
    tf.destroy_ok();
}

/// Whether the node at `url` sees peer `id` up, per its /status (None: no answer).
fn peer_up(http: &Http, url: &str, id: u64) -> Option<bool> {
    let (status, body) = http.try_get(&format!("{url}/status"))?;
    if status != 200 {
        return None;
    }
    let peers = body["peers"].as_array()?;
    let peer = peers.iter().find(|p| p["id"] == json!(id))?;
    peer["up"].as_bool()
}

/// The command line of process `pid`, one entry per argument.
fn cmdline(pid: u32) -> Vec<String> {
    let raw = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    raw.split(|b| *b == 0)
        .filter(|a| !a.is_empty())
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect()
}

/// Whether process `pid` runs (a zombie does not).
fn alive(pid: u32) -> bool {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let state = stat
        .rsplit_once(") ")
        .and_then(|(_, f)| f.split(' ').next());
    matches!(state, Some(s) if s != "Z" && s != "X")
}

/// Runs a command to completion (bounded to 30 s), failing the test with `what` and its output.
fn run_ok<S: AsRef<OsStr>>(program: &str, args: &[S], what: &str) -> Output {
    let mut cmd = Command::new(program);
    cmd.args(args);
    let out = run_bounded(cmd, Duration::from_secs(30));
    assert!(out.status.success(), "{what} failed:\n{}", text(&out));
    out
}

/// Five network namespaces on a private bridge, each running sshd on its own address. Dropping
/// it kills every process in the namespaces and removes them and the bridge.
struct Hosts {
    tag: String,
    dir: PathBuf,
    key: PathBuf,
    host_key: String,
    sshd: Vec<Child>,
    _turn: Turn,
}

impl Hosts {
    /// Checks what the tests need, waits for this test's turn, removes what a killed run left,
    /// makes the bridge and the namespaces, and starts sshd in each.
    fn start() -> Self {
        preflight();
        let turn = Turn::take("deploy-ssh");
        remove_stale();
        let tag = std::process::id().to_string();
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("deploy-ssh-hosts-{tag}"));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let key = dir.join("id_ed25519");
        let host_key_file = dir.join("host_ed25519");
        for (file, what) in [(&key, "the client key"), (&host_key_file, "the host key")] {
            let path = file.to_str().unwrap();
            run_ok(
                "ssh-keygen",
                &["-q", "-t", "ed25519", "-N", "", "-C", "kv-test", "-f", path],
                what,
            );
        }
        let host_key = std::fs::read_to_string(dir.join("host_ed25519.pub")).unwrap();
        std::fs::copy(dir.join("id_ed25519.pub"), dir.join("authorized_keys")).unwrap();
        // sshd refuses to start without its privilege separation directory.
        std::fs::create_dir_all("/run/sshd").unwrap();
        let mut hosts = Self {
            tag,
            dir,
            key,
            host_key: host_key.trim().to_owned(),
            sshd: Vec::new(),
            _turn: turn,
        };
        hosts.make_network();
        for i in 1..=HOSTS {
            hosts.start_sshd(i);
        }
        for i in 1..=HOSTS {
            hosts.wait_sshd(i);
        }
        hosts
    }

    fn bridge(&self) -> String {
        format!("{LINK_PREFIX}b{}", self.tag)
    }
    fn ns(&self, i: usize) -> String {
        format!("{NS_PREFIX}{}-{i}", self.tag)
    }
    /// The bridge side of host `i`'s link.
    fn veth(&self, i: usize) -> String {
        format!("{LINK_PREFIX}{}h{i}", self.tag)
    }
    /// Host `i`'s address (1-based).
    fn addr(&self, i: usize) -> String {
        format!("{SUBNET}.{}", 10 + i)
    }

    fn make_network(&self) {
        let br = self.bridge();
        let gw = format!("{SUBNET}.1/24");
        run_ok(
            "ip",
            &["link", "add", &br, "type", "bridge"],
            "ip link add (bridge)",
        );
        run_ok(
            "ip",
            &["addr", "add", &gw, "dev", &br],
            "ip addr add (bridge)",
        );
        run_ok("ip", &["link", "set", &br, "up"], "ip link set up (bridge)");
        for i in 1..=HOSTS {
            let (ns, veth, inner) = (self.ns(i), self.veth(i), format!("eth{i}"));
            let addr = format!("{}/24", self.addr(i));
            run_ok("ip", &["netns", "add", &ns], "ip netns add");
            run_ok(
                "ip",
                &[
                    "link", "add", &veth, "type", "veth", "peer", "name", &inner, "netns", &ns,
                ],
                "ip link add (veth)",
            );
            run_ok(
                "ip",
                &["link", "set", &veth, "master", &br, "up"],
                "ip link set master",
            );
            let in_ns = |args: &[&str], what: &str| {
                let mut all = vec!["netns", "exec", &ns, "ip"];
                all.extend_from_slice(args);
                run_ok("ip", &all, what);
            };
            in_ns(&["addr", "add", &addr, "dev", &inner], "ip addr add (host)");
            in_ns(&["link", "set", &inner, "up"], "ip link set up (host)");
            in_ns(&["link", "set", "lo", "up"], "ip link set lo up");
        }
    }

    fn start_sshd(&mut self, i: usize) {
        let d = self.dir.display();
        let addr = self.addr(i);
        let config = format!(
            "ListenAddress {addr}:22\nListenAddress {addr}:2222\nHostKey {d}/host_ed25519\n\
             AuthorizedKeysFile {d}/authorized_keys\nPidFile {d}/sshd-{i}.pid\n\
             PasswordAuthentication no\nKbdInteractiveAuthentication no\n\
             PermitRootLogin prohibit-password\nStrictModes no\nUsePAM no\n\
             Subsystem sftp internal-sftp\nLogLevel VERBOSE\n"
        );
        let conf = self.dir.join(format!("sshd-{i}.conf"));
        std::fs::write(&conf, config).unwrap();
        let log = std::fs::File::create(self.dir.join(format!("sshd-{i}.log"))).unwrap();
        let child = Command::new("ip")
            .args([
                "netns",
                "exec",
                &self.ns(i),
                "/usr/sbin/sshd",
                "-D",
                "-e",
                "-f",
            ])
            .arg(&conf)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start sshd");
        self.sshd.push(child);
    }

    /// Waits until host `i`'s sshd accepts connections on both ports.
    fn wait_sshd(&mut self, i: usize) {
        let deadline = Instant::now() + Duration::from_secs(15);
        for port in [22, 2222] {
            let addr: std::net::SocketAddr = format!("{}:{port}", self.addr(i)).parse().unwrap();
            while std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_err() {
                let exited = self.sshd[i - 1].try_wait().unwrap().is_some();
                let log = std::fs::read_to_string(self.dir.join(format!("sshd-{i}.log")));
                assert!(
                    !exited && Instant::now() < deadline,
                    "sshd of host {i} does not listen on {addr}: {}",
                    log.unwrap_or_default()
                );
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }

    /// Brings host `i`'s link to the bridge down (cut off) or up.
    fn set_link(&self, i: usize, up: bool) {
        let state = if up { "up" } else { "down" };
        run_ok("ip", &["link", "set", &self.veth(i), state], "ip link set");
    }
}

impl Drop for Hosts {
    fn drop(&mut self) {
        for i in 1..=HOSTS {
            remove_namespace(&self.ns(i));
        }
        for child in &mut self.sshd {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = Command::new("ip")
            .args(["link", "del", &self.bridge()])
            .stderr(Stdio::null())
            .status();
        if std::thread::panicking() {
            eprintln!("sshd logs kept: {}", self.dir.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// Fails the test, saying what is missing, unless root, `ip` with namespaces and sshd are here.
fn preflight() {
    let uid = Command::new("id").arg("-u").output().expect("run id -u");
    assert_eq!(
        String::from_utf8_lossy(&uid.stdout).trim(),
        "0",
        "the SSH deployment tests need root (network namespaces, sshd)"
    );
    assert!(
        Path::new("/usr/sbin/sshd").exists(),
        "openssh-server is not installed (/usr/sbin/sshd): scripts/setup.sh installs it"
    );
    let probe = format!("{NS_PREFIX}probe{}", std::process::id());
    let added = Command::new("ip").args(["netns", "add", &probe]).output();
    let ok = matches!(&added, Ok(o) if o.status.success());
    let _ = Command::new("ip").args(["netns", "del", &probe]).status();
    assert!(
        ok,
        "network namespaces are not available here (ip netns add failed: {added:?}); iproute2 \
         and root in a kernel with network namespaces are needed"
    );
}

/// Kills every process in namespace `ns` and deletes it.
fn remove_namespace(ns: &str) {
    let pids = Command::new("ip").args(["netns", "pids", ns]).output();
    if let Ok(out) = pids {
        for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
            let _ = Command::new("kill").args(["-KILL", pid]).status();
        }
    }
    let _ = Command::new("ip")
        .args(["netns", "del", ns])
        .stderr(Stdio::null())
        .status();
}

/// Removes the namespaces and bridges of earlier runs whose process is gone (a killed test).
fn remove_stale() {
    let dead = |tag: &str| {
        tag.parse::<u32>()
            .is_ok_and(|pid| !Path::new(&format!("/proc/{pid}")).exists())
    };
    let list = Command::new("ip").args(["netns", "list"]).output().unwrap();
    for line in String::from_utf8_lossy(&list.stdout).lines() {
        let name = line.split_whitespace().next().unwrap_or_default();
        let tag = name
            .strip_prefix(NS_PREFIX)
            .and_then(|t| t.split('-').next());
        if tag.is_some_and(dead) {
            remove_namespace(name);
        }
    }
    let links = Command::new("ip")
        .args(["-o", "link", "show", "type", "bridge"])
        .output()
        .unwrap();
    for line in String::from_utf8_lossy(&links.stdout).lines() {
        let name = line.split(": ").nth(1).unwrap_or_default();
        let tag = name.strip_prefix(&format!("{LINK_PREFIX}b"));
        if tag.is_some_and(dead) {
            let _ = Command::new("ip").args(["link", "del", name]).status();
        }
    }
}

/// One deployment over SSH: a private copy of `terraform/`, its variables file, the directory
/// the nodes are installed in on every host, and the local run directory (the cluster secret).
struct SshDeployment {
    terraform: PathBuf,
    env: Vec<(String, String)>,
    dir: PathBuf,
    remote_dir: PathBuf,
    run_dir: PathBuf,
    binary: PathBuf,
    addrs: Vec<String>,
    key: PathBuf,
    host_key: String,
    ssh_ports: Vec<u16>,
}

impl SshDeployment {
    /// Copies `terraform/`, writes the variables for `hosts`, runs `terraform init`.
    fn new(name: &str, hosts: &Hosts) -> Self {
        let (terraform, env) = toolchain();
        let binary = static_kv_node();
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("deploy-ssh-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        copy_sources(&repo_root().join("terraform"), &dir);
        let tf = Self {
            terraform,
            env,
            remote_dir: dir.join("remote"),
            run_dir: dir.join(".run"),
            dir,
            binary,
            addrs: (1..=HOSTS).map(|i| hosts.addr(i)).collect(),
            key: hosts.key.clone(),
            host_key: hosts.host_key.clone(),
            ssh_ports: vec![22; HOSTS],
        };
        tf.write_vars();
        let init = tf.terraform(&["init", "-input=false", "-no-color"]);
        assert!(
            init.status.success(),
            "terraform init failed:\n{}",
            text(&init)
        );
        tf
    }

    /// Writes `ssh.tfvars.json`: the target, the hosts with their SSH ports, the binary and
    /// the directories of this deployment.
    fn write_vars(&self) {
        let hosts: Vec<Value> = self
            .addrs
            .iter()
            .zip(&self.ssh_ports)
            .map(|(addr, port)| {
                json!({
                    "address": addr,
                    "user": "root",
                    "private_key_file": self.key.display().to_string(),
                    "ssh_port": port.to_string(),
                    "host_key": self.host_key,
                })
            })
            .collect();
        let vars = json!({
            "target": "ssh",
            "hosts": hosts,
            "remote_dir": self.remote_dir.display().to_string(),
            "kv_node_binary": self.binary.display().to_string(),
            "log_dir": self.run_dir.display().to_string(),
            "health_timeout_seconds": 60,
        });
        std::fs::write(self.dir.join("ssh.tfvars.json"), vars.to_string()).unwrap();
    }

    /// Host `i`'s SSH port becomes `port` (its sshd listens on 22 and 2222).
    fn set_ssh_port(&mut self, i: usize, port: u16) {
        self.ssh_ports[i - 1] = port;
        self.write_vars();
    }

    fn terraform<S: AsRef<OsStr>>(&self, args: &[S]) -> Output {
        tf_support::run_terraform(
            &self.terraform,
            &self.env,
            &self.dir,
            args,
            TERRAFORM_TIMEOUT,
        )
    }

    fn args(&self, command: &str, preset: &str, extra: &[&str]) -> Vec<String> {
        let mut args = vec![
            command.to_owned(),
            "-input=false".to_owned(),
            "-no-color".to_owned(),
            "-auto-approve".to_owned(),
            format!("-var-file=presets/{preset}.tfvars"),
            "-var-file=ssh.tfvars.json".to_owned(),
        ];
        args.extend(extra.iter().map(|a| (*a).to_owned()));
        args
    }

    fn apply(&self, preset: &str, extra: &[&str]) -> Output {
        self.terraform(&self.args("apply", preset, extra))
    }

    fn apply_ok(&self, preset: &str, extra: &[&str]) -> String {
        let started = Instant::now();
        let out = self.apply(preset, extra);
        let all = text(&out);
        assert!(
            out.status.success(),
            "terraform apply ({preset}) failed:\n{all}"
        );
        eprintln!("apply ({preset}): {:.1} s", started.elapsed().as_secs_f64());
        all
    }

    /// Destroys the deployment and checks that nothing of it is left on the hosts or here.
    fn destroy_ok(&self) -> String {
        let started = Instant::now();
        let out = self.terraform(&self.args("destroy", "lf-w3r3", &[]));
        let all = text(&out);
        assert!(out.status.success(), "terraform destroy failed:\n{all}");
        eprintln!("destroy: {:.1} s", started.elapsed().as_secs_f64());
        let left = self.processes();
        assert!(left.is_empty(), "processes left after destroy: {left:?}");
        assert!(
            !self.remote_dir.exists(),
            "files left after destroy: {:?}",
            std::fs::read_dir(&self.remote_dir)
                .map(|d| d.flatten().map(|e| e.path()).collect::<Vec<_>>())
        );
        assert!(
            !self.run_dir.join("cluster-secret").exists(),
            "the local copy of the cluster secret is left"
        );
        all
    }

    fn outputs(&self) -> Value {
        let out = self.terraform(&["output", "-json", "-no-color"]);
        assert!(
            out.status.success(),
            "terraform output failed:\n{}",
            text(&out)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    }

    fn urls(&self) -> Vec<String> {
        let outputs = self.outputs();
        let urls = outputs["node_urls"]["value"].as_array().cloned();
        let urls = urls.unwrap_or_default();
        urls.iter()
            .map(|u| u.as_str().unwrap().to_owned())
            .collect()
    }

    /// Node `id`'s directory on its host (the hosts share this machine's files).
    fn node_dir(&self, id: usize) -> PathBuf {
        self.remote_dir.join(format!("node-{id}"))
    }

    /// The pid of node `id`'s kv-node, as its host recorded it; it must be running.
    fn node_pid(&self, id: usize) -> u32 {
        let file = self.node_dir(id).join("kv-node.pid");
        let pid = std::fs::read_to_string(&file).unwrap_or_default();
        let pid: u32 = pid
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("no pid in {}", file.display()));
        assert!(alive(pid), "node {id} (pid {pid}) is not running");
        pid
    }

    /// Pids and command lines of the processes of this deployment: kv-node and the restart
    /// loops, found by their directory on the command line.
    fn processes(&self) -> Vec<(u32, String)> {
        let needle = format!("{}/node-", self.remote_dir.display());
        let mut found = Vec::new();
        for entry in std::fs::read_dir("/proc").unwrap().flatten() {
            let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
                continue;
            };
            let line = cmdline(pid).join(" ");
            if line.contains(&needle) && alive(pid) {
                found.push((pid, line));
            }
        }
        found
    }
}

impl Drop for SshDeployment {
    /// Whatever happened, nothing of the deployment is left: `terraform destroy` while the
    /// hosts still run sshd, then SIGKILL for any process left. The directory is kept when the
    /// test failed, for its logs.
    fn drop(&mut self) {
        if !self.processes().is_empty() || self.remote_dir.exists() {
            let _ = self.terraform(&self.args("destroy", "lf-w3r3", &[]));
            for (pid, _) in self.processes() {
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
