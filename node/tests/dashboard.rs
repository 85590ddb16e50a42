//! The dashboard in a real headless Chromium against a real 5-node
//! leader-follower cluster: topology, operations, failures and lag, as a user
//! sees them. Every wait is bounded and waits on the page (a DOM condition),
//! never on a fixed sleep. Screenshots land in `target/tmp/screenshots/`.

mod common;
mod webdriver;

use common::Cluster;
use kv_shared::events::ClusterEvent;
use std::time::Duration;
use webdriver::Browser;

/// Bound of every wait on the page.
const PAGE: Duration = Duration::from_secs(20);
/// The admin token the cluster is started with.
const TOKEN: &str = "dashboard-test-token";

/// The page at the leader shows 5 replicas with their roles; a set from the
/// form answers 201 with its version; a get at a follower shows the value;
/// W/R and the delay profile change from the controls; under the delay
/// profile with W=1 a follower is shown behind and then caught up; a killed
/// follower is shown down while the page keeps working; when the serving
/// node stops, the page says it lost the feed.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn dashboard_follows_a_five_node_cluster() {
    assert!(
        kv_node::ui::is_built(),
        "web-ui/dist is missing: build it with `trunk build --release` (scripts/test.sh does)"
    );
    let mut cluster = Cluster::start(5, 3, 3, |c| c.admin_token = Some(TOKEN.into())).await;
    let b = Browser::start().await;
    b.resize(1400, 1250).await;
    b.client
        .goto(&format!("{}/", cluster.url(Cluster::LEADER)))
        .await
        .unwrap();

    // Topology: five replicas, node 1 leads, the others follow.
    b.wait_for("#feed-status[data-state='live']", PAGE, "the live feed")
        .await;
    b.wait_for("#replica-5[data-up='true']", PAGE, "five replicas")
        .await;
    assert_eq!(b.count("#topology g.replica").await, 5);
    assert_eq!(b.count("#topology g.replica[data-role='leader']").await, 1);
    b.wait_for("#replica-1[data-role='leader']", PAGE, "the leader")
        .await;
    for id in cluster.followers() {
        let css = format!("#replica-{id}[data-role='follower'][data-up='true']");
        b.wait_for(&css, PAGE, "a follower").await;
    }
    assert_eq!(b.text("#quorum .big").await, "N5 W3 R3");
    b.screenshot("dashboard-1-topology").await;

    // A set through the form (at the leader, the default node) answers 201.
    b.select("#op-kind", "set").await;
    b.fill("#op-key", "city").await;
    b.fill("#op-value", "Lisbon").await;
    b.click("#op-send").await;
    b.wait_for("#op-result[data-status='201']", PAGE, "the 201 of the set")
        .await;
    assert_eq!(b.text("#op-result-version").await, "1");
    assert_eq!(b.text("#op-result-served-by").await, "node 1");
    // Its log position reaches every replica and the write shows on the timeline.
    let seq = cluster.status(Cluster::LEADER).await.applied_seq;
    for id in 1..=5 {
        let css = format!("#replica-{id}[data-seq='{seq}']");
        b.wait_for(&css, PAGE, "the write applied everywhere").await;
    }
    b.wait_for(
        "tr[data-key='city'][data-version='1']",
        PAGE,
        "the write on the timeline",
    )
    .await;
    b.screenshot("dashboard-2-set").await;

    // A get at a follower shows the value, served by that follower.
    b.select("#op-kind", "get").await;
    b.select("#op-node", "3").await;
    b.click("#op-send").await;
    b.wait_for("#op-result[data-status='200']", PAGE, "the 200 of the get")
        .await;
    assert_eq!(b.text("#op-result-value").await, "Lisbon");
    assert_eq!(b.text("#op-result-version").await, "1");
    assert_eq!(b.text("#op-result-served-by").await, "node 3");
    // The read (R=3, coordinated by node 3, relayed to the leader's page)
    // lists three answers, the leader's among them, all with version 1.
    b.wait_for(
        "#reads li[data-key='city'][data-coordinator='3'][data-answers='3']",
        PAGE,
        "node 3's read with three answers",
    )
    .await;
    b.wait_for(
        "#reads li[data-key='city'] .answer[data-node='1'][data-answer='version']",
        PAGE,
        "the leader's answer",
    )
    .await;
    // An error is shown as the API words it.
    b.fill("#op-key", "nowhere").await;
    b.click("#op-send").await;
    b.wait_for(
        "#op-result[data-status='404']",
        PAGE,
        "the 404 of a missing key",
    )
    .await;
    assert!(b.text("#op-result-error").await.contains("nowhere"));
    b.screenshot("dashboard-3-get-at-follower").await;

    // Controls: the cluster has an admin token, so W/R changes need it too:
    // refused without it, in force with it; then the delay profile.
    b.select("#cfg-w", "1").await;
    b.select("#cfg-r", "5").await;
    b.click("#cfg-apply").await;
    b.wait_for(
        "#cfg-result[data-ok='false']",
        PAGE,
        "the refusal without token",
    )
    .await;
    assert!(
        b.text("#cfg-result").await.contains("401"),
        "{}",
        b.text("#cfg-result").await
    );
    b.fill("#cfg-token", TOKEN).await;
    b.select("#cfg-w", "1").await;
    b.select("#cfg-r", "5").await;
    b.click("#cfg-apply").await;
    b.wait_for("#quorum[data-w='1'][data-r='5']", PAGE, "W1 R5 in force")
        .await;
    b.click("#cfg-delays").await;
    b.wait_for(
        "#delay-profile[data-on='true']",
        PAGE,
        "the delay profile on",
    )
    .await;

    // Under the delay profile, W=1 writes return at once while the followers
    // trail: keep writing until the page shows a follower behind.
    let mut behind = false;
    for i in 0..200 {
        let resp = cluster
            .set(Cluster::LEADER, &format!("burst-{}", i % 7), "x")
            .await;
        assert_eq!(resp.status(), 201);
        if b.appears(".lag-row[data-behind='true']", Duration::from_millis(100))
            .await
        {
            behind = true;
            break;
        }
    }
    assert!(
        behind,
        "a follower was shown behind while W=1 writes went on"
    );
    b.wait_for("#topology .dot", PAGE, "messages in flight")
        .await;
    b.screenshot("dashboard-4-followers-behind").await;
    // Writes stopped: every follower catches up, on the page.
    for id in cluster.followers() {
        let css = format!("#lag-{id}[data-behind='false'][data-up='true']");
        b.wait_for(&css, PAGE, "a follower caught up").await;
    }
    b.screenshot("dashboard-5-caught-up").await;

    // A killed follower is shown down; the page keeps working and says so.
    cluster.kill(4).await;
    b.wait_for("#replica-4[data-up='false']", PAGE, "node 4 down")
        .await;
    b.wait_for("#banner", PAGE, "the outage banner").await;
    assert!(b.text("#banner").await.contains("node 4"));
    b.wait_for(
        "#lag-4[data-up='false']",
        PAGE,
        "node 4 down in the lag chart",
    )
    .await;
    assert_eq!(b.count("#topology g.replica[data-up='true']").await, 4);
    b.select("#op-kind", "set").await;
    b.select("#op-node", "1").await;
    b.fill("#op-key", "after-crash").await;
    b.click("#op-send").await;
    b.wait_for(
        "#op-result[data-status='201']",
        PAGE,
        "a write with a follower down",
    )
    .await;
    b.screenshot("dashboard-6-follower-down").await;

    // The serving node itself stops (its open event stream must not hold the
    // shutdown up): the page says it lost the feed and keeps the last state.
    tokio::time::timeout(Duration::from_secs(10), cluster.kill(Cluster::LEADER))
        .await
        .expect("a node with a dashboard open stops promptly");
    b.wait_for("#feed-status[data-state='stale']", PAGE, "the lost feed")
        .await;
    b.wait_for("#banner.bad", PAGE, "the lost-feed banner")
        .await;
    b.wait_for(
        "#health-status[data-status='unreachable']",
        PAGE,
        "the header's verdict",
    )
    .await;
    b.screenshot("dashboard-7-serving-node-down").await;

    b.close().await;
    cluster.stop().await;
}

