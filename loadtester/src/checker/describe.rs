//! Operations and times as people read them, in explanations and on the
//! timeline.

use crate::history::{HistoryOp, Micros, Outcome};
use crate::workload::OpKind;

/// Longest value shown in full; longer ones are cut with `…`.
const VALUE_CHARS: usize = 24;

/// `12.345 ms`: µs since the start of the run, in ms with µs precision.
pub(super) fn ms(us: Micros) -> String {
    format!("{}.{:03} ms", us / 1000, us % 1000)
}

/// A value in quotes, cut to [`VALUE_CHARS`], or `none` for a read of nothing.
pub(super) fn value(v: Option<&str>) -> String {
    match v {
        None => "none".to_string(),
        Some(v) if v.chars().count() > VALUE_CHARS => {
            let cut: String = v.chars().take(VALUE_CHARS - 1).collect();
            format!("\"{cut}…\"")
        }
        Some(v) => format!("\"{v}\""),
    }
}

/// One operation on one line:
/// `#12 session 3 write "v12" → version 5 [10.250 ms, 12.000 ms]`.
pub(super) fn op(op: &HistoryOp) -> String {
    let what = match op.kind {
        OpKind::Write => format!("write {}", value(op.value.as_deref())),
        OpKind::Read => format!("read {}", value(op.value.as_deref())),
    };
    let version = op
        .version
        .map(|v| format!(" version {v}"))
        .unwrap_or_default();
    let interval = match op.outcome {
        Outcome::Ok => format!("[{}, {}]", ms(op.invoke_us), ms(op.complete_us)),
        Outcome::Indeterminate => format!(
            "[{}, ∞) indeterminate (gave up at {})",
            ms(op.invoke_us),
            ms(op.complete_us)
        ),
        Outcome::Failed => format!("[{}, {}] failed", ms(op.invoke_us), ms(op.complete_us)),
    };
    format!(
        "#{} session {} {what}{version} {interval}",
        op.id, op.session
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_ms_with_microseconds_and_long_values_are_cut() {
        assert_eq!(ms(12_345), "12.345 ms");
        assert_eq!(ms(7), "0.007 ms");
        assert_eq!(value(None), "none");
        assert_eq!(value(Some("a")), "\"a\"");
        let long = "x".repeat(40);
        assert_eq!(value(Some(&long)).chars().count(), VALUE_CHARS + 2);
    }
}
