//! The dashboard's layout and weight in a real headless Chromium: no
//! sideways scroll from a 390 px phone to a wide screen (panels stack on a
//! narrow one), the page's bytes as transferred (compressed) and its time to
//! first render, printed for docs/results.md. Every wait is bounded and waits on
//! the page.

mod common;
mod webdriver;

use common::Cluster;
use std::time::Duration;
use webdriver::Browser;

/// Bound of every wait on the page.
const PAGE: Duration = Duration::from_secs(20);

/// Widths of the page and of its content, in CSS px, and the widest element
/// that sticks out (for the failure message).
const WIDTHS: &str = r#"
const d = document.documentElement;
let worst = "";
let right = d.clientWidth;
for (const e of document.querySelectorAll("body *")) {
  const r = e.getBoundingClientRect();
  if (r.right > right + 0.5) { right = r.right; worst = e.tagName + '#' + e.id + '.' + e.className; }
}
return [window.innerWidth, d.clientWidth, d.scrollWidth, worst];
"#;

/// What the browser fetched for the page: per resource, its name, bytes on
/// the wire (headers included) and decoded; the first contentful paint, the
/// dashboard's first render (its `dashboard-rendered` mark) and the load
/// end, in ms since navigation start.
const WEIGHT: &str = r#"
const nav = performance.getEntriesByType("navigation")[0];
const res = performance.getEntriesByType("resource")
  .filter(r => !r.name.includes("/events") && !r.name.includes("/health"))
  .map(r => [r.name.split("/").pop(), r.transferSize, r.decodedBodySize]);
const at = (name) => { const e = performance.getEntriesByName(name)[0]; return e ? e.startTime : null; };
return {
  resources: [["index.html", nav.transferSize, nav.decodedBodySize], ...res],
  fcp: at("first-contentful-paint"),
  rendered: at("dashboard-rendered"),
  load: nav.loadEventEnd,
};
"#;

/// Loads the page at `width` × `height`, waits until it shows the cluster,
/// and returns (inner width, client width, scroll width, widest element).
async fn widths_at(b: &Browser, url: &str, width: u32, height: u32) -> (u64, u64, u64, String) {
    b.resize(width, height).await;
    b.client.goto(url).await.unwrap();
    b.wait_for("#feed-status[data-state='live']", PAGE, "the live feed")
        .await;
    b.wait_for("#replica-3[data-up='true']", PAGE, "three replicas")
        .await;
    let w = b.js(WIDTHS).await;
    let n = |i: usize| w[i].as_f64().unwrap_or_default() as u64;
    (
        n(0),
        n(1),
        n(2),
        w[3].as_str().unwrap_or_default().to_owned(),
    )
}

/// At 390 px wide the page does not scroll sideways and the panels stack in
/// one column; at 1600 px they stand side by side, again without sideways
/// scroll. The page's transfer size and first render are printed.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn dashboard_fits_from_a_phone_to_a_wide_screen() {
    assert!(kv_node::ui::is_built(), "web-ui/dist is missing");
    let cluster = Cluster::start(3, 2, 2, |_| {}).await;
    let b = Browser::start().await;
    let url = format!("{}/", cluster.url(Cluster::LEADER));
    // The first load of a fresh browser profile (nothing cached) for the figures.
    b.resize(1400, 1000).await;
    b.client.goto(&url).await.unwrap();
    b.wait_for("#replica-3[data-up='true']", PAGE, "three replicas")
        .await;
    let weight = b.js(WEIGHT).await;
    let mut wire = 0;
    let mut decoded = 0;
    for r in weight["resources"].as_array().unwrap() {
        let (t, d) = (r[1].as_u64().unwrap_or(0), r[2].as_u64().unwrap_or(0));
        println!("{:>40}: {t:>8} bytes transferred, {d:>8} decoded", r[0]);
        wire += t;
        decoded += d;
    }
    println!(
        "page: {wire} bytes transferred ({decoded} decoded); ms after navigation start: \
         first contentful paint {:?}, dashboard rendered {:?}, load {:?}",
        weight["fcp"].as_f64().map(f64::round),
        weight["rendered"].as_f64().map(f64::round),
        weight["load"].as_f64().map(f64::round)
    );
    assert!(
        wire < decoded / 2,
        "the page travels compressed: {wire} of {decoded} bytes"
    );

    let (inner, client, scroll, worst) = widths_at(&b, &url, 390, 844).await;
    b.screenshot("layout-390").await;
    assert!(inner <= 400, "the window is {inner} px wide, not a phone's");
    assert!(
        scroll <= client,
        "at {inner} px the page scrolls sideways: {scroll} > {client} (widest: {worst})"
    );
    let stacked = b
        .js("const c = document.querySelectorAll('main.grid > .col'); \
             return c[1].getBoundingClientRect().top >= c[0].getBoundingClientRect().bottom;")
        .await;
    assert_eq!(stacked, true, "the panels stack at 390 px");

    let (inner, client, scroll, worst) = widths_at(&b, &url, 1600, 1000).await;
    b.screenshot("layout-1600").await;
    assert!(
        scroll <= client,
        "at {inner} px the page scrolls sideways: {scroll} > {client} (widest: {worst})"
    );
    let side_by_side = b
        .js("const c = document.querySelectorAll('main.grid > .col'); \
             return c[1].getBoundingClientRect().left >= c[0].getBoundingClientRect().right;")
        .await;
    assert_eq!(side_by_side, true, "two columns at 1600 px");

    b.close().await;
    cluster.stop().await;
}
