//! The dashboard's files over a real socket: compressed for clients that
//! accept it, the same bytes once decompressed, plain for those that do not;
//! and a favicon.

mod common;

use common::TestNode;
use kv_node::Config;
use std::io::Read;

/// The name of the wasm file the index loads (trunk hashes it).
fn wasm_name(index: &str) -> String {
    let end = index.find("_bg.wasm").expect("the index names its wasm");
    let start = index[..end].rfind(['/', '\'', '"']).unwrap() + 1;
    format!("{}_bg.wasm", &index[start..end])
}

fn unbrotli(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    brotli_decompressor::Decompressor::new(bytes, 4096)
        .read_to_end(&mut out)
        .unwrap();
    out
}

fn gunzip(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(bytes)
        .read_to_end(&mut out)
        .unwrap();
    out
}

/// The wasm comes brotli-compressed to `br`, gzip to `gzip`, plain to
/// neither, with `Vary: Accept-Encoding` each time; decompressed, each is
/// the file on disk byte for byte.
#[tokio::test]
async fn the_wasm_is_served_compressed_and_decompresses_to_the_file() {
    assert!(kv_node::ui::is_built(), "web-ui/dist is missing");
    let node = TestNode::start(Config::for_tests(1)).await;
    let client = reqwest::Client::new();
    let index = client
        .get(format!("{}/", node.url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let name = wasm_name(&index);
    let dist = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../web-ui/dist");
    let on_disk = std::fs::read(dist.join(&name)).unwrap();
    assert!(
        dist.join(format!("{name}.br")).exists(),
        "no precompressed copy: build the dashboard with scripts/build.sh"
    );
    let fetch = |accept: &'static str| {
        let req = client
            .get(format!("{}/{name}", node.url))
            .header("accept-encoding", accept);
        async move { req.send().await.unwrap() }
    };
    for (accept, want, decode) in [
        (
            "gzip, deflate, br, zstd",
            Some("br"),
            unbrotli as fn(&[u8]) -> Vec<u8>,
        ),
        ("gzip", Some("gzip"), gunzip),
        ("br;q=0, gzip;q=0.5", Some("gzip"), gunzip),
        ("identity", None, <[u8]>::to_vec),
    ] {
        let resp = fetch(accept).await;
        assert_eq!(resp.status(), 200, "{accept}");
        let h = resp.headers().clone();
        let encoding = h.get("content-encoding").map(|v| v.to_str().unwrap());
        assert_eq!(encoding, want, "{accept}");
        assert_eq!(h["content-type"], "application/wasm", "{accept}");
        assert_eq!(h["vary"], "accept-encoding", "{accept}");
        let body = resp.bytes().await.unwrap();
        if want.is_some() {
            assert!(
                body.len() < on_disk.len() / 2,
                "{accept}: {} bytes",
                body.len()
            );
        }
        assert_eq!(decode(&body), on_disk, "{accept}: decompressed bytes");
        println!("{accept:>26}: {:>7} bytes ({:?})", body.len(), want);
    }
    node.stop().await;
}

/// `/favicon.ico` and `/favicon.svg` answer 200 with an image; the index
/// links the icon.
#[tokio::test]
async fn the_favicon_is_an_image() {
    let node = TestNode::start(Config::for_tests(1)).await;
    let client = reqwest::Client::new();
    for path in ["/favicon.ico", "/favicon.svg"] {
        let resp = client
            .get(format!("{}{path}", node.url))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "{path}");
        let kind = resp.headers()["content-type"].to_str().unwrap().to_owned();
        assert!(kind.starts_with("image/"), "{path}: {kind}");
        assert!(resp.text().await.unwrap().starts_with("<svg"), "{path}");
    }
    if kv_node::ui::is_built() {
        let index = client
            .get(format!("{}/", node.url))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(index.contains(r#"rel="icon""#), "{index}");
    }
    node.stop().await;
}