/// The leader is cut off under W=1: the page (served by node 2) shows the
/// others campaign, vote and elect a new leader in a newer term; the write
/// the old leader acknowledged alone meanwhile is shown rolled back once it
/// hears from the new leader, and it returns as a follower.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn dashboard_shows_an_election_and_a_rolled_back_write() {
    assert!(kv_node::ui::is_built(), "web-ui/dist is missing");
    let cluster = Cluster::start(5, 1, 5, |c| c.election_timeout_ms = 600).await;
    let b = Browser::start().await;
    b.resize(1400, 1400).await;
    b.client
        .goto(&format!("{}/", cluster.url(2)))
        .await
        .unwrap();
    b.wait_for(
        "#replica-1[data-role='leader'][data-term='1']",
        PAGE,
        "node 1 leads term 1",
    )
    .await;
    b.wait_for("#feed-status[data-state='live']", PAGE, "the live feed")
        .await;

    cluster.isolate(Cluster::LEADER);
    let r = cluster.set(Cluster::LEADER, "lost", "alone").await;
    assert_eq!(
        r.status(),
        201,
        "W=1: the isolated leader still answers 201"
    );
    b.wait_for("#node-events li[data-kind='campaign']", PAGE, "a candidate")
        .await;
    b.wait_for("#node-events li[data-kind='voted']", PAGE, "a vote")
        .await;
    let elected = b
        .wait_for("#node-events li[data-kind='elected']", PAGE, "a new leader")
        .await;
    let new_leader: u32 = elected
        .attr("data-node")
        .await
        .unwrap()
        .unwrap()
        .parse()
        .unwrap();
    assert_ne!(new_leader, 1);
    let css = format!("#replica-{new_leader}[data-role='leader']");
    b.wait_for(&css, PAGE, "the new leader in the topology")
        .await;
    b.screenshot("dashboard-9-new-leader").await;

    cluster.heal();
    b.wait_for(
        "#node-events li[data-kind='rolled-back'][data-node='1']",
        PAGE,
        "the old leader's rollback",
    )
    .await;
    b.wait_for(
        "tr[data-key='lost'][data-rolled-back='true']",
        PAGE,
        "the write marked rolled back",
    )
    .await;
    b.wait_for(
        "#replica-1[data-role='follower']",
        PAGE,
        "node 1 back as a follower",
    )
    .await;
    b.screenshot("dashboard-10-rolled-back").await;
    b.close().await;
    cluster.stop().await;
}

