//! `kv-loadtester report`: the assignment's matrix and its report.
//!
//! For each delay profile (off, assignment, or both), each configuration
//! (leader-follower W5R1, W1R5, W3R3, leaderless) and each write ratio
//! (1 %, 10 %, 50 %, 90 % by default), one open-loop run: on a fresh local
//! cluster of `--nodes` `kv-node` processes started for that run alone, or
//! on an existing deployment (`--lf-nodes`, `--leaderless-nodes`) whose W/R
//! are set with `POST /config` and whose delay profile is set with the admin
//! token. A configuration that cannot run (a mode the node binary does not
//! implement, a node that does not start) is reported as failed and the
//! matrix goes on.
//!
//! Output, in `--out`:
//! - `report.md` and `report.html`: a table per delay profile (p50/p99 of
//!   reads and writes, stale reads and rate, errors, achieved/target rate,
//!   lost writes) and, per write ratio, plots comparing the configurations;
//! - `report.json`: every run's summary;
//! - `PROFILE/CONFIG/write-Npct/`: each run's summary.json, samples.csv,
//!   plots and node logs; `PROFILE/write-Npct/`: the comparison plots.

use crate::cli::{MatrixConfig, ModeArg, ProfileArg, ReportArgs, RunArgs};
use crate::cluster::{default_node_bin, new_secret, ClusterKind, ClusterSpec, LocalCluster};
use crate::error::{Error, Result};
use crate::output::write_json;
use crate::runner::{run_load, RunResult};
use crate::stats::Summary;
use clap::ValueEnum;
use kv_shared::cluster::{ConfigUpdate, DelayProfile};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// One cell of the matrix and what came of it.
#[derive(Debug)]
pub struct MatrixRun {
    /// `off` or `assignment`.
    pub profile: &'static str,
    /// The configuration.
    pub config: MatrixConfig,
    /// The write ratio.
    pub ratio: f64,
    /// The run's folder, relative to the report folder.
    pub dir: PathBuf,
    /// The result, or why the run failed.
    pub result: std::result::Result<RunResult, String>,
}

/// Name of a configuration in tables and legends.
pub fn config_label(c: MatrixConfig) -> &'static str {
    match c {
        MatrixConfig::LfW5R1 => "LF W5R1",
        MatrixConfig::LfW1R5 => "LF W1R5",
        MatrixConfig::LfW3R3 => "LF W3R3",
        MatrixConfig::Leaderless => "leaderless",
    }
}

fn config_slug(c: MatrixConfig) -> &'static str {
    match c {
        MatrixConfig::LfW5R1 => "lf-w5r1",
        MatrixConfig::LfW1R5 => "lf-w1r5",
        MatrixConfig::LfW3R3 => "lf-w3r3",
        MatrixConfig::Leaderless => "leaderless",
    }
}

/// A write ratio as a percentage without trailing zeros: 0.01 → "1", 0.005 → "0.5".
pub fn pct(r: f64) -> String {
    let p = (r * 1000.0).round() / 10.0;
    if p.fract() == 0.0 {
        format!("{p:.0}")
    } else {
        format!("{p}")
    }
}

fn cluster_kind(c: MatrixConfig) -> ClusterKind {
    match c {
        MatrixConfig::LfW5R1 => ClusterKind::LeaderFollower { w: 5, r: 1 },
        MatrixConfig::LfW1R5 => ClusterKind::LeaderFollower { w: 1, r: 5 },
        MatrixConfig::LfW3R3 => ClusterKind::LeaderFollower { w: 3, r: 3 },
        MatrixConfig::Leaderless => ClusterKind::Leaderless { w: None, r: None },
    }
}

/// W and R of a leader-follower configuration scaled to `n` nodes (5 → as named).
fn lf_quorums(c: MatrixConfig, n: u32) -> Option<(u32, u32)> {
    match c {
        MatrixConfig::LfW5R1 => Some((n, 1)),
        MatrixConfig::LfW1R5 => Some((1, n)),
        MatrixConfig::LfW3R3 => Some((n / 2 + 1, n / 2 + 1)),
        MatrixConfig::Leaderless => None,
    }
}

