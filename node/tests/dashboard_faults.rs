//! The dashboard's fault panel in a real headless Chromium: each kind of
//! fault, injected from the page into a chosen node, is in force on that
//! node (its `/status` or `/admin/faults` lists it, and its effect shows),
//! is marked on the lag chart, and "heal all" ends every fault on every
//! node. Every wait is bounded and waits on a condition (the page's DOM or
//! the node's answer), never on a fixed sleep.

mod common;
mod webdriver;

use common::{wait_until, Cluster, TestNode};
use kv_shared::admin::{ActiveFault, Direction, FaultsStatus};
use kv_shared::NodeId;
use std::time::Duration;
use webdriver::Browser;

/// Bound of every wait.
const PAGE: Duration = Duration::from_secs(20);
/// The admin token every node is started with.
const TOKEN: &str = "dashboard-faults-token";

/// The faults in force on the node at `url`, from `GET /admin/faults`
/// (what `/status` lists as `faults`; it answers while the node is paused).
async fn faults_at(url: &str) -> Vec<ActiveFault> {
    let client = reqwest::Client::new();
    let resp = client
        .get(format!("{url}/admin/faults"))
        .bearer_auth(TOKEN)
        .timeout(Duration::from_secs(5))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    resp.json::<FaultsStatus>().await.unwrap().active
}

/// Ticks (or unticks) the checkbox matching `css`, as a user would: a
/// click when it is not as wanted.
async fn tick(b: &Browser, css: &str, want: bool) {
    let e = b.wait_for(css, PAGE, "a checkbox").await;
    let checked = e.prop("checked").await.unwrap().as_deref() == Some("true");
    if checked != want {
        e.click().await.unwrap();
    }
}

/// Picks node `node` and fault `kind` in the panel.
async fn choose(b: &Browser, node: NodeId, kind: &str) {
    b.select("#fault-node", &node.to_string()).await;
    b.select("#fault-kind", kind).await;
}

/// Clicks `button` and waits until the panel shows the answer as `want`
/// (`data-ok`); returns the answer's text.
async fn send(b: &Browser, button: &str, want: bool) -> String {
    b.click(button).await;
    let css = format!("#fault-result[data-ok='{want}']");
    b.wait_for(&css, PAGE, "the nodes' answer")
        .await
        .text()
        .await
        .unwrap()
}

/// Whether a request to the node at `url` goes unanswered for 400 ms.
async fn holds_requests(url: &str) -> bool {
    reqwest::Client::new()
        .get(format!("{url}/health"))
        .timeout(Duration::from_millis(400))
        .send()
        .await
        .is_err()
}

