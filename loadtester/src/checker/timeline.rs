//! One key's operations as a self-contained HTML page, drawn the way
//! Porcupine's visualisation draws them: one lane per client session, each
//! operation a bar from its invocation to its completion, the operations of
//! a violation outlined and listed with their exact times, and the faults
//! that were active meanwhile as shaded bands.
//!
//! The page has no external assets (inline SVG and a little CSS), so it
//! can be opened from a CI artefact or an e-mail. Every string from the
//! history — keys and values come from the network, fault details from the
//! nemesis — is escaped. At most [`MAX_DRAWN_OPS`] operations are drawn:
//! the marked ones first, then those nearest in time to them; the page
//! says how many were left out.

use super::describe;
use crate::history::{FaultRecord, History, HistoryOp, Micros, Outcome};
use crate::workload::OpKind;
use std::collections::{BTreeMap, HashSet};
use std::fmt::Write as _;

/// Most operations drawn on one page.
pub const MAX_DRAWN_OPS: usize = 2000;
/// Most faults listed in the table under the drawing (all are drawn).
const MAX_FAULT_ROWS: usize = 200;

/// Left margin (lane labels), px.
const LEFT: f64 = 96.0;
/// Right margin, px.
const RIGHT: f64 = 24.0;
/// Height of the fault labels and the time axis above the lanes, px.
const TOP: f64 = 44.0;
/// Height of one lane, px.
const LANE: f64 = 30.0;
/// Height of one bar, px.
const BAR: f64 = 20.0;
/// Width given to each operation of the busiest lane, px (then clamped).
const PX_PER_OP: f64 = 110.0;
/// Narrowest and widest drawing area, px.
const MIN_WIDTH: f64 = 900.0;
const MAX_WIDTH: f64 = 40_000.0;
/// Approximate width of one label character at 11 px, px.
const CHAR_PX: f64 = 6.4;

/// Draws `key`'s operations in a page of its own; `marked_op_ids` are
/// outlined and listed (the evidence of a violation). Operations of other
/// keys are ignored, and so are marked ids that are not the key's.
pub fn timeline_html(history: &History, key: &str, marked_op_ids: &[u64]) -> String {
    page(history, key, marked_op_ids, None)
}

/// [`timeline_html`] with an optional heading under the title (the
/// violation's explanation, for [`super::write_violation_pages`]).
pub(super) fn page(
    history: &History,
    key: &str,
    marked_op_ids: &[u64],
    heading: Option<&str>,
) -> String {
    let marked: HashSet<u64> = marked_op_ids.iter().copied().collect();
    let mut ops: Vec<&HistoryOp> = history.ops.iter().filter(|op| op.key == key).collect();
    ops.sort_by_key(|op| (op.invoke_us, op.id));
    let total = ops.len();
    let drawn = select(&ops, &marked);

    let mut html = String::with_capacity(4096 + drawn.len() * 400);
    let title = format!("Timeline of key {}", esc(key));
    let _ = write!(
        html,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <title>{title}</title>\n<style>{CSS}</style>\n</head>\n<body>\n<h1>{title}</h1>\n"
    );
    if let Some(h) = heading {
        let _ = writeln!(html, "<p class=\"heading\">{}</p>", esc(h));
    }
    if drawn.is_empty() {
        html.push_str("<p>The history has no operation of this key.</p>\n");
        missing_marks(&mut html, &marked, &ops);
        html.push_str("</body>\n</html>\n");
        return html;
    }
    let frame = Frame::new(&drawn);
    let _ = writeln!(
        html,
        "<p class=\"summary\">{} of the key's {total} operations drawn{}; times in ms from \
         the first one drawn (#{}, {} µs after the start of the run). Hover over a bar for \
         the whole operation.</p>",
        drawn.len(),
        match total - drawn.len() {
            0 => String::new(),
            n if marked.is_empty() => format!(" ({n} later ones left out)"),
            n => format!(" ({n} left out: those farthest in time from the marked ones)"),
        },
        drawn[0].id,
        frame.t0,
    );
    html.push_str(LEGEND);
    let faults: Vec<&FaultRecord> = history
        .faults
        .iter()
        .filter(|f| f.at_us <= frame.end && f.until_us.is_none_or(|u| u >= frame.t0))
        .collect();
    svg(&mut html, &frame, &drawn, &marked, &faults);
    marked_table(&mut html, &frame, &drawn, &marked);
    missing_marks(&mut html, &marked, &ops);
    fault_table(&mut html, &frame, &faults);
    html.push_str("</body>\n</html>\n");
    html
}