/// Reads SSE messages from `resp` until `want` accepts one; None after `limit`.
async fn next_event_where(
    resp: &mut reqwest::Response,
    buf: &mut String,
    limit: Duration,
    want: impl Fn(&ClusterEvent) -> bool,
) -> Option<ClusterEvent> {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        while let Some(end) = buf.find("\n\n") {
            let message: String = buf.drain(..end + 2).collect();
            for line in message.lines() {
                if let Some(data) = line.strip_prefix("data:") {
                    let event: ClusterEvent = serde_json::from_str(data.trim_start()).unwrap();
                    if want(&event) {
                        return Some(event);
                    }
                }
            }
        }
        let chunk = tokio::time::timeout_at(deadline, resp.chunk())
            .await
            .ok()?
            .unwrap()
            .expect("the stream stays open");
        buf.push_str(&String::from_utf8_lossy(&chunk));
    }
}

/// A follower's `/events` carries the cluster snapshot it gathers and the
/// traces of writes the leader coordinated (relayed from the leader's own
/// stream); an unknown `only` value is a JSON 400.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_followers_feed_shows_the_cluster_and_the_leaders_writes() {
    let cluster = Cluster::start(3, 2, 2, |_| {}).await;
    let bad = cluster
        .client
        .get(format!("{}/events?only=everything", cluster.url(2)))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
    let body: kv_shared::ErrorBody = bad.json().await.unwrap();
    assert!(!body.error.is_empty());

    let mut feed = cluster
        .client
        .get(format!("{}/events", cluster.url(2)))
        .send()
        .await
        .unwrap();
    assert_eq!(feed.status(), 200);
    let content_type = feed.headers()["content-type"].to_str().unwrap();
    assert!(content_type.starts_with("text/event-stream"));
    let mut buf = String::new();
    let limit = Duration::from_secs(10);
    let all_up =
        |e: &ClusterEvent| matches!(e, ClusterEvent::Status(v) if v.replicas.iter().all(|r| r.up));
    let Some(ClusterEvent::Status(view)) =
        next_event_where(&mut feed, &mut buf, limit, all_up).await
    else {
        panic!("no snapshot with every replica up within {limit:?}")
    };
    assert_eq!(view.observer, 2);
    assert_eq!(view.leader, Some(1));
    let ids: Vec<_> = view.replicas.iter().map(|r| r.id).collect();
    assert_eq!(ids, vec![1, 2, 3]);
    assert_eq!(view.replicas[0].role, kv_shared::Role::Leader);

    // The relay connects in the background: write until a trace comes through.
    let done = |e: &ClusterEvent| matches!(e, ClusterEvent::Trace(t) if t.key == "relayed" && t.fully_acked());
    let mut trace = None;
    for i in 0..100 {
        let status = cluster.set(1, "relayed", &i.to_string()).await.status();
        assert_eq!(status, 201);
        trace = next_event_where(&mut feed, &mut buf, Duration::from_millis(300), done).await;
        if trace.is_some() {
            break;
        }
    }
    let Some(ClusterEvent::Trace(t)) = trace else {
        panic!("no trace of the leader's writes reached the follower's feed")
    };
    assert_eq!((t.coordinator, t.w), (1, 2));
    let ids: Vec<_> = t.replicas.iter().map(|r| r.id).collect();
    assert_eq!(ids, vec![2, 3]);
    for r in &t.replicas {
        assert!(t.started_at_ms <= r.sent_at_ms.unwrap());
        assert!(r.sent_at_ms.unwrap() <= r.acked_at_ms.unwrap());
    }
    drop(feed);
    cluster.stop().await;
}