/// On a leader-follower cluster the page (served by node 1) refuses to send
/// without the token (the node's 401 shown); with it, a pause holds node 2's
/// requests until its heal; a one-way cut of node 3 from node 1 cuts only
/// what node 3 sends; a delay and a message loss of node 2 are listed with
/// their values; each is drawn on the lag chart and listed in the panel;
/// "heal all" clears every node; the token, typed once, is kept for the
/// tab's session and serves the controls too;
/// a clock skew is not offered in this mode.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn each_fault_button_takes_effect_and_heal_all_heals_every_node() {
    assert!(kv_node::ui::is_built(), "web-ui/dist is missing");
    let cluster = Cluster::start(3, 2, 2, |c| c.admin_token = Some(TOKEN.into())).await;
    let b = Browser::start().await;
    b.resize(1400, 1600).await;
    let page = format!("{}/", cluster.url(Cluster::LEADER));
    b.client.goto(&page).await.unwrap();
    b.wait_for("#feed-status[data-state='live']", PAGE, "the live feed")
        .await;
    b.wait_for("#replica-3[data-up='true']", PAGE, "three replicas")
        .await;
    assert_eq!(b.count("#fault-kind option[value='skew']").await, 0);

    // Without the token: the node's refusal, and nothing in force.
    choose(&b, 2, "cut").await;
    tick(&b, "#fault-peer-1", true).await;
    let refused = send(&b, "#fault-inject", false).await;
    assert!(refused.contains("401"), "{refused}");
    assert!(faults_at(&cluster.url(2)).await.is_empty());
    b.fill("#fault-token", TOKEN).await;

    // Pause: node 2 holds every request until healed.
    choose(&b, 2, "pause").await;
    b.fill("#fault-ms", "60000").await;
    send(&b, "#fault-inject", true).await;
    let active = faults_at(&cluster.url(2)).await;
    assert_eq!(active.len(), 1, "{active:?}");
    assert_eq!(active[0].kind, "pause");
    assert!(
        holds_requests(&cluster.url(2)).await,
        "a paused node answers nothing"
    );
    b.wait_for(
        "#lag-2 .fault-mark.own",
        PAGE,
        "the pause on node 2's chart",
    )
    .await;
    b.wait_for(
        "#time-faults .mark[data-node='2']:not(.heal)",
        PAGE,
        "the pause on the history slider",
    )
    .await;
    send(&b, "#fault-heal", true).await;
    assert!(faults_at(&cluster.url(2)).await.is_empty());
    assert!(!holds_requests(&cluster.url(2)).await, "healed: it answers");
    b.screenshot("faults-1-pause-healed").await;

    // A one-way partition: node 3 loses what it sends to node 1, hears it still.
    choose(&b, 3, "cut").await;
    tick(&b, "#fault-peer-1", true).await;
    tick(&b, "#fault-peer-2", false).await;
    b.select("#fault-direction", "outgoing").await;
    send(&b, "#fault-inject", true).await;
    let status = cluster.status(3).await.faults.unwrap();
    assert_eq!(status.active.len(), 1, "{:?}", status.active);
    assert_eq!(status.active[0].kind, "cut");
    assert_eq!(status.active[0].peers, [1]);
    assert_eq!(status.active[0].direction, Some(Direction::Outgoing));
    let faults = cluster.node(3).state.cluster.faults();
    assert!(faults.cuts_to(1) && !faults.cuts_from(1), "one way only");
    b.wait_for("#fault-active-3", PAGE, "node 3's cut listed in the panel")
        .await;
    b.wait_for(
        "#replica-3[data-faults='1']",
        PAGE,
        "node 3's cut on its box",
    )
    .await;
    b.wait_for("#lag-3 .fault-mark.own", PAGE, "the cut on node 3's chart")
        .await;

    // A delay and a loss on node 2's messages with chosen peers.
    choose(&b, 2, "delay").await;
    b.fill("#fault-ms", "250").await;
    tick(&b, "#fault-peer-1", false).await;
    tick(&b, "#fault-peer-3", true).await;
    b.select("#fault-direction", "both").await;
    send(&b, "#fault-inject", true).await;
    choose(&b, 2, "drop").await;
    b.fill("#fault-percent", "40").await;
    tick(&b, "#fault-peer-1", true).await;
    tick(&b, "#fault-peer-3", false).await;
    b.select("#fault-direction", "incoming").await;
    send(&b, "#fault-inject", true).await;
    let active = cluster.status(2).await.faults.unwrap().active;
    let delays: Vec<_> = active.iter().filter(|f| f.kind == "delay").collect();
    assert_eq!(delays.len(), 2, "both ways: {active:?}");
    assert!(delays.iter().all(|f| f.peers == [3] && f.ms == Some(250)));
    let drops: Vec<_> = active.iter().filter(|f| f.kind == "drop").collect();
    assert_eq!(drops.len(), 1, "{active:?}");
    assert_eq!(drops[0].peers, [1]);
    assert_eq!(drops[0].percent, Some(40));
    assert_eq!(drops[0].direction, Some(Direction::Incoming));
    b.wait_for(
        "#fault-active-2[data-count='3']",
        PAGE,
        "node 2's faults listed",
    )
    .await;
    b.screenshot("faults-2-in-force").await;

    // Heal all: every node answers, and none has a fault left.
    let healed = send(&b, "#fault-heal-all", true).await;
    b.wait_for(
        "#fault-result[data-done='1,2,3']",
        PAGE,
        "every node healed",
    )
    .await;
    for id in 1..=3 {
        let s = cluster.status(id).await.faults.unwrap();
        assert!(
            s.active.is_empty(),
            "node {id}: {:?} after `{healed}`",
            s.active
        );
    }
    b.wait_for(
        "#fault-active[data-count='0']",
        PAGE,
        "the panel shows none",
    )
    .await;
    b.wait_for(
        "#replica-2[data-faults='0']",
        PAGE,
        "node 2's box without faults",
    )
    .await;
    b.wait_for("#lag-2 .fault-mark.own.heal", PAGE, "the heal on the chart")
        .await;
    b.wait_for(
        "#time-faults .mark.heal[data-node='2']",
        PAGE,
        "the heal on the history slider",
    )
    .await;
    b.screenshot("faults-3-healed").await;

    // The token was asked once: a reload keeps it for the tab.
    b.client.goto(&page).await.unwrap();
    let field = b.wait_for("#fault-token", PAGE, "the token field").await;
    assert_eq!(field.prop("value").await.unwrap().as_deref(), Some(TOKEN));
    let controls = b
        .wait_for("#cfg-token", PAGE, "the controls' token field")
        .await;
    assert_eq!(
        controls.prop("value").await.unwrap().as_deref(),
        Some(TOKEN),
        "one token for the page: the controls have it too"
    );
    b.close().await;
    cluster.stop().await;
}

