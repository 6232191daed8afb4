//! A picture of a run: its history drawn as one self-contained SVG timeline of client latency
//! and nemesis faults, like Jepsen's `latency-raw.png` with its nemesis bands. A checker says
//! whether a history is valid; this shows when operations slowed down, failed or went
//! indeterminate, and which fault was active at the time, which is where reading a run starts.
//!
//! Each client operation is a dot at (invoke time, latency) on a log scale, coloured by its
//! completion (ok, fail, info); an invocation that never completed is a hollow info dot whose
//! latency runs to the end of the run (a lower bound). Each nemesis `start-X` … `stop-X` pair is
//! a translucent band labelled with X and its node. The SVG is written by hand: no dependency.

use std::collections::BTreeMap;
use std::fmt::{self, Write};

use serde_json::Value;

use crate::history::{pairs, Op, OpType};
use crate::nemesis::NEMESIS;

const WIDTH: f64 = 1200.0;
const HEIGHT: f64 = 500.0;
/// The plot area, in pixels.
const LEFT: f64 = 70.0;
const RIGHT: f64 = 1180.0;
const TOP: f64 = 60.0;
const BOTTOM: f64 = 440.0;
/// Above this many operations, every k-th ok operation is drawn (every fail and info still is).
const MAX_POINTS: usize = 20_000;
/// The bottom of the latency scale, in ms; shorter latencies (zero included) are drawn there.
const MIN_LATENCY_MS: f64 = 0.1;
/// The longest value text kept in a tooltip, in characters.
const MAX_TOOLTIP: usize = 200;

const OK_COLOUR: &str = "#2ca02c";
const FAIL_COLOUR: &str = "#e6550d";
const INFO_COLOUR: &str = "#9467bd";

/// How a client operation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Ok,
    Fail,
    Info,
    /// Never completed: drawn as info, its latency running to the end of the run.
    Pending,
}

/// One dot: a client operation.
#[derive(Debug, Clone, Copy)]
struct Point {
    invoked_ns: u64,
    latency_ms: f64,
    outcome: Outcome,
}

/// One band: a fault, from its `start-X` row to its `stop-X` row (or the end of the run).
#[derive(Debug, Clone)]
struct Fault {
    kind: String,
    start_ns: u64,
    end_ns: u64,
    stopped: bool,
    node: Option<String>,
    start_value: String,
    stop_value: Option<String>,
}

/// The client operations of `rows` (nemesis rows left out), paired with their completions.
fn points(rows: &[Op], end_ns: u64) -> Vec<Point> {
    pairs(rows)
        .into_iter()
        .filter(|p| p.invoke.process != NEMESIS)
        .map(|p| {
            let (done_ns, outcome) = match &p.done {
                Some(d) => (
                    d.time_ns,
                    match d.kind {
                        OpType::Ok => Outcome::Ok,
                        OpType::Fail => Outcome::Fail,
                        OpType::Info | OpType::Invoke => Outcome::Info,
                    },
                ),
                None => (end_ns, Outcome::Pending),
            };
            Point {
                invoked_ns: p.invoke.time_ns,
                latency_ms: (done_ns.saturating_sub(p.invoke.time_ns) as f64 / 1e6).max(MIN_LATENCY_MS),
                outcome,
            }
        })
        .collect()
}

/// The faults of `rows`: each `stop-X` closes the most recent unclosed `start-X`; a start never
/// stopped runs to `end_ns`, a stop with no start is ignored.
fn faults(rows: &[Op], end_ns: u64) -> Vec<Fault> {
    let mut out: Vec<Fault> = Vec::new();
    let mut open: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for row in rows.iter().filter(|r| r.process == NEMESIS && r.kind != OpType::Invoke) {
        if let Some(kind) = row.f.strip_prefix("start-") {
            open.entry(kind).or_default().push(out.len());
            out.push(Fault {
                kind: kind.to_string(),
                start_ns: row.time_ns,
                end_ns: end_ns.max(row.time_ns),
                stopped: false,
                node: node_text(&row.value),
                start_value: value_text(&row.value),
                stop_value: None,
            });
        } else if let Some(kind) = row.f.strip_prefix("stop-") {
            let Some(fault) = open.get_mut(kind).and_then(Vec::pop).and_then(|i| out.get_mut(i)) else {
                continue;
            };
            fault.end_ns = row.time_ns;
            fault.stopped = true;
            fault.stop_value = Some(value_text(&row.value));
        }
    }
    out
}

