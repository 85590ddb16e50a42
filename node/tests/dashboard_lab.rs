//! The dashboard as a replication lab, in a real headless Chromium against
//! real in-process clusters: coordinated reads with every replica's answer
//! and the read repair, the quorum picture and the staleness curve; the time
//! controls (pause, slow motion, the history slider) freezing and replaying
//! boxes, dots and timeline together; a page's history that starts with the
//! page (a 503 shown failed, no lag peak from before). Every wait is bounded
//! and waits on the page. Screenshots land in `target/tmp/screenshots/`.

mod common;
mod webdriver;

use common::Cluster;
use std::time::Duration;
use webdriver::Browser;

/// Bound of every wait on the page.
const PAGE: Duration = Duration::from_secs(20);
/// The admin token the clusters are started with.
const TOKEN: &str = "dashboard-lab-token";

/// Runs `script` (a function body) in the page and returns its value.
async fn js(b: &Browser, script: &str) -> serde_json::Value {
    b.client.execute(script, vec![]).await.unwrap()
}

/// Waits (bounded) until `script` returns `true` in the page.
async fn wait_js(b: &Browser, script: &str, limit: Duration, what: &str) {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if js(b, script).await == serde_json::Value::Bool(true) {
            return;
        }
        if tokio::time::Instant::now() >= deadline {
            let shot = b.screenshot("failed-wait-js").await;
            panic!(
                "timed out after {limit:?} waiting for {what} (`{script}`); screenshot: {}",
                shot.display()
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Everything a frozen picture shows: the drawn instant, each dot, each
/// box's position, the timeline's rows.
const PICTURE: &str = r#"
    const attr = (sel, names) => [...document.querySelectorAll(sel)]
        .map(e => names.map(n => e.getAttribute(n)).join('|'));
    return JSON.stringify({
        at: document.querySelector('#time-controls').getAttribute('data-display-ms'),
        dots: attr('#topology .dot', ['cx', 'cy', 'data-kind', 'data-to']),
        boxes: attr('#topology g.replica', ['id', 'data-seq', 'data-up']),
        rows: attr('table.writes tbody tr', ['data-key', 'data-acked', 'data-outcome']),
    });
"#;

/// Moves the time slider to cluster time `at_ms`, as a user dragging it.
async fn seek(b: &Browser, at_ms: u64) {
    let script = format!(
        "const s = document.querySelector('#time-slider'); s.value = '{at_ms}';
         s.dispatchEvent(new Event('input', {{bubbles: true}})); return true;"
    );
    js(b, &script).await;
}

/// Events the page has received so far.
async fn received(b: &Browser) -> u64 {
    let v = js(
        b,
        "return document.querySelector('#time-controls').getAttribute('data-events');",
    )
    .await;
    v.as_str().unwrap().parse().unwrap()
}

/// Leaderless, N=3, W=2, R=3, anti-entropy out of the way: node 3 is cut
/// from node 1 while node 1 coordinates a write, so it misses it (node 1
/// holds a hint for it). A get through the page at node 2 asks all three:
/// the page lists three answers — node 3's "no copy" — the winner, and the
/// read repair to node 3, which then holds the write; the quorum picture
/// shows the write's W set, the read's R set and their overlap. After the
/// heal the hint hand-off shows in the event log.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_leaderless_read_shows_every_answer_and_repairs_the_replica_that_was_behind() {
    use kv_node::config::ModeArg;
    use serde_json::json;
    assert!(kv_node::ui::is_built(), "web-ui/dist is missing");
    let cluster = Cluster::start(3, 2, 3, |c| {
        c.mode = ModeArg::Leaderless;
        c.role = None;
        c.anti_entropy_ms = 600_000;
        c.admin_token = Some(TOKEN.into());
    })
    .await;
    let b = Browser::start().await;
    b.resize(1400, 1500).await;
    b.client
        .goto(&format!("{}/", cluster.url(2)))
        .await
        .unwrap();
    b.wait_for("#feed-status[data-state='live']", PAGE, "the live feed")
        .await;
    b.wait_for("#replica-3[data-up='true']", PAGE, "three peers")
        .await;

    let cut = cluster
        .fault(1, json!({"kind": "cut", "peers": [3], "direction": "both"}))
        .await;
    assert_eq!(cut.status(), 200);
    let w = cluster.set(1, "lab", "fresh").await;
    assert_eq!(w.status(), 201, "W=2: nodes 1 and 2 hold it");
    let version = w.json::<kv_shared::SetResponse>().await.unwrap().version;
    assert!(cluster.node(3).state.store.get("lab").is_none());
    // Node 1's write, relayed to node 2's page, names its coordinator; the
    // hint node 1 holds for node 3 shows on node 3's box.
    b.wait_for(
        "tr[data-key='lab'][data-coordinator='1'][data-outcome='open']",
        PAGE,
        "node 1's write on node 2's timeline",
    )
    .await;
    b.wait_for(
        "#replica-3[data-hints='1']",
        PAGE,
        "the hint held for node 3",
    )
    .await;
    wait_js(
        &b,
        "return document.querySelector(\"tr[data-key='lab'] .outcome\").textContent
            .includes('node 3 unreachable (hint kept)');",
        PAGE,
        "the send to node 3 given up, a hint kept",
    )
    .await;
    let shown = b.text("tr[data-key='lab'] .version").await;
    assert!(
        shown.contains(':') && !shown.contains('…') && !shown.contains(&version.to_string()),
        "a leaderless version reads as a time, not 18 digits: {shown}"
    );

    b.select("#op-kind", "get").await;
    b.select("#op-node", "2").await;
    b.fill("#op-key", "lab").await;
    b.click("#op-send").await;
    b.wait_for("#op-result[data-status='200']", PAGE, "the 200 of the get")
        .await;
    let read = b
        .wait_for(
            "#reads li[data-key='lab'][data-coordinator='2'][data-answers='3']",
            PAGE,
            "the read with three answers",
        )
        .await;
    assert_eq!(
        read.attr("data-repaired").await.unwrap().as_deref(),
        Some("3")
    );
    b.wait_for(
        "#reads li[data-key='lab'] .answer[data-node='3'][data-answer='missing']",
        PAGE,
        "node 3's answer: no copy",
    )
    .await;
    for id in [1, 2] {
        let css =
            format!("#reads li[data-key='lab'] .answer[data-node='{id}'][data-answer='version']");
        b.wait_for(&css, PAGE, "a replica with the version").await;
    }
    assert_eq!(
        cluster.node(3).state.store.get("lab").unwrap().version,
        version
    );
    // The quorum picture: W = {1, 2} (coordinator + node 2's ack), R = {1, 2, 3}.
    b.wait_for(
        "#quorum-picture[data-key='lab'][data-overlap='2']",
        PAGE,
        "the overlap of W and R",
    )
    .await;
    b.wait_for(
        "#quorum-picture .chip[data-node='3'][data-in-w='false'][data-in-r='true']",
        PAGE,
        "node 3 read, not written",
    )
    .await;
    b.wait_for("#staleness[data-reads='1']", PAGE, "the staleness curve")
        .await;
    b.screenshot("dashboard-11-read-repair").await;

    let heal = cluster.fault(1, json!({"kind": "heal"})).await;
    assert_eq!(heal.status(), 200);
    b.wait_for(
        "#node-events li[data-kind='hints-delivered'][data-node='1']",
        PAGE,
        "the hint handed to node 3",
    )
    .await;
    b.wait_for(
        "#node-events li[data-kind='fault']",
        PAGE,
        "the fault in the log",
    )
    .await;
    b.screenshot("dashboard-12-event-log").await;
    b.close().await;
    cluster.stop().await;
}

/// With the assignment's delays a W=1 write's acks trail for hundreds of ms.
/// Paused at an instant that write is in flight, the dots, the boxes and the
/// timeline stay frozen together while events keep arriving (a second write,
/// new snapshots); resume continues and shows the second write; ⅒× falls
/// behind live. The slider then goes back to the instant the second
/// write was on its way: its messages are in flight again and the
/// followers' boxes do not hold it yet.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pause_freezes_the_picture_and_the_slider_replays_a_past_write() {
    use kv_node::config::DelayProfileArg;
    assert!(kv_node::ui::is_built(), "web-ui/dist is missing");
    let cluster = Cluster::start(3, 1, 3, |c| c.delay_profile = DelayProfileArg::Assignment).await;
    let b = Browser::start().await;
    b.resize(1400, 1400).await;
    b.client
        .goto(&format!("{}/", cluster.url(Cluster::LEADER)))
        .await
        .unwrap();
    b.wait_for("#time-controls[data-mode='live']", PAGE, "live time")
        .await;
    b.wait_for("#replica-3[data-up='true']", PAGE, "three replicas")
        .await;

    // A write whose acks trail; pause at an instant it is in flight (with
    // the slider, so that the test does not race a 400 ms flight).
    assert_eq!(cluster.set(1, "first", "a").await.status(), 201);
    let first = b
        .wait_for(
            "tr[data-key='first'][data-acked='2']",
            PAGE,
            "the first write",
        )
        .await;
    let started: u64 = first
        .attr("data-started-ms")
        .await
        .unwrap()
        .unwrap()
        .parse()
        .unwrap();
    seek(&b, started + 60).await;
    b.wait_for("#time-controls[data-mode='paused']", PAGE, "paused")
        .await;
    b.wait_for(
        "#topology .dot[data-kind='write']",
        PAGE,
        "the write in flight",
    )
    .await;
    let frozen = js(&b, PICTURE).await;
    let before = received(&b).await;
    let r = cluster.set(1, "second", "b").await;
    assert_eq!(r.status(), 201);
    let seq = cluster.status(1).await.applied_seq;
    // The page keeps receiving (the second write's trace, snapshots)…
    let script = format!(
        "return +document.querySelector('#time-controls').getAttribute('data-events') >= {};",
        before + 8
    );
    wait_js(&b, &script, PAGE, "events arriving while paused").await;
    // …and draws none of it.
    assert_eq!(
        js(&b, PICTURE).await,
        frozen,
        "dots, boxes and timeline frozen"
    );
    assert_eq!(b.count("tr[data-key='second']").await, 0);
    b.screenshot("dashboard-13-paused").await;

    b.click("#time-play").await;
    b.wait_for(
        "tr[data-key='second']",
        PAGE,
        "the second write after resume",
    )
    .await;
    for id in 1..=3 {
        let css = format!("#replica-{id}[data-seq='{seq}']");
        b.wait_for(&css, PAGE, "the boxes moving on").await;
    }
    // Slow motion from live: the page falls behind real time, then back to live.
    b.click("#speed-10").await;
    b.wait_for(
        "#time-controls[data-mode='playing']",
        PAGE,
        "replaying at 1/10",
    )
    .await;
    wait_js(
        &b,
        "return document.querySelector('#time-behind').textContent.includes('behind live · 1/10×');",
        PAGE,
        "the page behind live",
    )
    .await;
    b.click("#speed-1").await;
    b.click("#time-live").await;
    b.wait_for("#time-controls[data-mode='live']", PAGE, "live again")
        .await;
    b.wait_for(
        "tr[data-key='second'][data-acked='2']",
        PAGE,
        "both acks of the second write",
    )
    .await;

    // Back to the instant the second write had just left the leader.
    let started: u64 = b
        .wait_for("tr[data-key='second']", PAGE, "the second write's row")
        .await
        .attr("data-started-ms")
        .await
        .unwrap()
        .unwrap()
        .parse()
        .unwrap();
    seek(&b, started + 60).await;
    b.wait_for(
        "#time-controls[data-mode='paused']",
        PAGE,
        "paused by the slider",
    )
    .await;
    b.wait_for(
        "#topology .dot[data-kind='write']",
        PAGE,
        "the second write's messages in flight again",
    )
    .await;
    b.wait_for(
        "tr[data-key='second'][data-acked='0']",
        PAGE,
        "no ack yet at that instant",
    )
    .await;
    for id in [2, 3] {
        let seq_then: u64 = b
            .wait_for(&format!("#replica-{id}"), PAGE, "a follower's box")
            .await
            .attr("data-seq")
            .await
            .unwrap()
            .unwrap()
            .parse()
            .unwrap();
        assert!(
            seq_then < seq,
            "node {id} did not hold the second write yet"
        );
    }
    b.screenshot("dashboard-14-slider").await;
    b.close().await;
    cluster.stop().await;
}

/// A write that missed W (node 3 cut off, W=3) answers 503 while a page
/// watches; a page opened afterwards shows it failed with 2 of 3, not
/// "waiting for W acks", and the event log names the 503.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_page_opened_after_a_503_shows_the_write_failed() {
    assert!(kv_node::ui::is_built(), "web-ui/dist is missing");
    let cluster = Cluster::start(3, 3, 1, |_| {}).await;
    let b = Browser::start().await;
    b.resize(1400, 1200).await;
    let url = format!("{}/", cluster.url(Cluster::LEADER));
    b.client.goto(&url).await.unwrap();
    b.wait_for("#feed-status[data-state='live']", PAGE, "the live feed")
        .await;
    cluster.isolate(3);
    let r = cluster.set(1, "doomed", "x").await;
    assert_eq!(r.status(), 503);
    let body: kv_shared::ErrorBody = r.json().await.unwrap();
    assert_eq!((body.acked, body.required), (Some(2), Some(3)));
    b.wait_for(
        "tr[data-key='doomed'][data-outcome='failed']",
        PAGE,
        "the 503 on the page that watched",
    )
    .await;

    b.client.goto("about:blank").await.unwrap();
    b.client.goto(&url).await.unwrap();
    let row = b
        .wait_for(
            "tr[data-key='doomed'][data-outcome='failed']",
            PAGE,
            "the 503 on a page opened after it",
        )
        .await;
    let text = row
        .find(fantoccini::Locator::Css(".outcome"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(text.contains("2 of 3"), "{text}");
    assert!(!text.contains("waiting"), "{text}");
    b.screenshot("dashboard-15-failed-write").await;
    cluster.heal();
    b.close().await;
    cluster.stop().await;
}

/// Under W=1 and the delays, writes leave the followers behind while a page
/// watches; that page closes, the followers catch up, and nothing moves.
/// A page opened then on the quiet cluster draws no lag peak and no down
/// stretch: the node's last snapshot from before is not its history.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_page_opened_on_a_quiet_cluster_shows_no_lag_peak() {
    use kv_node::config::DelayProfileArg;
    assert!(kv_node::ui::is_built(), "web-ui/dist is missing");
    let cluster = Cluster::start(3, 1, 3, |c| c.delay_profile = DelayProfileArg::Assignment).await;
    let b = Browser::start().await;
    b.resize(1400, 1200).await;
    let url = format!("{}/", cluster.url(Cluster::LEADER));
    b.client.goto(&url).await.unwrap();
    b.wait_for("#feed-status[data-state='live']", PAGE, "the live feed")
        .await;
    let mut behind = false;
    for i in 0..200 {
        assert_eq!(
            cluster
                .set(1, &format!("busy-{}", i % 5), "x")
                .await
                .status(),
            201
        );
        if b.appears(".lag-row[data-behind='true']", Duration::from_millis(100))
            .await
        {
            behind = true;
            break;
        }
    }
    assert!(behind, "the first page saw a follower behind");
    b.client.goto("about:blank").await.unwrap();
    cluster.wait_converged().await;

    b.client.goto(&url).await.unwrap();
    let samples = "return [...document.querySelectorAll('.lag-row')].length === 2 && \
        [...document.querySelectorAll('.lag-row')].every(r => +r.getAttribute('data-samples') >= 5);";
    wait_js(&b, samples, PAGE, "five samples per follower").await;
    let peaks = js(
        &b,
        "return [...document.querySelectorAll('.lag-row')].map(r => \
            [r.id, r.getAttribute('data-peak-entries'), r.getAttribute('data-peak-ms'), \
             r.getAttribute('data-down-samples')].join(' '));",
    )
    .await;
    for row in peaks.as_array().unwrap() {
        let row = row.as_str().unwrap();
        assert!(
            row.ends_with(" 0 0 0"),
            "no lag peak or outage drawn: {row}"
        );
    }
    assert_eq!(b.count("#node-events li[data-kind='down']").await, 0);
    b.screenshot("dashboard-16-quiet-page").await;
    b.close().await;
    cluster.stop().await;
}

/// Leaderless, hints off (`--max-hints-per-peer 0`), anti-entropy every
/// 300 ms: node 3 is cut off during a write and misses it; once healed, an
/// anti-entropy round repairs the key. The event log names the round; the
/// slider at that instant draws the exchange between the two replicas; node
/// 3 holds the write.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_anti_entropy_round_that_repairs_a_key_is_logged_and_drawn() {
    use kv_node::config::ModeArg;
    assert!(kv_node::ui::is_built(), "web-ui/dist is missing");
    let cluster = Cluster::start(3, 2, 1, |c| {
        c.mode = ModeArg::Leaderless;
        c.role = None;
        c.anti_entropy_ms = 300;
        c.max_hints_per_peer = 0;
    })
    .await;
    let b = Browser::start().await;
    b.resize(1400, 1300).await;
    b.client
        .goto(&format!("{}/", cluster.url(1)))
        .await
        .unwrap();
    b.wait_for("#feed-status[data-state='live']", PAGE, "the live feed")
        .await;
    cluster.isolate(3);
    assert_eq!(cluster.set(1, "entropy", "v").await.status(), 201);
    assert!(cluster.node(3).state.store.get("entropy").is_none());
    // Heal only once node 1's send to node 3 has failed: a send still
    // queued at the heal would deliver the write itself, leaving nothing
    // for anti-entropy to repair.
    wait_js(
        &b,
        "return [...document.querySelectorAll('table.writes tr')]\
            .some(tr => tr.textContent.includes('entropy') && tr.textContent.includes('node 3 unreachable'));",
        PAGE,
        "node 1's send to node 3 failed",
    )
    .await;
    cluster.heal();
    // Rounds that found nothing to repair (between nodes 1 and 2, or one
    // cut short by the partition) are logged too: wait for the one that
    // repaired the key.
    let repaired = "[...document.querySelectorAll(\"#node-events li[data-kind='anti-entropy']\")]\
        .find(li => li.textContent.includes('1 key repaired'))";
    wait_js(
        &b,
        &format!("return {repaired} !== undefined;"),
        PAGE,
        "an anti-entropy round that repaired the key",
    )
    .await;
    let at: u64 = js(&b, &format!("return {repaired}.getAttribute('data-at');"))
        .await
        .as_str()
        .expect("the round's instant")
        .parse()
        .unwrap();
    common::wait_until("node 3 holds the write", PAGE, || async {
        cluster.node(3).state.store.get("entropy").is_some()
    })
    .await;
    seek(&b, at + 100).await;
    b.wait_for(
        "#topology line.exchange[data-kind='anti-entropy']",
        PAGE,
        "the round drawn between the two replicas",
    )
    .await;
    b.screenshot("dashboard-17-anti-entropy").await;
    b.close().await;
    cluster.stop().await;
}