/// In leaderless mode the panel offers a clock skew: node 2's clock runs
/// 5 s ahead (its `/status` says so and its clock reads it), and "heal all"
/// puts it back.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_leaderless_clock_skew_from_the_page_and_its_heal() {
    use kv_node::config::ModeArg;
    use kv_node::Config;
    use tokio::net::TcpListener;

    assert!(kv_node::ui::is_built(), "web-ui/dist is missing");
    let mut listeners = Vec::new();
    for _ in 0..3 {
        listeners.push(TcpListener::bind("127.0.0.1:0").await.unwrap());
    }
    let ports: Vec<u16> = listeners
        .iter()
        .map(|l| l.local_addr().unwrap().port())
        .collect();
    let peers: Vec<String> = ports
        .iter()
        .enumerate()
        .map(|(i, p)| format!("{}=http://127.0.0.1:{p}", i + 1))
        .collect();
    let nodes: Vec<TestNode> = listeners
        .into_iter()
        .enumerate()
        .map(|(i, l)| {
            let mut c = Config::for_tests(i as u32 + 1);
            c.port = ports[i];
            c.mode = ModeArg::Leaderless;
            c.peers = peers.join(",");
            c.admin_token = Some(TOKEN.into());
            TestNode::start_on(l, c)
        })
        .collect();

    let b = Browser::start().await;
    b.resize(1400, 1400).await;
    b.client.goto(&format!("{}/", nodes[0].url)).await.unwrap();
    for id in 1..=3 {
        let css = format!("#replica-{id}[data-up='true']");
        b.wait_for(&css, PAGE, "a peer of the ring").await;
    }
    b.fill("#fault-token", TOKEN).await;
    choose(&b, 2, "skew").await;
    b.fill("#fault-ms", "5000").await;
    send(&b, "#fault-inject", true).await;
    let active = faults_at(&nodes[1].url).await;
    assert_eq!(active.len(), 1, "{active:?}");
    assert_eq!(
        (active[0].kind.as_str(), active[0].ms),
        ("skew", Some(5000))
    );
    let skewed = nodes[1].state.cluster.faults().wall_ms();
    assert!(
        skewed >= kv_node::events::wall_ms() + 4_900,
        "its clock runs ahead"
    );
    b.wait_for("#fault-active-2", PAGE, "the skew listed in the panel")
        .await;
    b.screenshot("faults-4-skew").await;

    send(&b, "#fault-heal-all", true).await;
    for n in &nodes {
        assert!(faults_at(&n.url).await.is_empty(), "{}", n.url);
    }
    b.close().await;
    for n in nodes {
        n.stop().await;
    }
}