/// A row's value as label text (empty for none).
fn value_text(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// The `node` field of a nemesis value, if it names one (0 is a fault of no single node).
fn node_text(v: &Value) -> Option<String> {
    v.get("node")
        .filter(|n| !n.is_null() && n.as_u64() != Some(0))
        .map(value_text)
}

/// A band's colour: fixed for the faults the nemesis knows, from a stable hash for others.
fn fault_colour(kind: &str) -> &'static str {
    const PALETTE: [&str; 8] = [
        "#393b79", "#637939", "#8c6d31", "#843c39", "#7b4173", "#3182bd", "#31a354", "#756bb1",
    ];
    match kind {
        "partition" => "#1f77b4",
        "kill" => "#d62728",
        "pause" => "#bcbd22",
        "member" => "#17becf",
        "loss" => "#8c564b",
        "clock" => "#e377c2",
        "ring" => "#7f7f7f",
        "kill-all" => "#843c39",
        other => {
            let hash = other.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
                (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
            });
            PALETTE[(hash % PALETTE.len() as u64) as usize]
        }
    }
}

/// Escapes text for SVG content and attribute values; characters XML forbids become U+FFFD.
fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            '\t' | '\n' | '\r' => out.push(c),
            c if (c as u32) < 0x20 || c == '\u{FFFE}' || c == '\u{FFFF}' => out.push('\u{FFFD}'),
            c => out.push(c),
        }
    }
    out
}

/// At most `n` characters of `s`, with an ellipsis when cut.
fn truncate(s: &str, n: usize) -> String {
    match s.char_indices().nth(n) {
        Some((at, _)) => format!("{}…", &s[..at]),
        None => s.to_string(),
    }
}

/// A round tick step (1, 2 or 5 times a power of ten) giving about eight ticks over `span`.
fn tick_step(span: f64) -> f64 {
    let raw = span / 8.0;
    if !raw.is_finite() || raw <= 0.0 {
        return 1.0;
    }
    let magnitude = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|m| m * magnitude)
        .find(|s| *s >= raw * (1.0 - 1e-9))
        .unwrap_or(10.0 * magnitude);
    if step.is_finite() && step > 0.0 {
        step
    } else {
        1.0
    }
}

/// Maps times and latencies to pixels.
struct Scale {
    /// The run's length, in seconds (the right edge).
    span_s: f64,
    /// The top of the latency scale, as a power of ten of ms.
    top_exp: i32,
}

impl Scale {
    fn x_s(&self, s: f64) -> f64 {
        let f = s / self.span_s;
        let f = if f.is_finite() { f.clamp(0.0, 1.0) } else { 0.0 };
        LEFT + f * (RIGHT - LEFT)
    }

    fn x(&self, ns: u64) -> f64 {
        self.x_s(ns as f64 / 1e9)
    }

    fn y(&self, ms: f64) -> f64 {
        let lo = MIN_LATENCY_MS.log10();
        let hi = f64::from(self.top_exp);
        let v = ms.max(MIN_LATENCY_MS).log10().clamp(lo, hi);
        BOTTOM - (v - lo) / (hi - lo) * (BOTTOM - TOP)
    }
}

/// Renders `rows` (a whole history, nemesis rows included) as an SVG document of 1200×500
/// pixels: client latency (log scale, ms) over time since the run start (s), one dot per
/// operation coloured by its completion, fault bands labelled with their kind and node, a
/// legend and a title with counts. Never panics: an empty history gives an empty plot with a
/// "no operations" note; above 20,000 operations every k-th ok operation is drawn, and every
/// fail and info.
pub fn render(rows: &[Op]) -> String {
    let mut out = String::new();
    match draw(&mut out, rows) {
        Ok(()) => out,
        // Writing to a String does not fail; this keeps the promise of a valid document anyway.
        Err(fmt::Error) => {
            format!(r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}"></svg>"#)
        }
    }
}