/// A leaderless cluster is drawn as a ring of peers, and a write sent from
/// the page to one peer shows on the timeline of the page served by another
/// (the coordinator's trace is relayed).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn dashboard_draws_a_leaderless_ring() {
    use common::TestNode;
    use kv_node::config::ModeArg;
    use kv_node::Config;
    use tokio::net::TcpListener;

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
            TestNode::start_on(l, c)
        })
        .collect();

    let b = Browser::start().await;
    b.resize(1400, 1100).await;
    b.client.goto(&format!("{}/", nodes[0].url)).await.unwrap();
    for id in 1..=3 {
        let css = format!("#replica-{id}[data-role='peer'][data-up='true']");
        b.wait_for(&css, PAGE, "a peer of the ring").await;
    }
    assert_eq!(b.text("#health-mode").await, "leaderless");
    b.select("#op-node", "2").await;
    b.fill("#op-key", "ring").await;
    b.click("#op-send").await;
    b.wait_for(
        "#op-result[data-status='201']",
        PAGE,
        "the 201 of the set at node 2",
    )
    .await;
    assert_eq!(b.text("#op-result-served-by").await, "node 2");
    b.wait_for(
        "tr[data-key='ring']",
        PAGE,
        "node 2's write on node 1's timeline",
    )
    .await;
    b.screenshot("dashboard-8-leaderless-ring").await;

    b.close().await;
    for n in nodes {
        n.stop().await;
    }
}
