//! `scripts/deploy.sh`, the default deployment's own script, in a copy of `scripts/` and
//! `terraform/` (own state, own run directory, free ports): it gives every node an admin token
//! it generates once, keeps it for re-deployments, prints it with the dashboard URL and says so
//! in `--help`. Takes its turn with the other Terraform tests (one cluster at a time).

mod tf_support;

use serde_json::json;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;
use tf_support::{
    copy_sources, free_port_range, repo_root, run_bounded, text, toolchain, Http, Turn,
};

/// Nodes of the test deployment.
const N: u16 = 3;
/// Longest one run of a script may take.
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(240);

/// A copy of the repository's scripts and Terraform sources; destroyed on drop.
struct Copy {
    root: PathBuf,
    base_port: u16,
}

impl Copy {
    fn new() -> Self {
        let root = Path::new(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("deploy-script-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        copy_sources(&repo_root().join("scripts"), &root.join("scripts"));
        copy_sources(&repo_root().join("terraform"), &root.join("terraform"));
        Self {
            root,
            base_port: free_port_range(N),
        }
    }

    /// Runs `scripts/NAME args...` of the copy, bounded, with this test's binary and ports.
    fn script(&self, name: &str, args: &[&str]) -> Output {
        let mut cmd = Command::new("bash");
        cmd.arg(self.root.join("scripts").join(name))
            .args(args)
            .env("KV_NODE_BIN", env!("CARGO_BIN_EXE_kv-node"))
            .env("KV_BASE_PORT", self.base_port.to_string())
            .env_remove("KV_ADMIN_TOKEN")
            .env_remove("TF_VAR_admin_token")
            .current_dir(&self.root);
        run_bounded(cmd, SCRIPT_TIMEOUT)
    }

    /// `deploy.sh` with three nodes, W=2, R=2: its output, which must say it succeeded.
    fn deploy(&self) -> String {
        let out = self.script(
            "deploy.sh",
            &[
                "lf-w3r3",
                "-var",
                "replicas=3",
                "-var",
                "w=2",
                "-var",
                "r=2",
            ],
        );
        let all = text(&out);
        assert!(out.status.success(), "deploy.sh failed:\n{all}");
        all
    }

    fn token_file(&self) -> PathBuf {
        self.root.join("terraform/.run/admin-token")
    }
}

impl Drop for Copy {
    fn drop(&mut self) {
        let out = self.script("destroy.sh", &[]);
        if !out.status.success() {
            eprintln!("destroy.sh failed:\n{}", text(&out));
        }
    }
}

/// The value printed after `Admin token: ` (up to the next space).
fn printed_token(out: &str) -> String {
    let line = out
        .lines()
        .find_map(|l| l.strip_prefix("Admin token: "))
        .unwrap_or_else(|| panic!("no `Admin token:` line in:\n{out}"));
    line.split_whitespace()
        .next()
        .unwrap_or_default()
        .to_owned()
}

/// The default deployment generates a random admin token (mode 0600, in terraform/.run),
/// gives it to every node (admin calls need it: 401 without, 200 with) and prints it after
/// the dashboard URL; a re-deployment keeps it and restarts nothing; `--help` tells.
#[test]
fn deploy_generates_an_admin_token_prints_it_and_keeps_it() {
    let _ = toolchain();
    let _turn = Turn::take("terraform-tests");
    let copy = Copy::new();

    let help = text(&copy.script("deploy.sh", &["--help"]));
    assert!(
        help.contains("admin token") && help.contains("KV_ADMIN_TOKEN"),
        "{help}"
    );
    assert!(help.contains("terraform/.run/admin-token"), "{help}");

    let first = copy.deploy();
    let token = printed_token(&first);
    assert!(token.len() >= 24, "a random token, not `{token}`");
    let lines: Vec<&str> = first.lines().collect();
    let dashboard = lines.iter().position(|l| l.starts_with("Dashboard: "));
    let printed = lines.iter().position(|l| l.starts_with("Admin token: "));
    assert!(
        dashboard < printed,
        "the token follows the dashboard URL:\n{first}"
    );
    let file = copy.token_file();
    assert_eq!(std::fs::read_to_string(&file).unwrap().trim(), token);
    let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "only its owner reads the token file");

    let http = Http::new();
    let heal = json!({"kind": "heal"});
    for port in copy.base_port..copy.base_port + N {
        let url = format!("http://127.0.0.1:{port}");
        let (_, status) = http.get(&format!("{url}/status"));
        assert_eq!(status["security"]["admin"], "token", "{url}: {status}");
        let (code, _) = http.post(&format!("{url}/admin/faults"), &heal);
        assert_eq!(code, 401, "{url}: a fault without the token");
        let (code, body) = http.post_as(&format!("{url}/admin/faults"), &heal, &token);
        assert_eq!(code, 200, "{url}: a fault with the printed token: {body}");
    }

    let again = copy.deploy();
    assert_eq!(
        printed_token(&again),
        token,
        "a re-deployment keeps the token"
    );
    assert!(
        again.contains("0 added, 0 changed, 0 destroyed"),
        "the same token changes nothing:\n{again}"
    );
}