fn draw(out: &mut String, rows: &[Op]) -> fmt::Result {
    let end_ns = rows.iter().map(|r| r.time_ns).max().unwrap_or(0);
    let points = points(rows, end_ns);
    let faults = faults(rows, end_ns);
    let count = |o: Outcome| points.iter().filter(|p| p.outcome == o).count();
    let (ok, fail, info, pending) = (
        count(Outcome::Ok),
        count(Outcome::Fail),
        count(Outcome::Info),
        count(Outcome::Pending),
    );
    let max_ms = points.iter().map(|p| p.latency_ms).fold(MIN_LATENCY_MS, f64::max);
    let scale = Scale {
        // A history with no time (empty, or all at zero) gets one second of axis.
        span_s: if end_ns == 0 {
            1.0
        } else {
            (end_ns as f64 / 1e9).max(1e-3)
        },
        top_exp: (max_ms.log10().ceil() as i32).clamp(4, 9),
    };
    let every = points.len().div_ceil(MAX_POINTS).max(1);
    let mut kinds: Vec<&str> = Vec::new();
    for f in &faults {
        if !kinds.contains(&f.kind.as_str()) {
            kinds.push(&f.kind);
        }
    }

    writeln!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" font-family="sans-serif" font-size="12">"#
    )?;
    writeln!(out, r#"<rect width="{WIDTH}" height="{HEIGHT}" fill="white"/>"#)?;

    // Title.
    let mut title = format!(
        "ecs-jepsen timeline: {} operations ({ok} ok, {fail} fail, {info} info",
        points.len()
    );
    if pending > 0 {
        let _ = write!(title, ", {pending} never completed");
    }
    let _ = write!(title, "), {} faults, {:.1} s", faults.len(), end_ns as f64 / 1e9);
    if every > 1 {
        let _ = write!(title, "; 1 in {every} ok operations drawn");
    }
    writeln!(
        out,
        r#"<text x="{LEFT}" y="22" font-size="15" font-weight="bold">{}</text>"#,
        escape(&title)
    )?;

    // Legend.
    writeln!(out, r#"<g class="legend">"#)?;
    let mut x = LEFT;
    let mut item = |out: &mut String, label: &str, swatch: String| -> fmt::Result {
        writeln!(
            out,
            r#"<g transform="translate({x:.1},36)">{swatch}<text x="15" y="10">{}</text></g>"#,
            escape(label)
        )?;
        x += 30.0 + 7.0 * label.chars().count() as f64;
        Ok(())
    };
    for (label, colour) in [("ok", OK_COLOUR), ("fail", FAIL_COLOUR), ("info", INFO_COLOUR)] {
        item(
            out,
            label,
            format!(r#"<rect width="10" height="10" rx="5" fill="{colour}"/>"#),
        )?;
    }
    if pending > 0 {
        item(
            out,
            "never completed",
            format!(r#"<rect x="1" y="1" width="8" height="8" rx="4" fill="none" stroke="{INFO_COLOUR}"/>"#),
        )?;
    }
    for kind in &kinds {
        let colour = fault_colour(kind);
        item(
            out,
            kind,
            format!(r#"<rect width="10" height="10" fill="{colour}" fill-opacity="0.3" stroke="{colour}"/>"#),
        )?;
    }
    writeln!(out, "</g>")?;

    // Fault bands, under everything else.
    writeln!(out, r#"<g class="faults">"#)?;
    for f in &faults {
        let (a, b) = (f.start_ns.min(f.end_ns), f.start_ns.max(f.end_ns));
        let (x1, x2) = (scale.x(a), scale.x(b));
        let colour = fault_colour(&f.kind);
        let mut tip = format!("start-{} {}", f.kind, truncate(&f.start_value, MAX_TOOLTIP));
        match &f.stop_value {
            Some(v) => {
                let _ = write!(tip, " / stop-{} {}", f.kind, truncate(v, MAX_TOOLTIP));
            }
            None => tip.push_str(" / not stopped"),
        }
        let _ = write!(tip, " ({:.2} s to {:.2} s)", a as f64 / 1e9, b as f64 / 1e9);
        writeln!(
            out,
            r#"<rect class="fault" x="{x1:.1}" y="{TOP}" width="{:.1}" height="{}" fill="{colour}" fill-opacity="0.15"><title>{}</title></rect>"#,
            (x2 - x1).max(1.0),
            BOTTOM - TOP,
            escape(&tip)
        )?;
    }
    writeln!(out, "</g>")?;

    // Grid and axes.
    writeln!(out, r##"<g class="axes" stroke="#ccc">"##)?;
    let step = tick_step(scale.span_s);
    let decimals = if step >= 1.0 {
        0
    } else {
        (-step.log10()).ceil().clamp(0.0, 9.0) as usize
    };
    let mut x_ticks = Vec::new();
    for i in 0..=100u32 {
        let s = f64::from(i) * step;
        if s > scale.span_s * (1.0 + 1e-9) {
            break;
        }
        x_ticks.push(s);
        let x = scale.x_s(s);
        writeln!(
            out,
            r#"<line x1="{x:.1}" y1="{TOP}" x2="{x:.1}" y2="{}"/>"#,
            BOTTOM + 5.0
        )?;
    }
    for e in 0..=scale.top_exp {
        let y = scale.y(10f64.powi(e));
        writeln!(
            out,
            r#"<line x1="{}" y1="{y:.1}" x2="{RIGHT}" y2="{y:.1}"/>"#,
            LEFT - 5.0
        )?;
    }
    writeln!(
        out,
        r##"<rect x="{LEFT}" y="{TOP}" width="{}" height="{}" fill="none" stroke="#333"/>"##,
        RIGHT - LEFT,
        BOTTOM - TOP
    )?;
    writeln!(out, "</g>")?;
    writeln!(out, r##"<g class="ticks" fill="#333">"##)?;
    for s in &x_ticks {
        writeln!(
            out,
            r#"<text x="{:.1}" y="{}" text-anchor="middle">{s:.decimals$}</text>"#,
            scale.x_s(*s),
            BOTTOM + 18.0
        )?;
    }
    for e in 0..=scale.top_exp {
        writeln!(
            out,
            r#"<text x="{}" y="{:.1}" text-anchor="end">{}</text>"#,
            LEFT - 8.0,
            scale.y(10f64.powi(e)) + 4.0,
            10u64.pow(e.unsigned_abs())
        )?;
    }
    writeln!(
        out,
        r#"<text x="{:.1}" y="{}" text-anchor="middle" font-size="13">time since start (s)</text>"#,
        (LEFT + RIGHT) / 2.0,
        HEIGHT - 14.0
    )?;
    let mid = (TOP + BOTTOM) / 2.0;
    writeln!(
        out,
        r#"<text x="20" y="{mid}" transform="rotate(-90 20 {mid})" text-anchor="middle" font-size="13">latency (ms, log scale)</text>"#
    )?;
    writeln!(out, "</g>")?;

    // Points: ok first, fail last, so the rare outcomes stay on top.
    let groups = [
        (
            Outcome::Ok,
            format!(r#"class="ok" fill="{OK_COLOUR}" fill-opacity="0.5""#),
        ),
        (
            Outcome::Info,
            format!(r#"class="info" fill="{INFO_COLOUR}" fill-opacity="0.7""#),
        ),
        (
            Outcome::Pending,
            format!(r#"class="pending" fill="none" stroke="{INFO_COLOUR}""#),
        ),
        (
            Outcome::Fail,
            format!(r#"class="fail" fill="{FAIL_COLOUR}" fill-opacity="0.8""#),
        ),
    ];
    for (outcome, attrs) in &groups {
        if !points.iter().any(|p| p.outcome == *outcome) {
            continue;
        }
        writeln!(out, "<g {attrs}>")?;
        let mut nth_ok = 0usize;
        for p in points.iter().filter(|p| p.outcome == *outcome) {
            if *outcome == Outcome::Ok {
                nth_ok += 1;
                if (nth_ok - 1) % every != 0 {
                    continue;
                }
            }
            writeln!(
                out,
                r#"<circle cx="{:.1}" cy="{:.1}" r="2.5"/>"#,
                scale.x(p.invoked_ns),
                scale.y(p.latency_ms)
            )?;
        }
        writeln!(out, "</g>")?;
    }

    // Fault labels, at the top of their bands, in lanes so that they do not overlap.
    writeln!(out, r#"<g class="fault-labels" font-size="11">"#)?;
    let mut lanes: Vec<f64> = Vec::new();
    for f in &faults {
        let label = match &f.node {
            Some(node) => format!("{} node {}", f.kind, truncate(node, 20)),
            None => f.kind.clone(),
        };
        let x1 = scale.x(f.start_ns.min(f.end_ns)) + 3.0;
        let right = x1 + 6.5 * label.chars().count() as f64 + 6.0;
        let lane = match lanes.iter().position(|end| *end <= x1) {
            Some(i) => i,
            None if lanes.len() < 6 => {
                lanes.push(0.0);
                lanes.len() - 1
            }
            None => 0,
        };
        if let Some(end) = lanes.get_mut(lane) {
            *end = right;
        }
        writeln!(
            out,
            r#"<text x="{x1:.1}" y="{:.1}" fill="{}">{}</text>"#,
            TOP + 13.0 + 13.0 * lane as f64,
            fault_colour(&f.kind),
            escape(&label)
        )?;
    }
    writeln!(out, "</g>")?;

    if points.is_empty() {
        writeln!(
            out,
            r##"<text x="{:.1}" y="{:.1}" text-anchor="middle" font-size="16" fill="#666">no operations</text>"##,
            (LEFT + RIGHT) / 2.0,
            mid
        )?;
    }
    writeln!(out, "</svg>")
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    /// No number in the picture is NaN or infinite.
    fn finite(svg: &str) -> bool {
        ["NaN", "\"inf\"", "\"-inf\"", ">inf<", ">-inf<"]
            .iter()
            .all(|bad| !svg.contains(bad))
    }

    fn op(index: u64, ms: u64, process: u64, kind: OpType, f: &str, value: Value) -> Op {
        Op {
            index,
            time_ns: ms * 1_000_000,
            process,
            kind,
            f: f.into(),
            key: None,
            value,
            error: None,
            node: None,
        }
    }

    /// Five completed operations (two ok, one fail, one info, one of zero latency, ok) and one
    /// partition of node 2.
    fn small() -> Vec<Op> {
        use OpType::*;
        let n = Value::Null;
        let rows = [
            (0, 0, Invoke, "write"),
            (1, 1, Invoke, "read"),
            (0, 5, Ok, "write"),
            (NEMESIS, 1000, Info, "start-partition"),
            (0, 1100, Invoke, "write"),
            (1, 1200, Fail, "read"),
            (2, 1300, Invoke, "cas"),
            (NEMESIS, 2000, Info, "stop-partition"),
            (2, 2500, Info, "cas"),
            (0, 2600, Ok, "write"),
            (3, 2600, Invoke, "read"),
            (3, 2600, Ok, "read"),
        ];
        rows.iter()
            .enumerate()
            .map(|(i, (p, ms, kind, f))| {
                let value = match *f {
                    "start-partition" => json!({"node": 2, "leader": true}),
                    "stop-partition" => json!({"node": 2}),
                    _ => n.clone(),
                };
                op(i as u64, *ms, *p, *kind, f, value)
            })
            .collect()
    }

    #[test]
    fn a_small_history_draws_its_operations_faults_and_legend() {
        let svg = render(&small());
        assert!(svg.starts_with("<svg"), "{svg}");
        assert!(svg.trim_end().ends_with("</svg>"), "{svg}");
        assert_eq!(svg.matches("<circle").count(), 5, "{svg}");
        assert_eq!(svg.matches(r#"class="fault""#).count(), 1, "{svg}");
        assert!(svg.contains(">partition node 2</text>"), "{svg}");
        assert!(svg.contains(r#"<g class="legend">"#), "{svg}");
        for label in ["ok", "fail", "info", "partition"] {
            assert!(svg.contains(&format!(">{label}</text></g>")), "{label}: {svg}");
        }
        assert!(svg.contains("5 operations (3 ok, 1 fail, 1 info), 1 faults"), "{svg}");
        for tick in ["1", "10", "100", "1000", "10000"] {
            assert!(
                svg.contains(&format!(r#"text-anchor="end">{tick}</text>"#)),
                "{tick}: {svg}"
            );
        }
        assert!(finite(&svg), "{svg}");
        assert!(!svg.contains("no operations"), "{svg}");
    }

    #[test]
    fn an_empty_history_renders_a_note() {
        let svg = render(&[]);
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"), "{svg}");
        assert!(svg.contains("no operations"), "{svg}");
        assert_eq!(svg.matches("<circle").count(), 0);
        assert!(finite(&svg), "{svg}");
    }

    #[test]
    fn text_is_escaped() {
        assert_eq!(escape(r#"a<b>&"c'"#), "a&lt;b&gt;&amp;&quot;c&#39;");
        assert_eq!(escape("x\u{0}y"), "x\u{FFFD}y");
        let rows = vec![
            op(0, 0, NEMESIS, OpType::Info, "start-<x&y>", json!({"node": "<n&1>"})),
            op(1, 10, 0, OpType::Invoke, "write", Value::Null),
            op(2, 20, 0, OpType::Ok, "write", Value::Null),
        ];
        let svg = render(&rows);
        assert!(svg.contains("&lt;x&amp;y&gt; node &lt;n&amp;1&gt;"), "{svg}");
        assert!(!svg.contains("<x&y>") && !svg.contains("<n&1>"), "{svg}");
    }

    #[test]
    fn stops_close_the_latest_start_and_unmatched_starts_run_to_the_end() {
        let rows = vec![
            op(0, 100, NEMESIS, OpType::Info, "start-kill", json!({"node": 1})),
            op(1, 200, NEMESIS, OpType::Info, "start-kill", json!({"node": 2})),
            op(2, 300, NEMESIS, OpType::Info, "start-pause", json!({"node": 3})),
            op(3, 400, NEMESIS, OpType::Info, "stop-kill", json!({"node": 2})),
            op(4, 450, NEMESIS, OpType::Info, "stop-loss", Value::Null),
            op(5, 500, NEMESIS, OpType::Info, "stop-pause", json!({"node": 3})),
            op(6, 900, 0, OpType::Invoke, "read", Value::Null),
        ];
        let f = faults(&rows, 900_000_000);
        let got: Vec<(&str, u64, u64, bool, Option<&str>)> = f
            .iter()
            .map(|f| {
                (
                    f.kind.as_str(),
                    f.start_ns / 1_000_000,
                    f.end_ns / 1_000_000,
                    f.stopped,
                    f.node.as_deref(),
                )
            })
            .collect();
        assert_eq!(
            got,
            vec![
                ("kill", 100, 900, false, Some("1")),
                ("kill", 200, 400, true, Some("2")),
                ("pause", 300, 500, true, Some("3")),
            ]
        );
        let svg = render(&rows);
        assert_eq!(svg.matches(r#"class="fault""#).count(), 3, "{svg}");
        // The read never completed: a hollow info dot at the end of the run.
        assert!(svg.contains(r#"<g class="pending""#), "{svg}");
        assert_eq!(svg.matches("<circle").count(), 1, "{svg}");
        assert!(svg.contains("never completed"), "{svg}");
    }

    #[test]
    fn odd_times_and_latencies_never_break_the_picture() {
        let rows = vec![
            op(0, 5000, 0, OpType::Invoke, "write", Value::Null),
            // Completes "before" it was invoked: latency clamps to the bottom of the scale.
            op(1, 10, 0, OpType::Ok, "write", Value::Null),
            op(2, 0, 1, OpType::Invoke, "read", Value::Null),
            op(3, 0, 1, OpType::Info, "read", Value::Null),
            op(4, 3000, NEMESIS, OpType::Info, "start-clock", json!("skew")),
            op(5, 1000, NEMESIS, OpType::Info, "stop-clock", Value::Null),
        ];
        let svg = render(&rows);
        assert_eq!(svg.matches("<circle").count(), 2, "{svg}");
        assert_eq!(svg.matches(r#"class="fault""#).count(), 1, "{svg}");
        assert!(finite(&svg), "{svg}");
    }

    #[test]
    fn large_histories_are_subsampled_but_keep_every_fail_and_info() {
        let mut rows = Vec::new();
        for i in 0..25_000u64 {
            let kind = match i % 1000 {
                0 => OpType::Fail,
                1 => OpType::Info,
                _ => OpType::Ok,
            };
            rows.push(op(2 * i, i, i, OpType::Invoke, "write", Value::Null));
            rows.push(op(2 * i + 1, i + 2, i, kind, "write", Value::Null));
        }
        let svg = render(&rows);
        let count = |class: &str| {
            svg.split(&format!(r#"<g class="{class}""#))
                .nth(1)
                .and_then(|g| g.split("</g>").next())
                .map_or(0, |g| g.matches("<circle").count())
        };
        assert_eq!((count("fail"), count("info")), (25, 25));
        assert_eq!(count("ok"), 24_950usize.div_ceil(2));
        assert!(svg.contains("1 in 2 ok operations drawn"), "subsampling is noted");
    }
}
