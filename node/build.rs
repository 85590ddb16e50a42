//! Rebuild the node when the web UI build changes, so that a release binary
//! always carries the dashboard that `trunk build --release` produced last.
fn main() {
    println!("cargo:rerun-if-changed=../web-ui/dist");
}