/// The operations to draw, in invocation order: all of them when they are
/// few enough; else the marked ones (up to the limit) and then those
/// nearest in time to the marked span (or the first ones when none is
/// marked).
fn select<'a>(ops: &[&'a HistoryOp], marked: &HashSet<u64>) -> Vec<&'a HistoryOp> {
    if ops.len() <= MAX_DRAWN_OPS {
        return ops.to_vec();
    }
    let (hit, rest): (Vec<&HistoryOp>, Vec<&HistoryOp>) =
        ops.iter().partition(|op| marked.contains(&op.id));
    let mut chosen: Vec<&HistoryOp> = hit.into_iter().take(MAX_DRAWN_OPS).collect();
    let span = chosen
        .iter()
        .map(|op| (op.invoke_us, op.complete_us))
        .reduce(|a, b| (a.0.min(b.0), a.1.max(b.1)));
    let mut rest = rest;
    if let Some((from, to)) = span {
        rest.sort_by_key(|op| (distance(op, from, to), op.invoke_us, op.id));
    }
    let room = MAX_DRAWN_OPS - chosen.len();
    chosen.extend(rest.into_iter().take(room));
    chosen.sort_by_key(|op| (op.invoke_us, op.id));
    chosen
}

/// How far (µs) `op`'s interval is from `[from, to]`; 0 if they meet.
fn distance(op: &HistoryOp, from: Micros, to: Micros) -> Micros {
    from.saturating_sub(op.complete_us)
        .max(op.invoke_us.saturating_sub(to))
}

/// Where things go: time → x, session → lane.
struct Frame {
    /// The first invocation drawn (time 0 of the axis), µs.
    t0: Micros,
    /// The right edge of the drawing (past the last completion, so that
    /// indeterminate operations fade out), µs.
    end: Micros,
    /// Pixels per µs.
    scale: f64,
    /// Width of the drawing area, px.
    width: f64,
    /// Lane of each session, in session order.
    lanes: BTreeMap<u32, usize>,
}

impl Frame {
    fn new(drawn: &[&HistoryOp]) -> Self {
        let t0 = drawn.iter().map(|op| op.invoke_us).min().unwrap_or(0);
        let last = drawn
            .iter()
            .map(|op| op.complete_us.max(op.invoke_us))
            .max()
            .unwrap_or(t0);
        let span = (last - t0).max(1);
        let end = last + (span / 16).max(1);
        let mut per_session: BTreeMap<u32, usize> = BTreeMap::new();
        for op in drawn {
            *per_session.entry(op.session).or_default() += 1;
        }
        let busiest = per_session.values().copied().max().unwrap_or(1);
        let width = (busiest as f64 * PX_PER_OP).clamp(MIN_WIDTH, MAX_WIDTH);
        let lanes = per_session
            .keys()
            .enumerate()
            .map(|(i, &s)| (s, i))
            .collect();
        Frame {
            t0,
            end,
            scale: width / (end - t0) as f64,
            width,
            lanes,
        }
    }

    /// The x of time `t` (clamped to the drawing).
    fn x(&self, t: Micros) -> f64 {
        LEFT + (t.clamp(self.t0, self.end) - self.t0) as f64 * self.scale
    }

    /// The top of session `s`'s lane.
    fn y(&self, session: u32) -> f64 {
        TOP + self.lanes.get(&session).copied().unwrap_or(0) as f64 * LANE
    }

    /// The height of all lanes.
    fn lanes_height(&self) -> f64 {
        self.lanes.len() as f64 * LANE
    }

    /// `t` in ms since the first operation drawn, to the µs.
    fn rel(&self, t: Micros) -> String {
        if t >= self.t0 {
            describe::ms(t - self.t0)
        } else {
            format!("−{}", describe::ms(self.t0 - t))
        }
    }
}

/// The drawing: lanes, faults, time axis, operations.
fn svg(
    html: &mut String,
    frame: &Frame,
    drawn: &[&HistoryOp],
    marked: &HashSet<u64>,
    faults: &[&FaultRecord],
) {
    let width = LEFT + frame.width + RIGHT;
    let height = TOP + frame.lanes_height() + 8.0;
    let _ = writeln!(
        html,
        "<div class=\"scroll\"><svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width:.0}\" \
         height=\"{height:.0}\" viewBox=\"0 0 {width:.0} {height:.0}\">{DEFS}"
    );
    for (&session, &lane) in &frame.lanes {
        let y = frame.y(session);
        let class = if lane % 2 == 0 { "lane" } else { "lane odd" };
        let _ = writeln!(
            html,
            "<rect class=\"{class}\" x=\"0\" y=\"{y:.1}\" width=\"{width:.0}\" height=\"{LANE}\"/>\
             <text class=\"session\" x=\"6\" y=\"{:.1}\">session {session}</text>",
            y + LANE / 2.0 + 4.0
        );
    }
    fault_bands(html, frame, faults);
    axis(html, frame);
    for op in drawn {
        bar(html, frame, op, marked.contains(&op.id));
    }
    html.push_str("</svg></div>\n");
}