/// Runs the whole matrix and writes the report. `command` is the command
/// line, quoted in the report.
///
/// # Errors
/// Only when the report folder cannot be written; failed runs are reported.
pub async fn run_report(args: &ReportArgs, command: &str) -> Result<Vec<MatrixRun>> {
    std::fs::create_dir_all(&args.out).map_err(|e| Error::io(&args.out, e))?;
    let profiles: &[&'static str] = match args.delay_profile {
        ProfileArg::Off => &["off"],
        ProfileArg::Assignment => &["assignment"],
        ProfileArg::Both => &["off", "assignment"],
    };
    let mut runs = Vec::new();
    for profile in profiles {
        for config in &args.configs {
            for ratio in &args.ratios {
                let dir = PathBuf::from(profile)
                    .join(config_slug(*config))
                    .join(format!("write-{}pct", pct(*ratio)));
                if !args.workload.quiet {
                    eprintln!(
                        "report: {profile} / {} / {} % writes",
                        config_label(*config),
                        pct(*ratio)
                    );
                }
                let result = one_run(args, profile, *config, *ratio, &args.out.join(&dir)).await;
                if let Err(e) = &result {
                    eprintln!(
                        "report: {profile} / {} / {} % writes failed: {e}",
                        config_label(*config),
                        pct(*ratio)
                    );
                }
                runs.push(MatrixRun {
                    profile,
                    config: *config,
                    ratio: *ratio,
                    dir,
                    result: result.map_err(|e| e.to_string()),
                });
            }
        }
    }
    write_report(args, command, &runs)?;
    Ok(runs)
}

/// The flags of one run of the matrix. One URL means "discover the nodes
/// from its /status"; several are the nodes.
fn run_args(
    args: &ReportArgs,
    config: MatrixConfig,
    ratio: f64,
    urls: &[String],
    out: &Path,
) -> RunArgs {
    let mut workload = args.workload.clone();
    workload.key_prefix = format!(
        "{}-{}-{}",
        workload.key_prefix,
        config_slug(config),
        pct(ratio)
    );
    RunArgs {
        mode: if config == MatrixConfig::Leaderless {
            ModeArg::Leaderless
        } else {
            ModeArg::Leader
        },
        nodes: if urls.len() > 1 {
            urls.to_vec()
        } else {
            Vec::new()
        },
        discover: if urls.len() == 1 {
            Some(urls[0].clone())
        } else {
            None
        },
        single_node: false,
        write_ratio: ratio,
        duration: args.duration,
        qps: Some(args.qps),
        requests: None,
        out: Some(out.to_owned()),
        target: crate::peers::Target::Kv,
        redis_wait: 0,
        workload,
    }
}

async fn one_run(
    args: &ReportArgs,
    profile: &str,
    config: MatrixConfig,
    ratio: f64,
    out: &Path,
) -> Result<RunResult> {
    let delay = profile == "assignment";
    let existing = if config == MatrixConfig::Leaderless {
        &args.leaderless_nodes
    } else {
        &args.lf_nodes
    };
    if !existing.is_empty() {
        configure_existing(args, config, existing, delay).await?;
        return run_load(&run_args(args, config, ratio, existing, out)).await;
    }
    let kind = match (cluster_kind(config), lf_quorums(config, args.nodes)) {
        (ClusterKind::LeaderFollower { .. }, Some((w, r))) => ClusterKind::LeaderFollower { w, r },
        (kind, _) => kind,
    };
    let spec = ClusterSpec {
        kind,
        n: args.nodes,
        delay_profile: delay,
        node_bin: args.node_bin.clone().unwrap_or_else(default_node_bin),
        log_dir: Some(out.to_owned()),
        extra_args: Vec::new(),
        // The nemesis calls the fault API with the token of the cluster it started.
        env: if args.workload.nemesis.is_some() {
            vec![("ADMIN_TOKEN".into(), new_secret())]
        } else {
            Vec::new()
        },
    };
    let cluster = LocalCluster::start(&spec).await?;
    let mut run = run_args(args, config, ratio, &cluster.urls, out);
    run.workload.admin_token = cluster.admin_token().map(str::to_string);
    let shared = std::sync::Arc::new(tokio::sync::Mutex::new(cluster));
    let result = crate::runner::run_on_cluster(&run, shared.clone()).await;
    match std::sync::Arc::try_unwrap(shared) {
        Ok(cluster) => cluster.into_inner().stop().await,
        Err(_) => {
            eprintln!("report: the cluster is still in use; its nodes stop when it is dropped")
        }
    }
    result
}

