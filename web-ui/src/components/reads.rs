//! Coordinated reads, drawn like writes: each read's replicas with what they
//! answered (a version, nothing, no answer), the version returned and the
//! read repairs sent; the quorum picture of the latest read (the W replicas
//! that acknowledged the key's last write, the R the read counted, their
//! overlap); and the staleness curve of what the page saw.

use crate::lab::{quorum_picture, staleness, version_label, version_title, STALENESS_BINS};
use kv_shared::events::{ReadAnswer, ReadTrace, WriteTrace};
use kv_shared::NodeId;
use yew::prelude::*;

/// How many reads the list shows.
const ROWS: usize = 6;

/// Props of [`Reads`].
#[derive(Properties, PartialEq)]
pub struct ReadsProps {
    /// Reads that ended by the drawn instant, oldest first.
    pub reads: Vec<ReadTrace>,
    /// Every write the page keeps (for the quorum picture and staleness).
    pub traces: Vec<WriteTrace>,
    /// The replicas, sorted.
    pub replicas: Vec<NodeId>,
}

fn answer_name(a: ReadAnswer) -> &'static str {
    match a {
        ReadAnswer::Version { .. } => "version",
        ReadAnswer::Missing => "missing",
        ReadAnswer::NotCurrent => "not-current",
        ReadAnswer::Failed => "failed",
        ReadAnswer::NotNeeded => "not-needed",
    }
}

fn answer_text(a: ReadAnswer) -> String {
    match a {
        ReadAnswer::Version { version } => version_label(version),
        ReadAnswer::Missing => "no copy".to_owned(),
        ReadAnswer::NotCurrent => "catching up".to_owned(),
        ReadAnswer::Failed => "no answer".to_owned(),
        ReadAnswer::NotNeeded => "not needed".to_owned(),
    }
}

fn read_row(r: &ReadTrace) -> Html {
    let answers = r.replicas.iter().map(|a| {
        let stale = matches!((a.answer, r.winner), (ReadAnswer::Version { version }, Some(w)) if version < w)
            || (a.answer == ReadAnswer::Missing && r.winner.is_some());
        let title = match a.answer {
            ReadAnswer::Version { version } => version_title(version),
            _ => answer_text(a.answer),
        };
        html! {
            <span class={classes!("answer", answer_name(a.answer), stale.then_some("stale"))}
                data-node={a.id.to_string()} data-answer={answer_name(a.answer)} title={title}>
                <b>{ format!("n{}", a.id) }</b>{ " " }{ answer_text(a.answer) }
            </span>
        }
    });
    let verdict = match (r.outcome, r.winner) {
        (Some(o), _) => format!("503 · {}", crate::state::outcome_words(o)),
        (None, Some(v)) => format!("returned {}", version_label(v)),
        (None, None) => "no replica has it (404)".to_owned(),
    };
    let repaired = (!r.repaired.is_empty()).then(|| {
        let ids: Vec<String> = r.repaired.iter().map(|i| format!("node {i}")).collect();
        html! { <span class="repair-note">{ format!(" · read repair → {}", ids.join(", ")) }</span> }
    });
    html! {
        <li data-key={r.key.clone()} data-coordinator={r.coordinator.to_string()}
            data-answers={r.counted().count().to_string()}
            data-repaired={r.repaired.iter().map(|i| i.to_string()).collect::<Vec<_>>().join(",")}
            data-failed={r.outcome.is_some().to_string()}>
            <div>
                <code>{ &r.key }</code>
                <span class="pill">{ format!("R{}", r.r) }</span>
                <span class="pill coord">{ format!("via {}", r.coordinator) }</span>
                <span class="muted small">{ format!(" {} ms · ", r.finished_at_ms.saturating_sub(r.started_at_ms)) }</span>
                <span class="small">{ verdict }</span>
                { repaired }
            </div>
            <div class="answers">{ for answers }</div>
        </li>
    }
}