/// A restart from the page starts node 2 again, empty, in the same process
/// (its fault counter is back at 0, the page shows it up); a crash ends
/// node 3's process (exit status 137, as `/admin/faults` promises); the
/// page shows it down and marks the crash; "heal all" then heals the nodes
/// that answer and names the one that cannot. Real `kv-node` processes: a
/// crash ends the whole process.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_restart_and_a_crash_from_the_page() {
    use kv_loadtester::cluster::{ClusterKind, ClusterSpec, LocalCluster};
    assert!(kv_node::ui::is_built(), "web-ui/dist is missing");
    let spec = ClusterSpec {
        kind: ClusterKind::LeaderFollower { w: 2, r: 2 },
        n: 3,
        delay_profile: false,
        node_bin: std::path::PathBuf::from(env!("CARGO_BIN_EXE_kv-node")),
        log_dir: None,
        extra_args: Vec::new(),
        env: vec![("ADMIN_TOKEN".into(), TOKEN.into())],
    };
    let mut cluster = LocalCluster::start(&spec).await.expect("cluster starts");
    let b = Browser::start().await;
    b.resize(1400, 1600).await;
    b.client
        .goto(&format!("{}/", cluster.urls[0]))
        .await
        .unwrap();
    b.wait_for("#replica-3[data-up='true']", PAGE, "three replicas")
        .await;
    b.fill("#fault-token", TOKEN).await;
    let client = reqwest::Client::new();

    let pid = cluster.pid(2).expect("node 2 runs");
    choose(&b, 2, "restart").await;
    send(&b, "#fault-inject", true).await;
    let status_of_2 = format!("{}/status", cluster.urls[1]);
    wait_until("node 2 answers as a fresh run", PAGE, || async {
        let Ok(resp) = client.get(&status_of_2).send().await else {
            return false;
        };
        let s: kv_shared::cluster::StatusResponse = resp.json().await.unwrap();
        s.faults.is_some_and(|f| f.injected == 0)
    })
    .await;
    assert_eq!(cluster.pid(2), Some(pid), "the same process, started again");
    b.wait_for(
        "#lag-2 .fault-mark.own",
        PAGE,
        "the restart on node 2's chart",
    )
    .await;
    b.wait_for("#replica-2[data-up='true']", PAGE, "node 2 up again")
        .await;

    choose(&b, 3, "crash").await;
    send(&b, "#fault-inject", true).await;
    let status = cluster
        .wait_exit(3, Duration::from_secs(10))
        .await
        .expect("node 3 exits");
    assert_eq!(status.code(), Some(137));
    b.wait_for("#replica-3[data-up='false']", PAGE, "node 3 down")
        .await;
    b.wait_for(
        "#lag-3 .fault-mark.own",
        PAGE,
        "the crash on node 3's chart",
    )
    .await;
    b.click("#fault-heal-all").await;
    b.wait_for(
        "#fault-result[data-done='1,2'][data-failed='3']",
        PAGE,
        "the live nodes healed, the crashed one named",
    )
    .await;
    b.screenshot("faults-5-crashed").await;
    wait_until("node 1 still serves writes", PAGE, || async {
        client
            .post(format!("{}/set", cluster.urls[0]))
            .json(&serde_json::json!({"key": "after", "value": "crash"}))
            .send()
            .await
            .is_ok_and(|r| r.status() == 201)
    })
    .await;
    b.close().await;
    cluster.stop().await;
}