/// Sets W/R (leader-follower) and the delay profile of an existing deployment.
async fn configure_existing(
    args: &ReportArgs,
    config: MatrixConfig,
    urls: &[String],
    delay: bool,
) -> Result<()> {
    let client = crate::runner::http_client()?;
    // Every node of the deployment, and N, from /status (or the URLs given).
    let probe = run_args(args, config, 0.0, urls, &args.out);
    let targets = crate::targets::Targets::resolve(
        &client,
        probe.mode,
        &probe.nodes,
        probe.discover.as_deref(),
        crate::cli::ReadFrom::All,
        false,
    )
    .await?;
    let n = targets.config.map_or(targets.nodes.len() as u32, |c| c.n);
    let urls: Vec<String> = targets.nodes.iter().map(|node| node.url.clone()).collect();
    let mut update = ConfigUpdate::default();
    if let Some((w, r)) = lf_quorums(config, n) {
        (update.w, update.r) = (Some(w), Some(r));
    }
    let token = args.workload.admin_token.as_deref();
    match (delay, token) {
        (true, None) => {
            return Err(Error::Config(
                "turning the delay profile on in an existing deployment needs --admin-token".into(),
            ))
        }
        (_, Some(_)) => {
            update.delay_profile = Some(if delay {
                DelayProfile::ASSIGNMENT
            } else {
                DelayProfile::OFF
            })
        }
        (false, None) => {}
    }
    let mut ok = 0;
    let mut last_err = String::new();
    for url in &urls {
        let mut req = client
            .post(format!("{url}{}", kv_shared::CONFIG_PATH))
            .json(&update);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        match req.send().await {
            Ok(r) if r.status().is_success() => ok += 1,
            Ok(r) => {
                last_err = format!(
                    "{url}: {} {}",
                    r.status(),
                    r.text().await.unwrap_or_default()
                )
            }
            Err(e) => last_err = format!("{url}: {e}"),
        }
    }
    if ok == 0 {
        return Err(Error::Config(format!(
            "POST /config failed on every node: {last_err}"
        )));
    }
    Ok(())
}

/// The label of a run's configuration, with the quorums `/status` reported.
fn run_label(run: &MatrixRun) -> String {
    match (&run.result, run.config) {
        (Ok(r), MatrixConfig::Leaderless) => match r.summary.cluster {
            Some(c) => format!("leaderless W{}R{}", c.w, c.r),
            None => "leaderless".into(),
        },
        _ => config_label(run.config).into(),
    }
}

fn f2(v: f64) -> String {
    format!("{v:.2}")
}

/// One table row: label, ratio, then the measured cells (or the failure).
fn row_cells(run: &MatrixRun) -> Vec<String> {
    let mut cells = vec![run_label(run), format!("{} %", pct(run.ratio))];
    match &run.result {
        Ok(r) => {
            let s = &r.summary;
            let lost = s
                .verification
                .as_ref()
                .map_or("not verified".into(), |v| v.lost.to_string());
            cells.extend([
                f2(s.reads.p50_ms),
                f2(s.reads.p99_ms),
                f2(s.writes.p50_ms),
                f2(s.writes.p99_ms),
            ]);
            cells.extend(consistency_cells(s.consistency.as_ref()));
            cells.extend([
                s.errors.total.to_string(),
                format!(
                    "{:.1} / {:.0}",
                    s.throughput.issue_rate,
                    s.throughput.target_rate.unwrap_or(0.0)
                ),
                lost,
            ]);
        }
        Err(e) => {
            cells.push(format!(
                "failed: {}",
                e.replace('|', "/").replace('\n', " ")
            ));
            cells.extend(std::iter::repeat_n(String::new(), HEADERS.len() - 3));
        }
    }
    cells
}

