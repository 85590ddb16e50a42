//! The container image (`Dockerfile`): FROM scratch with the static `kv-node`, listening on
//! 0.0.0.0 and on `PORT`, as an unprivileged numeric user, stopping on SIGTERM.
//!
//! The image is built with podman (needs `podman`, which `scripts/setup.sh` installs, and the
//! static build, made when missing). `podman run` does not work on the build machine (its
//! sandbox refuses setrlimit), so the test reads the image's configuration with `podman image
//! inspect`, takes the binary out of the saved image's only layer and runs it as the image's
//! entrypoint, with the image's environment and `PORT` set: on 127.0.0.1, not 0.0.0.0, so
//! that the test opens nothing beyond this machine.

mod common;
mod tf_support;

use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use tf_support::{repo_root, run_bounded, static_kv_node, text, Http, STATIC_TARGET};

/// The image holds one file, the static kv-node, as its entrypoint; it runs as user 65532,
/// exposes 8080 and sets BIND=0.0.0.0 and PORT=8080; its binary answers /health on the port
/// PORT names and exits 0 on SIGTERM.
#[test]
fn image_runs_the_static_node_on_port_as_an_unprivileged_user_and_stops_on_sigterm() {
    let podman = which("podman")
        .expect("podman is not installed: scripts/setup.sh installs it (apt-get install podman)");
    let bin = static_kv_node();
    let context_bin = repo_root().join(format!("target/{STATIC_TARGET}/release/kv-node"));
    assert!(
        context_bin.is_file()
            && std::fs::read(&context_bin).unwrap() == std::fs::read(&bin).unwrap(),
        "the Dockerfile copies {}, which is not the static build {} (CARGO_TARGET_DIR elsewhere?)",
        context_bin.display(),
        bin.display()
    );
    let image = Image::build(&podman);

    let inspect = image.podman(&["image", "inspect", "--format", "json", &image.tag]);
    let inspect: Value = serde_json::from_slice(&inspect.stdout).unwrap();
    let config = &inspect[0]["Config"];
    assert_eq!(
        config["Entrypoint"],
        serde_json::json!(["/kv-node"]),
        "{config}"
    );
    assert_eq!(config["User"], "65532:65532", "{config}");
    assert!(config["ExposedPorts"].get("8080/tcp").is_some(), "{config}");
    let env: Vec<(String, String)> = config["Env"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|v| {
            v.as_str()?
                .split_once('=')
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
        })
        .collect();
    let var = |name: &str| env.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str());
    assert_eq!(
        (var("BIND"), var("PORT")),
        (Some("0.0.0.0"), Some("8080")),
        "{env:?}"
    );

    let rootfs = image.unpack();
    let files: Vec<String> = std::fs::read_dir(&rootfs)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(files, ["kv-node"], "the image holds the binary only");
    let inner = rootfs.join("kv-node");
    assert!(
        std::fs::read(&inner).unwrap() == std::fs::read(&bin).unwrap(),
        "the image's kv-node is the static build"
    );

    // As `docker run -e PORT=...`: the image's environment, PORT set by the caller.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut cmd = Command::new(&inner);
    cmd.env_clear()
        .envs(env.iter().map(|(k, v)| (k, v)))
        .env("PORT", port.to_string())
        .env("BIND", "127.0.0.1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    let mut child = Guard(cmd.spawn().expect("run the image's kv-node"));
    let (tx, rx) = std::sync::mpsc::channel();
    let stdout = child.0.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut lines = BufReader::new(stdout).lines();
        let _ = tx.send(common::listening_addr(&mut lines));
        lines.map_while(Result::ok).collect::<Vec<_>>()
    });
    let addr = rx
        .recv_timeout(Duration::from_secs(15))
        .expect("kv-node logged no listening address within 15 s")
        .expect("kv-node exited without listening");
    assert_eq!(addr, format!("127.0.0.1:{port}"), "PORT is honoured");
    let (status, health) = Http::new().get(&format!("http://{addr}/health"));
    assert_eq!(status, 200, "{health}");
    assert_eq!(
        (&health["status"], &health["mode"]),
        (&Value::from("healthy"), &Value::from("standalone"))
    );

    let pid = child.0.id().to_string();
    let term = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    assert!(term.success());
    let deadline = Instant::now() + Duration::from_secs(15);
    let exit = loop {
        if let Some(status) = child.0.try_wait().unwrap() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "kv-node still runs 15 s after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(exit.success(), "kv-node exits 0 on SIGTERM: {exit}");
    let rest = reader.join().unwrap().join("\n");
    assert!(
        rest.contains("stopped"),
        "kv-node logs its graceful stop:\n{rest}"
    );
}

/// The image built for this test, removed again when dropped (with its unpacked files).
struct Image {
    podman: PathBuf,
    tag: String,
    dir: PathBuf,
}

impl Image {
    /// `podman build -t TAG .` at the top of the repository (the context: `.dockerignore`).
    fn build(podman: &Path) -> Self {
        let id = std::process::id();
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("container-{id}"));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let image = Self {
            podman: podman.to_owned(),
            tag: format!("localhost/kv-service-test:{id}"),
            dir,
        };
        let root = repo_root();
        let started = Instant::now();
        let root = root.to_str().unwrap();
        image.podman(&["build", "--quiet", "-t", &image.tag, root]);
        eprintln!("podman build: {:.1} s", started.elapsed().as_secs_f64());
        image
    }

    /// Runs podman with `args` (bounded to 5 min), failing the test if it fails.
    fn podman(&self, args: &[&str]) -> std::process::Output {
        let mut cmd = Command::new(&self.podman);
        cmd.args(args);
        let out = run_bounded(cmd, Duration::from_secs(300));
        assert!(
            out.status.success(),
            "podman {args:?} failed:\n{}",
            text(&out)
        );
        out
    }

    /// `podman save`, then the files of the image's only layer, unpacked; returns their root.
    fn unpack(&self) -> PathBuf {
        let archive = self.dir.join("image.tar");
        let archive_s = archive.to_str().unwrap();
        self.podman(&[
            "save",
            "--format",
            "docker-archive",
            "-o",
            archive_s,
            &self.tag,
        ]);
        let saved = self.dir.join("saved");
        let rootfs = self.dir.join("rootfs");
        std::fs::create_dir_all(&saved).unwrap();
        std::fs::create_dir_all(&rootfs).unwrap();
        untar(&archive, &saved);
        let manifest: Value =
            serde_json::from_slice(&std::fs::read(saved.join("manifest.json")).unwrap()).unwrap();
        let layers = manifest[0]["Layers"].as_array().unwrap();
        assert_eq!(layers.len(), 1, "one layer: {manifest}");
        untar(&saved.join(layers[0].as_str().unwrap()), &rootfs);
        rootfs
    }
}

impl Drop for Image {
    fn drop(&mut self) {
        let _ = Command::new(&self.podman)
            .args(["rmi", "--force", &self.tag])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A child process killed when dropped (a failed assertion leaves nothing running).
struct Guard(std::process::Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn untar(archive: &Path, into: &Path) {
    let mut cmd = Command::new("tar");
    cmd.arg("-xf").arg(archive).arg("-C").arg(into);
    let out = run_bounded(cmd, Duration::from_secs(60));
    assert!(
        out.status.success(),
        "tar -xf {}:\n{}",
        archive.display(),
        text(&out)
    );
}

/// The executable `name` on PATH, if any.
fn which(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}