/// A shaded band per fault, labelled with its kind above the lanes.
fn fault_bands(html: &mut String, frame: &Frame, faults: &[&FaultRecord]) {
    let bottom = TOP + frame.lanes_height();
    for f in faults {
        let x0 = frame.x(f.at_us);
        let x1 = frame.x(f.until_us.unwrap_or(frame.end)).max(x0 + 2.0);
        let _ = writeln!(
            html,
            "<g class=\"fault\"><title>{}</title><rect x=\"{x0:.1}\" y=\"{:.1}\" \
             width=\"{:.1}\" height=\"{:.1}\"/><text x=\"{:.1}\" y=\"12\">{}</text></g>",
            esc(&fault_text(frame, f)),
            TOP - 30.0,
            x1 - x0,
            bottom - (TOP - 30.0),
            x0 + 2.0,
            esc(&format!("{} {}", f.kind, nodes(&f.nodes))),
        );
    }
}

/// A fault on one line: kind, nodes, when, detail.
fn fault_text(frame: &Frame, f: &FaultRecord) -> String {
    let until = f
        .until_us
        .map_or_else(|| "not healed".to_string(), |u| frame.rel(u));
    format!(
        "{} {} from {} to {}: {}",
        f.kind,
        nodes(&f.nodes),
        frame.rel(f.at_us),
        until,
        f.detail
    )
}

/// `nodes 1,2`.
fn nodes(nodes: &[kv_shared::NodeId]) -> String {
    match nodes {
        [] => String::new(),
        [n] => format!("node {n}"),
        ns => {
            let list: Vec<String> = ns.iter().map(|n| n.to_string()).collect();
            format!("nodes {}", list.join(","))
        }
    }
}

/// Ticks at a 1-2-5 step about every 120 px, labelled in ms.
fn axis(html: &mut String, frame: &Frame) {
    let step = nice_step((120.0 / frame.scale).max(1.0));
    let decimals = match step {
        s if s >= 1000 => 0,
        s if s >= 100 => 1,
        s if s >= 10 => 2,
        _ => 3,
    };
    let bottom = TOP + frame.lanes_height();
    let mut t = 0;
    while frame.t0 + t <= frame.end {
        let x = frame.x(frame.t0 + t);
        let _ = writeln!(
            html,
            "<line class=\"tick\" x1=\"{x:.1}\" y1=\"{:.1}\" x2=\"{x:.1}\" y2=\"{bottom:.1}\"/>\
             <text class=\"tick\" x=\"{x:.1}\" y=\"{:.1}\">{:.decimals$} ms</text>",
            TOP - 4.0,
            TOP - 8.0,
            t as f64 / 1000.0,
        );
        t += step;
    }
}

/// The smallest 1, 2 or 5 × 10ⁿ µs that is at least `raw`.
fn nice_step(raw: f64) -> Micros {
    let mut unit: Micros = 1;
    loop {
        for m in [1, 2, 5] {
            if (unit * m) as f64 >= raw {
                return unit * m;
            }
        }
        unit = unit.saturating_mul(10);
    }
}

