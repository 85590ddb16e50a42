//! Headless Chromium driven over WebDriver (Debian's chromium + chromedriver).
#![allow(dead_code)]

use fantoccini::elements::Element;
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::json;
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A chromedriver process and a browser session on it; both end on drop.
pub struct Browser {
    /// The WebDriver session.
    pub client: Client,
    driver: Child,
    _profile: TempDir,
}

/// A directory removed on drop (Chromium's fresh user-data-dir).
struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Browser {
    /// Starts chromedriver on a free port and opens a headless Chromium session.
    ///
    /// # Panics
    /// When chromedriver or Chromium is missing (`scripts/setup.sh` installs them)
    /// or does not come up within 30 s.
    pub async fn start() -> Self {
        let port = free_port();
        // Its own process group, so that ending it also ends the Chromium
        // processes it started, even when a test panics before `close`.
        use std::os::unix::process::CommandExt;
        let driver = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .expect("chromedriver not found: run scripts/setup.sh");
        let profile =
            std::env::temp_dir().join(format!("kv-chromium-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&profile).unwrap();
        let caps = json!({
            "goog:chromeOptions": {
                "binary": "/usr/bin/chromium",
                "args": [
                    "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    "--disable-background-networking", "--no-first-run",
                    "--disable-component-update", "--disable-sync", "--disable-quic",
                    "--window-size=1280,900",
                    format!("--user-data-dir={}", profile.display()),
                ]
            }
        });
        let caps = match caps {
            serde_json::Value::Object(m) => m,
            _ => unreachable!(),
        };
        let url = format!("http://127.0.0.1:{port}");
        // chromedriver takes a moment to listen: retry the connection, bounded.
        let mut last_err = String::new();
        for _ in 0..60 {
            match ClientBuilder::rustls()
                .expect("TLS roots")
                .capabilities(caps.clone())
                .connect(&url)
                .await
            {
                Ok(client) => {
                    return Self {
                        client,
                        driver,
                        _profile: TempDir(profile),
                    }
                }
                Err(e) => last_err = e.to_string(),
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        panic!("could not open a Chromium session via chromedriver: {last_err}");
    }

    /// Saves a screenshot as `target/tmp/screenshots/NAME.png` (a test artifact).
    pub async fn screenshot(&self, name: &str) -> PathBuf {
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("screenshots");
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(format!("{name}.png"));
        let png = self.client.screenshot().await.unwrap();
        std::fs::write(&path, png).unwrap();
        path
    }

    /// Waits (bounded by `limit`) until an element matches `css`; panics
    /// naming `what` otherwise.
    pub async fn wait_for(&self, css: &str, limit: Duration, what: &str) -> Element {
        match self
            .client
            .wait()
            .at_most(limit)
            .every(Duration::from_millis(50))
            .for_element(Locator::Css(css))
            .await
        {
            Ok(e) => e,
            Err(e) => {
                let shot = self.screenshot(&format!("failed-{}", slug(what))).await;
                panic!(
                    "timed out after {limit:?} waiting for {what} (`{css}`): {e}; screenshot: {}",
                    shot.display()
                )
            }
        }
    }

    /// Whether an element matching `css` appears within `limit`.
    pub async fn appears(&self, css: &str, limit: Duration) -> bool {
        self.client
            .wait()
            .at_most(limit)
            .every(Duration::from_millis(50))
            .for_element(Locator::Css(css))
            .await
            .is_ok()
    }

    /// How many elements match `css` now.
    pub async fn count(&self, css: &str) -> usize {
        self.client
            .find_all(Locator::Css(css))
            .await
            .map_or(0, |v| v.len())
    }

    /// The text of the first element matching `css`.
    pub async fn text(&self, css: &str) -> String {
        let e = self
            .client
            .find(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("no `{css}`: {e}"));
        e.text().await.unwrap()
    }

    /// Replaces the text of the input matching `css` by typing `value`
    /// (select-all and backspace first, as a user would).
    pub async fn fill(&self, css: &str, value: &str) {
        let e = self
            .client
            .find(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("no `{css}`: {e}"));
        e.click().await.unwrap();
        // Ctrl+A, release the modifiers, Backspace.
        e.send_keys("\u{E009}a\u{E000}\u{E003}").await.unwrap();
        e.send_keys(value).await.unwrap();
        let now = e.prop("value").await.unwrap().unwrap_or_default();
        assert_eq!(now, value, "`{css}` holds what was typed");
    }

    /// Resizes the browser window (screenshots show the window).
    pub async fn resize(&self, width: u32, height: u32) {
        self.client.set_window_size(width, height).await.unwrap();
    }

    /// Picks the option with `value` in the select matching `css`.
    pub async fn select(&self, css: &str, value: &str) {
        let e = self
            .client
            .find(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("no `{css}`: {e}"));
        e.select_by_value(value).await.unwrap();
    }

    /// Clicks the element matching `css`.
    pub async fn click(&self, css: &str) {
        let e = self
            .client
            .find(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("no `{css}`: {e}"));
        e.click().await.unwrap();
    }

    /// Runs `script` (a function body; `return` gives the value) in the page.
    pub async fn js(&self, script: &str) -> serde_json::Value {
        self.client
            .execute(script, Vec::new())
            .await
            .unwrap_or_else(|e| panic!("script failed: {e}\n{script}"))
    }

    /// Ends the session, then chromedriver and every browser process it started.
    pub async fn close(self) {
        let _ = self.client.clone().close().await;
        // Drop kills the process group.
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // SIGKILL to the whole group: chromedriver and its Chromium processes.
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.driver.id())])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

/// `what` as a file name.
fn slug(what: &str) -> String {
    what.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect()
}