/// `count / of (p %)`, or `none` when there was nothing to look at.
fn share(count: u64, of: u64, none: &str) -> String {
    if of == 0 {
        none.into()
    } else {
        format!("{count} / {of} ({:.2} %)", count as f64 * 100.0 / of as f64)
    }
}

/// The WARS-predicted P(fresh) at the starts of the t-visibility bands, or
/// why there is none.
fn wars_cell(w: Option<&crate::consistency::WarsCurve>) -> String {
    match w {
        None => "not predicted".into(),
        Some(w) if w.points.is_empty() => w.not_predicted.clone().unwrap_or_default(),
        Some(w) => w
            .bands
            .iter()
            .map(|p| p.map_or("–".into(), |p| format!("{:.1}", p * 100.0)))
            .collect::<Vec<_>>()
            .join(" / "),
    }
}

/// The consistency columns of a run: stale after ack, inconsistency
/// window, t-visibility (measured and WARS-predicted), linearizability,
/// sessions, promise.
fn consistency_cells(c: Option<&crate::consistency::Consistency>) -> Vec<String> {
    use crate::checker::Verdict;
    let Some(c) = c.filter(|c| c.not_checked.is_none()) else {
        let why = c
            .and_then(|c| c.not_checked.clone())
            .unwrap_or_else(|| "not checked".into());
        let mut cells = vec![String::new(); 7];
        cells[0] = why;
        return cells;
    };
    let verdict = |v: Verdict| match v {
        Verdict::Pass => "pass",
        Verdict::Fail => "FAIL",
        Verdict::Unknown => "unknown",
    };
    let tvis = c
        .t_visibility
        .iter()
        .map(|t| t.p.map_or("–".into(), |p| format!("{:.1}", p * 100.0)))
        .collect::<Vec<_>>()
        .join(" / ");
    vec![
        share(
            c.stale_after_ack,
            c.reads - c.unchecked_reads,
            "no read after a 201",
        ),
        share(c.overlapping_old, c.overlapping, "no overlapping read"),
        tvis,
        wars_cell(c.wars.as_ref()),
        format!(
            "{}{}",
            verdict(c.linearizable),
            if c.counts.linearizable > 0 {
                format!(" ({} keys)", c.counts.linearizable)
            } else {
                String::new()
            }
        ),
        format!(
            "{} / {}",
            verdict(c.read_your_writes),
            verdict(c.monotonic_reads)
        ),
        if c.broken.is_empty() {
            "kept".into()
        } else {
            format!("BROKEN: {}", c.broken.join("; "))
        },
    ]
}

const HEADERS: [&str; 16] = [
    "configuration",
    "writes",
    "read p50 ms",
    "read p99 ms",
    "write p50 ms",
    "write p99 ms",
    "stale after ack / checked reads",
    "inconsistency window: old / overlapping reads",
    "P(fresh) % for reads 0–100 / 100–500 / 500–1000 / >1000 ms after the 201",
    "WARS-predicted P(fresh) % for the same reads",
    "linearizable",
    "read-your-writes / monotonic",
    "promise",
    "errors",
    "req/s sent / target",
    "lost writes",
];

/// `items` without repeats, in the order of first appearance.
fn unique_in_order<T: PartialEq + Copy>(items: impl IntoIterator<Item = T>) -> Vec<T> {
    let mut out: Vec<T> = Vec::new();
    for i in items {
        if !out.contains(&i) {
            out.push(i);
        }
    }
    out
}