/// One operation's bar, its label and its tooltip.
fn bar(html: &mut String, frame: &Frame, op: &HistoryOp, marked: bool) {
    let x0 = frame.x(op.invoke_us);
    let x1 = frame.x(op.complete_us.max(op.invoke_us)).max(x0 + 2.0);
    let y = frame.y(op.session) + (LANE - BAR) / 2.0;
    let outcome = match op.outcome {
        Outcome::Ok => "ok",
        Outcome::Failed => "failed",
        Outcome::Indeterminate => "indeterminate",
    };
    let class = if marked {
        format!("op {outcome} marked")
    } else {
        format!("op {outcome}")
    };
    let mut tip = describe::op(op);
    if let Some(n) = op.node {
        let _ = write!(tip, " node {n}");
    }
    let _ = write!(tip, " (from the first drawn: {})", frame.rel(op.invoke_us));
    if marked {
        tip.push_str(" — part of the violation");
    }
    let _ = write!(
        html,
        "<g id=\"op-{}\" class=\"{class}\"><title>{}</title>",
        op.id,
        esc(&tip)
    );
    if op.outcome == Outcome::Indeterminate {
        // It may take effect at any time after it was sent: the bar goes on,
        // fading, to the right edge.
        let _ = write!(
            html,
            "<rect class=\"tail\" x=\"{x1:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{:.1}\"/>",
            y + BAR / 4.0,
            (frame.x(frame.end) - x1).max(0.0),
            BAR / 2.0
        );
    }
    let _ = write!(
        html,
        "<rect class=\"body\" x=\"{x0:.1}\" y=\"{y:.1}\" width=\"{:.1}\" height=\"{BAR}\" \
         rx=\"3\"/>",
        x1 - x0
    );
    let room = ((x1 - x0 - 6.0) / CHAR_PX).floor();
    if room >= 3.0 {
        let label = cut(&label(op), room as usize);
        let _ = write!(
            html,
            "<text x=\"{:.1}\" y=\"{:.1}\">{}</text>",
            x0 + 3.0,
            y + BAR / 2.0 + 4.0,
            esc(&label)
        );
    }
    html.push_str("</g>\n");
}

/// `W "v12" ver 5 @n1`, `R none @n2`, `W "v9" @n3 ?` (indeterminate), `✗` failed.
fn label(op: &HistoryOp) -> String {
    let mut s = match op.kind {
        OpKind::Write => "W ".to_string(),
        OpKind::Read => "R ".to_string(),
    };
    s.push_str(&describe::value(op.value.as_deref()));
    if let Some(v) = op.version {
        let _ = write!(s, " ver {v}");
    }
    if let Some(n) = op.node {
        let _ = write!(s, " @n{n}");
    }
    match op.outcome {
        Outcome::Ok => {}
        Outcome::Failed => s.push_str(" ✗"),
        Outcome::Indeterminate => s.push_str(" ?"),
    }
    s
}

/// `s` cut to `chars` characters, with `…` when cut.
fn cut(s: &str, chars: usize) -> String {
    if s.chars().count() <= chars {
        return s.to_string();
    }
    let mut out: String = s.chars().take(chars.saturating_sub(1)).collect();
    out.push('…');
    out
}

/// The marked operations that are drawn, with their exact times.
fn marked_table(html: &mut String, frame: &Frame, drawn: &[&HistoryOp], marked: &HashSet<u64>) {
    let rows: Vec<&&HistoryOp> = drawn.iter().filter(|op| marked.contains(&op.id)).collect();
    if rows.is_empty() {
        return;
    }
    let _ = writeln!(
        html,
        "<h2>Marked operations ({})</h2>\n<table>\n<tr><th>op</th><th>session</th>\
         <th>kind</th><th>value</th><th>version</th><th>node</th><th>outcome</th>\
         <th>invoked (ms from first drawn)</th><th>completed</th>\
         <th>invoked (µs since start)</th><th>completed (µs)</th></tr>",
        rows.len()
    );
    for op in rows {
        let kind = match op.kind {
            OpKind::Write => "write",
            OpKind::Read => "read",
        };
        let (outcome, completed) = match op.outcome {
            Outcome::Ok => ("ok", frame.rel(op.complete_us)),
            Outcome::Failed => ("failed", frame.rel(op.complete_us)),
            Outcome::Indeterminate => (
                "indeterminate",
                format!("∞ (gave up at {})", frame.rel(op.complete_us)),
            ),
        };
        let _ = writeln!(
            html,
            "<tr><td><a href=\"#op-{id}\">#{id}</a></td><td>{}</td><td>{kind}</td><td>{}</td>\
             <td>{}</td><td>{}</td><td class=\"{outcome}\">{outcome}</td><td>{}</td>\
             <td>{}</td><td>{}</td><td>{}</td></tr>",
            op.session,
            esc(&describe::value(op.value.as_deref())),
            op.version
                .map_or_else(|| "–".to_string(), |v| v.to_string()),
            op.node.map_or_else(|| "–".to_string(), |n| n.to_string()),
            frame.rel(op.invoke_us),
            completed,
            op.invoke_us,
            op.complete_us,
            id = op.id,
        );
    }
    html.push_str("</table>\n");
}

/// A line for marked ids that are not operations of the key.
fn missing_marks(html: &mut String, marked: &HashSet<u64>, ops: &[&HistoryOp]) {
    let have: HashSet<u64> = ops.iter().map(|op| op.id).collect();
    let mut missing: Vec<u64> = marked.difference(&have).copied().collect();
    if missing.is_empty() {
        return;
    }
    missing.sort_unstable();
    let list: Vec<String> = missing.iter().map(|id| format!("#{id}")).collect();
    let _ = writeln!(
        html,
        "<p class=\"note\">Marked but not operations of this key: {}.</p>",
        list.join(", ")
    );
}

