//! The node's `/` in a real headless Chromium: the WASM page renders the
//! node's health.

mod common;
mod webdriver;

use common::TestNode;
use fantoccini::Locator;
use kv_node::Config;
use std::time::Duration;
use webdriver::Browser;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wasm_page_renders_the_nodes_health() {
    assert!(
        kv_node::ui::is_built(),
        "web-ui/dist is missing: build it with `trunk build --release` (scripts/test.sh does)"
    );
    let node = TestNode::start(Config::for_tests(4)).await;
    let browser = Browser::start().await;
    let c = &browser.client;
    c.goto(&format!("{}/", node.url)).await.unwrap();

    let status = c
        .wait()
        .at_most(Duration::from_secs(30))
        .for_element(Locator::Css("#health-status[data-status='healthy']"))
        .await
        .expect("the page shows the node as healthy");
    assert_eq!(status.text().await.unwrap(), "healthy");
    let id = c.find(Locator::Css("#health-node")).await.unwrap();
    assert_eq!(id.text().await.unwrap(), "4");
    let mode = c.find(Locator::Css("#health-mode")).await.unwrap();
    assert_eq!(mode.text().await.unwrap(), "standalone");

    browser.screenshot("health").await;
    browser.close().await;
    node.stop().await;
}