/// Draws the comparison plots of one profile and ratio; returns their stems relative to the report folder.
fn comparison_plots(
    out: &Path,
    profile: &str,
    ratio: f64,
    runs: &[&MatrixRun],
) -> Result<Vec<(String, PathBuf)>> {
    let rel = PathBuf::from(profile).join(format!("write-{}pct", pct(ratio)));
    std::fs::create_dir_all(out.join(&rel)).map_err(|e| Error::io(out.join(&rel), e))?;
    let ok: Vec<(String, &RunResult)> = runs
        .iter()
        .filter_map(|r| r.result.as_ref().ok().map(|res| (run_label(r), res)))
        .collect();
    let title = format!("{} % writes, delay profile {profile}", pct(ratio));
    let reads: Vec<(&str, &_)> = ok.iter().map(|(l, r)| (l.as_str(), &r.reads)).collect();
    let writes: Vec<(&str, &_)> = ok.iter().map(|(l, r)| (l.as_str(), &r.writes)).collect();
    let gaps: Vec<(&str, &_)> = ok.iter().map(|(l, r)| (l.as_str(), &r.interval)).collect();
    crate::plot::latency_plot(
        &out.join(&rel).join("reads"),
        &format!("Read latency — {title}"),
        &reads,
    )?;
    crate::plot::latency_plot(
        &out.join(&rel).join("writes"),
        &format!("Write latency — {title}"),
        &writes,
    )?;
    crate::plot::interval_plot(
        &out.join(&rel).join("read-after-write"),
        &format!("Write → next read of the key — {title}"),
        &gaps,
    )?;
    let curves: Vec<crate::plot_consistency::Curve> = ok
        .iter()
        .filter_map(|(l, r)| {
            let c = r.summary.consistency.as_ref()?;
            (!c.visibility_curve.is_empty()).then(|| (l.clone(), c.visibility_curve.clone()))
        })
        .collect();
    let predicted: Vec<(usize, crate::plot_consistency::Curve)> = curves
        .iter()
        .enumerate()
        .filter_map(|(i, (label, _))| {
            let (_, r) = ok.iter().find(|(l, _)| l == label)?;
            let w = r.summary.consistency.as_ref()?.wars.as_ref()?;
            (!w.points.is_empty()).then(|| (i, (format!("{label}, WARS"), w.points.clone())))
        })
        .collect();
    crate::plot_consistency::visibility_plot(
        &out.join(&rel).join("t-visibility"),
        &format!("t-visibility — {title} (dashed: WARS-predicted)"),
        &curves,
        &predicted,
    )?;
    Ok(vec![
        ("t-visibility".into(), rel.join("t-visibility")),
        ("read latency".into(), rel.join("reads")),
        ("write latency".into(), rel.join("writes")),
        (
            "write → next read interval".into(),
            rel.join("read-after-write"),
        ),
    ])
}