/// The faults drawn, as a table.
fn fault_table(html: &mut String, frame: &Frame, faults: &[&FaultRecord]) {
    if faults.is_empty() {
        return;
    }
    let _ = writeln!(
        html,
        "<h2>Faults in this time range ({})</h2>\n<table>\n<tr><th>kind</th><th>nodes</th>\
         <th>from (ms)</th><th>until (ms)</th><th>detail</th></tr>",
        faults.len()
    );
    for f in faults.iter().take(MAX_FAULT_ROWS) {
        let list: Vec<String> = f.nodes.iter().map(|n| n.to_string()).collect();
        let _ = writeln!(
            html,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&f.kind),
            list.join(","),
            frame.rel(f.at_us),
            f.until_us
                .map_or_else(|| "not healed".to_string(), |u| frame.rel(u)),
            esc(&f.detail),
        );
    }
    html.push_str("</table>\n");
    if faults.len() > MAX_FAULT_ROWS {
        let _ = writeln!(
            html,
            "<p class=\"note\">{} more faults not listed.</p>",
            faults.len() - MAX_FAULT_ROWS
        );
    }
}

/// `s` safe as HTML text and as an attribute value in double or single quotes.
pub(super) fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// The page's style: system fonts, outcome colours, the marked outline.
const CSS: &str = "
body{font:14px system-ui,sans-serif;margin:16px;color:#222}
h1{font-size:20px;margin:0 0 6px}h2{font-size:16px;margin:18px 0 6px}
.heading{font-weight:600;color:#a00;max-width:70em}
.summary,.note{color:#555}
.scroll{overflow-x:auto;border:1px solid #ddd}
svg text{font:11px ui-monospace,monospace;fill:#222}
svg text.session{fill:#555}svg text.tick{fill:#777;text-anchor:middle}
rect.lane{fill:#fff}rect.lane.odd{fill:#f6f7f9}
line.tick{stroke:#e3e3e3}
.op rect.body{stroke-width:1}
.ok rect.body{fill:#cfe8cf;stroke:#4a8a4a}
.failed rect.body{fill:#eee;stroke:#b44;stroke-dasharray:3 2}
.indeterminate rect.body{fill:url(#hatch);stroke:#b8860b}
rect.tail{fill:url(#fade)}
.marked rect.body{stroke:#d00000;stroke-width:3}
.marked text{font-weight:700}
.fault rect{fill:#7a4fd0;fill-opacity:.12}.fault text{fill:#5a2fb0}
table{border-collapse:collapse;font-size:13px}
td,th{border:1px solid #ccc;padding:2px 6px;text-align:left}
th{background:#f0f0f0}td.failed{color:#b44}td.indeterminate{color:#b8860b}
.legend span{display:inline-block;margin-right:14px}
.legend i{display:inline-block;width:22px;height:11px;margin-right:4px;vertical-align:middle;border:1px solid}
";

/// Patterns of the indeterminate bars.
const DEFS: &str = "<defs>\
<pattern id=\"hatch\" width=\"6\" height=\"6\" patternUnits=\"userSpaceOnUse\" \
patternTransform=\"rotate(45)\"><rect width=\"6\" height=\"6\" fill=\"#fbe3b4\"/>\
<line x1=\"0\" y1=\"0\" x2=\"0\" y2=\"6\" stroke=\"#d9a441\" stroke-width=\"2\"/></pattern>\
<linearGradient id=\"fade\"><stop offset=\"0\" stop-color=\"#e8b860\" stop-opacity=\".7\"/>\
<stop offset=\"1\" stop-color=\"#e8b860\" stop-opacity=\"0\"/></linearGradient></defs>\n";

/// What the colours mean.
const LEGEND: &str = "<p class=\"legend\">\
<span><i style=\"background:#cfe8cf;border-color:#4a8a4a\"></i>ok</span>\
<span><i style=\"background:#eee;border-color:#b44;border-style:dashed\"></i>failed (no effect)</span>\
<span><i style=\"background:#fbe3b4;border-color:#b8860b\"></i>indeterminate (may take effect any time after it was sent)</span>\
<span><i style=\"background:#fff;border:3px solid #d00000\"></i>part of the violation</span>\
<span><i style=\"background:rgba(122,79,208,.12);border-color:#7a4fd0\"></i>fault</span>\
W write, R read, ver version, @n node</p>\n";