fn quorum_view(p: &ReadsProps) -> Html {
    let Some(last) = p.reads.iter().rev().find(|r| r.outcome.is_none()) else {
        return html! {};
    };
    let q = quorum_picture(&p.traces, last);
    let overlap = q.overlap();
    let chips = p.replicas.iter().map(|&id| {
        let in_w = q.write_set.as_ref().is_some_and(|w| w.contains(&id));
        let in_r = q.read_set.contains(&id);
        html! {
            <span class={classes!("chip", in_w.then_some("in-w"), in_r.then_some("in-r"))}
                data-node={id.to_string()} data-in-w={in_w.to_string()} data-in-r={in_r.to_string()}>
                { id }
            </span>
        }
    });
    let set = |s: &std::collections::BTreeSet<NodeId>| {
        s.iter()
            .map(|i| i.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let words = match &q.write_set {
        Some(w) => format!(
            "W{} wrote {{{}}} · R{} read {{{}}} · overlap {{{}}}",
            q.w,
            set(w),
            q.r,
            set(&q.read_set),
            set(&overlap)
        ),
        None => format!(
            "R{} read {{{}}} · the key's last write was not seen by this page",
            q.r,
            set(&q.read_set)
        ),
    };
    html! {
        <div id="quorum-picture" data-key={q.key.clone()} data-overlap={overlap.len().to_string()}>
            <div class="small"><b>{ "Quorums of " }<code>{ &q.key }</code></b></div>
            <div class="chips">{ for chips }</div>
            <div class="muted small">{ words }</div>
        </div>
    }
}

fn staleness_view(p: &ReadsProps) -> Html {
    let refs: Vec<&ReadTrace> = p.reads.iter().collect();
    let bins = staleness(&p.traces, &refs);
    if bins.iter().all(|b| b.reads == 0) {
        return html! {
            <p id="staleness" class="muted small" data-reads="0">
                { "Staleness: no read of a key after a write this page saw yet." }
            </p>
        };
    }
    let bar = |fresh: u32, total: u32| {
        let p = if total == 0 {
            0.0
        } else {
            f64::from(fresh) / f64::from(total)
        };
        html! {
            <td class="pbar" title={format!("{fresh} of {total}")}>
                <span style={format!("width:{:.0}%", p * 100.0)}></span>
                <em>{ if total == 0 { "—".to_owned() } else { format!("{:.0} %", p * 100.0) } }</em>
            </td>
        }
    };
    let rows = bins.iter().enumerate().map(|(i, b)| {
        let label = match STALENESS_BINS.get(i + 1) {
            Some(hi) => format!("{}–{hi} ms", b.from_ms),
            None => format!("> {} ms", b.from_ms),
        };
        html! {
            <tr data-from={b.from_ms.to_string()} data-reads={b.reads.to_string()}>
                <td class="muted small">{ label }</td>
                { bar(b.fresh_reads, b.reads) }
                { bar(b.fresh_answers, b.answers) }
            </tr>
        }
    });
    let total: u32 = bins.iter().map(|b| b.reads).sum();
    html! {
        <table id="staleness" class="staleness" data-reads={total.to_string()}>
            <thead><tr>
                <th class="small">{ "since the ack" }</th>
                <th class="small">{ "P(read fresh)" }</th>
                <th class="small">{ "P(replica fresh)" }</th>
            </tr></thead>
            <tbody>{ for rows }</tbody>
        </table>
    }
}

/// The reads panel.
#[function_component(Reads)]
pub fn reads(p: &ReadsProps) -> Html {
    let rows: Vec<&ReadTrace> = p.reads.iter().rev().take(ROWS).collect();
    html! {
        <div class="reads-panel">
            <h3 class="small">{ "Recent coordinated reads" }
                <span class="muted">{ " · who was asked, what each answered, the winner, repairs" }</span></h3>
            { if rows.is_empty() {
                html! { <p class="muted small">{ "No coordinated read yet (a get with R > 1)." }</p> }
            } else {
                html! { <ol id="reads" class="reads">{ for rows.iter().map(|r| read_row(r)) }</ol> }
            } }
            { quorum_view(p) }
            <h3 class="small">{ "Staleness (t-visibility)" }
                <span class="muted">{ " · reads after an acknowledged write, by time since its ack" }</span></h3>
            { staleness_view(p) }
        </div>
    }
}