/// Writes report.md, report.html and report.json.
fn write_report(args: &ReportArgs, command: &str, runs: &[MatrixRun]) -> Result<()> {
    let mut md = String::new();
    let mut html = String::from(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>kv-store load report</title>\
         <style>body{font-family:sans-serif;max-width:1300px;margin:auto}table{border-collapse:collapse}\
         body{padding:0 1em}td,th{border:1px solid #bbb;padding:3px 8px;text-align:right}td:first-child{text-align:left}\
         img{max-width:100%}</style></head><body>\n",
    );
    let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let w = &args.workload;
    let settings = format!(
        "{} s per run at {} req/s (open loop, latency from the intended send time), {} nodes, {} keys ({}), \
         {}-byte values, reads via /{}, seed {}",
        args.duration,
        args.qps,
        args.nodes,
        w.keys,
        w.key_dist.to_possible_value().map(|v| v.get_name().to_owned()).unwrap_or_default(),
        w.value_size,
        w.read_endpoint.path().trim_start_matches('/'),
        w.seed
    );
    let _ = writeln!(
        md,
        "# kv-store load report\n\nGenerated {now} by `{command}`.\n\n{settings}.\n"
    );
    let _ = writeln!(
        html,
        "<h1>kv-store load report</h1><p>Generated {now} by <code>{}</code>.</p><p>{}.</p>",
        esc(command),
        esc(&settings)
    );
    let profiles = unique_in_order(runs.iter().map(|r| r.profile));
    for profile in profiles {
        let of_profile: Vec<&MatrixRun> = runs.iter().filter(|r| r.profile == profile).collect();
        let _ = writeln!(md, "## Delay profile: {profile}\n");
        let _ = writeln!(
            md,
            "| {} |\n|{}|",
            HEADERS.join(" | "),
            ["---"; HEADERS.len()].join("|")
        );
        let _ = writeln!(
            html,
            "<h2>Delay profile: {profile}</h2><table><tr>{}</tr>",
            HEADERS.map(|h| format!("<th>{h}</th>")).join("")
        );
        for run in &of_profile {
            let cells = row_cells(run);
            let _ = writeln!(md, "| {} |", cells.join(" | "));
            let _ = writeln!(
                html,
                "<tr>{}</tr>",
                cells
                    .iter()
                    .map(|c| format!("<td>{}</td>", esc(c)))
                    .collect::<String>()
            );
        }
        html.push_str("</table>\n");
        md.push('\n');
        let ratios = unique_in_order(of_profile.iter().map(|r| r.ratio));
        for ratio in ratios {
            let of_ratio: Vec<&MatrixRun> = of_profile
                .iter()
                .copied()
                .filter(|r| r.ratio == ratio)
                .collect();
            let plots = comparison_plots(&args.out, profile, ratio, &of_ratio)?;
            let _ = writeln!(md, "### {} % writes\n", pct(ratio));
            let _ = writeln!(html, "<h3>{} % writes</h3>", pct(ratio));
            for (name, stem) in plots {
                let (png, svg) = (stem.with_extension("png"), stem.with_extension("svg"));
                let _ = writeln!(md, "![{name}]({})\n", png.display());
                let _ = writeln!(
                    html,
                    "<p><img alt=\"{name}\" src=\"{}\"></p>",
                    svg.display()
                );
            }
        }
    }
    let _ = writeln!(
        md,
        "Stale after ack = reads that returned an older version than a write whose 201 arrived before the read was sent, \
         among the reads with such a write (PBS's consistency after commit). Inconsistency window = reads that overlapped \
         a write of their key and returned the older value, among the overlapping reads (legal short of linearizability). \
         P(fresh) = the share of reads sent in each band of time after the latest 201 of their key that returned it \
         or newer (t-visibility, PBS); – = no read in the band. Linearizable and the session checks come from the history checker; promise says whether the run \
         kept what its configuration promises (kv-loadtester exits 3 when not). \
         Latency percentiles count from each request's scheduled send time (coordinated omission corrected); \
         req/s sent is the rate requests left the client during the run. \
         Per-run details (summary.json, samples.csv, plots, node logs) are in PROFILE/CONFIG/write-Npct/."
    );
    html.push_str("</body></html>\n");
    let md_path = args.out.join("report.md");
    std::fs::write(&md_path, md).map_err(|e| Error::io(&md_path, e))?;
    let html_path = args.out.join("report.html");
    std::fs::write(&html_path, html).map_err(|e| Error::io(&html_path, e))?;
    let all: Vec<&Summary> = runs
        .iter()
        .filter_map(|r| r.result.as_ref().ok().map(|r| &r.summary))
        .collect();
    write_json(&args.out.join("report.json"), &all)
}

/// Escapes text for HTML.
fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_ratio_and_profile_appears_once_in_first_order() {
        // The matrix runs ratios inside configurations: 0.1, 0.5, 0.1, 0.5, …
        assert_eq!(
            unique_in_order([0.1, 0.5, 0.1, 0.5, 0.9]),
            vec![0.1, 0.5, 0.9]
        );
        assert_eq!(unique_in_order(["off", "on", "off"]), vec!["off", "on"]);
        assert_eq!(share(0, 0, "none"), "none");
        assert_eq!(share(1, 4, "none"), "1 / 4 (25.00 %)");
    }

    #[test]
    fn ratios_print_as_short_percentages() {
        assert_eq!(pct(0.01), "1");
        assert_eq!(pct(0.5), "50");
        assert_eq!(pct(0.005), "0.5");
    }

    #[test]
    fn quorums_scale_with_the_cluster_size() {
        assert_eq!(lf_quorums(MatrixConfig::LfW5R1, 5), Some((5, 1)));
        assert_eq!(lf_quorums(MatrixConfig::LfW3R3, 5), Some((3, 3)));
        assert_eq!(lf_quorums(MatrixConfig::LfW1R5, 3), Some((1, 3)));
        assert_eq!(lf_quorums(MatrixConfig::Leaderless, 5), None);
    }
}
