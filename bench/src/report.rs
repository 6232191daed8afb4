//! `ecs-bench report`: turns the JSON that runs wrote (`--json`) into a Markdown report, with
//! SVG charts: throughput and p99 latency over each run's measured seconds, ours beside the
//! peer's, and the unavailability of each leader kill of a failover run.

use std::fmt::Write;

use serde_json::Value;

/// The systems a result file may hold, in the order they are shown.
const SYSTEMS: [&str; 2] = ["ecsd", "moto"];

/// One table row per system of each run, then the ratio when a peer ran too. `runs` are
/// (name, the JSON a run wrote).
pub fn markdown(runs: &[(String, Value)], charts: &[(&str, String)]) -> String {
    let mut out = String::from("# ecs-bench report\n\n");
    if let Some(machine) = runs.iter().map(|(_, v)| &v["machine"]).find(|m| !m.is_null()) {
        let _ = writeln!(
            out,
            "Machine: {} cores, fsync of 4 KiB {:.2} ms (median, measured by the bench).\n",
            machine["cores"],
            machine["fsync_4k_median_ms"].as_f64().unwrap_or(f64::NAN)
        );
    }
    out.push_str("| run | system | ok/s | errors | p50 ms | p90 ms | p99 ms | p99.9 ms | max ms |\n");
    out.push_str("|---|---|---|---|---|---|---|---|---|\n");
    for (name, run) in runs {
        for system in SYSTEMS {
            let r = &run[system];
            if r["throughput_per_s"].is_null() {
                continue;
            }
            let l = &r["latency"];
            let f = |v: &Value| v.as_f64().map_or("-".to_string(), |x| format!("{x:.2}"));
            let _ = writeln!(
                out,
                "| {name} | {system} | {:.0} | {} | {} | {} | {} | {} | {} |",
                r["throughput_per_s"].as_f64().unwrap_or(0.0),
                r["errors"],
                f(&l["p50_ms"]),
                f(&l["p90_ms"]),
                f(&l["p99_ms"]),
                f(&l["p999_ms"]),
                f(&l["max_ms"])
            );
        }
        if let Some(ratio) = run["ratio"]["throughput"].as_f64() {
            let _ = writeln!(out, "| {name} | ecsd / moto | {ratio:.1}× | | | | | | |");
        }
    }
    for (title, file) in charts {
        let _ = write!(out, "\n![{title}]({file})\n");
    }
    let failovers: Vec<_> = runs
        .iter()
        .filter_map(|(name, run)| Some((name, run["ecsd"]["windows_ms"].as_array()?, &run["ecsd"])))
        .collect();
    for (name, windows, r) in failovers {
        let _ = writeln!(
            out,
            "\n{name}: {} kills of the leader, median unavailability {:.0} ms, {} errors within the windows.",
            windows.len(),
            r["median_ms"].as_f64().unwrap_or(f64::NAN),
            r["errors_after_kills"]
        );
    }
    out
}

/// A line chart of acknowledged operations per second: one line per (label, series).
pub fn throughput_svg(series: &[(String, Vec<u64>)]) -> String {
    let series: Vec<(String, Vec<f64>)> = series
        .iter()
        .map(|(label, s)| (label.clone(), s.iter().map(|v| *v as f64).collect()))
        .collect();
    line_svg(
        "acknowledged operations per second",
        "second of the measured run",
        &series,
    )
}

/// A line chart titled `title`: one line per (label, series), x along `x_label`.
pub fn line_svg(title: &str, x_label: &str, series: &[(String, Vec<f64>)]) -> String {
    const COLOURS: [&str; 6] = ["#1b9e77", "#d95f02", "#7570b3", "#e7298a", "#66a61e", "#e6ab02"];
    let (w, h, left, bottom, top, right) = (800.0, 360.0, 70.0, 40.0, 30.0, 160.0);
    let longest = series.iter().map(|(_, s)| s.len()).max().unwrap_or(0).max(1);
    let peak = series
        .iter()
        .flat_map(|(_, s)| s.iter().copied())
        .filter(|v| v.is_finite())
        .fold(0.0f64, f64::max)
        .max(1.0);
    let x = |i: usize| left + (w - left - right) * i as f64 / (longest.max(2) - 1) as f64;
    let y = |v: f64| top + (h - top - bottom) * (1.0 - v / peak);
    let mut svg = String::new();
    let _ = write!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" font-size="12">"#
    );
    let _ = write!(svg, r#"<rect width="{w}" height="{h}" fill="white"/>"#);
    let _ = write!(svg, r#"<text x="{left}" y="18" font-weight="bold">{title}</text>"#);
    for k in 0..=4 {
        let v = peak * k as f64 / 4.0;
        let _ = write!(
            svg,
            r##"<line x1="{left}" x2="{}" y1="{y0:.1}" y2="{y0:.1}" stroke="#ddd"/><text x="{}" y="{:.1}" text-anchor="end">{v:.0}</text>"##,
            w - right,
            left - 6.0,
            y(v) + 4.0,
            y0 = y(v)
        );
    }
    let _ = write!(
        svg,
        r#"<text x="{:.1}" y="{}" text-anchor="middle">{x_label}</text>"#,
        (left + w - right) / 2.0,
        h - 8.0
    );
    for (n, (label, s)) in series.iter().enumerate() {
        let colour = COLOURS[n % COLOURS.len()];
        let points: Vec<String> = s
            .iter()
            .enumerate()
            .map(|(i, v)| format!("{:.1},{:.1}", x(i), y(if v.is_finite() { *v } else { 0.0 })))
            .collect();
        let _ = write!(
            svg,
            r#"<polyline fill="none" stroke="{colour}" stroke-width="2" points="{}"/>"#,
            points.join(" ")
        );
        let label = label.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;");
        let ly = top + 16.0 * n as f64;
        let _ = write!(
            svg,
            r#"<rect x="{}" y="{:.1}" width="12" height="12" fill="{colour}"/><text x="{}" y="{:.1}">{label}</text>"#,
            w - right + 10.0,
            ly,
            w - right + 28.0,
            ly + 10.0
        );
    }
    svg.push_str("</svg>\n");
    svg
}

/// The array `key` of every system of every run that has it, labelled `run: system`.
fn per_system<T>(runs: &[(String, Value)], key: &str, value: impl Fn(&Value) -> T) -> Vec<(String, Vec<T>)> {
    let mut out = Vec::new();
    for (name, run) in runs {
        for system in SYSTEMS {
            if let Some(s) = run[system][key].as_array() {
                out.push((format!("{name}: {system}"), s.iter().map(&value).collect()));
            }
        }
    }
    out
}

/// The per-second p99 latency of every system of every run that has it, labelled `run: system`.
pub fn latency_series(runs: &[(String, Value)]) -> Vec<(String, Vec<f64>)> {
    per_system(runs, "per_second_p99_ms", |v| v.as_f64().unwrap_or(0.0))
}

/// The unavailability (ms) of each kill of every failover run, labelled by run.
pub fn failover_series(runs: &[(String, Value)]) -> Vec<(String, Vec<f64>)> {
    runs.iter()
        .filter_map(|(name, run)| {
            let windows = run["ecsd"]["windows_ms"].as_array()?;
            Some((
                name.clone(),
                windows.iter().map(|v| v.as_f64().unwrap_or(0.0)).collect(),
            ))
        })
        .collect()
}

/// The failover timeline of every failover run that has one: writes acknowledged and failed
/// per bin around the kills, labelled `run: ok` and `run: errors`.
pub fn failover_timeline_series(runs: &[(String, Value)]) -> Vec<(String, Vec<f64>)> {
    let mut out = Vec::new();
    for (name, run) in runs {
        let timeline = &run["ecsd"]["timeline"];
        for field in ["ok", "errors"] {
            if let Some(bins) = timeline[field].as_array() {
                out.push((
                    format!("{name}: {field}"),
                    bins.iter().map(|v| v.as_f64().unwrap_or(0.0)).collect(),
                ));
            }
        }
    }
    out
}

/// The per-second series of every system of every run, labelled `run: system`.
pub fn series(runs: &[(String, Value)]) -> Vec<(String, Vec<u64>)> {
    per_system(runs, "per_second", |v| v.as_u64().unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn run() -> Value {
        json!({
            "machine": {"cores": 2, "fsync_4k_median_ms": 1.5},
            "ecsd": {"throughput_per_s": 9000.0, "errors": 0, "per_second": [8900, 9100],
                     "latency": {"p50_ms": 6.0, "p90_ms": 9.0, "p99_ms": 14.0, "p999_ms": 20.0, "max_ms": 31.0}},
            "moto": {"throughput_per_s": 300.0, "errors": 2, "per_second": [290, 310],
                     "latency": {"p50_ms": 200.0, "p90_ms": 250.0, "p99_ms": 390.0, "p999_ms": 480.0, "max_ms": 500.0}},
            "ratio": {"throughput": 30.0}
        })
    }

    #[test]
    fn a_report_has_a_row_per_system_the_ratio_and_the_machine() {
        let failover = json!({"ecsd": {"windows_ms": [900.0, 1100.0], "median_ms": 1000.0, "errors_after_kills": 7}});
        let md = markdown(
            &[("write".into(), run()), ("failover".into(), failover)],
            &[("throughput per second", "throughput.svg".into())],
        );
        assert!(md.contains("2 cores, fsync of 4 KiB 1.50 ms"), "{md}");
        assert!(
            md.contains("| write | ecsd | 9000 | 0 | 6.00 | 9.00 | 14.00 | 20.00 | 31.00 |"),
            "{md}"
        );
        assert!(md.contains("| write | moto | 300 | 2 |"), "{md}");
        assert!(md.contains("| write | ecsd / moto | 30.0× |"), "{md}");
        assert!(md.contains("![throughput per second](throughput.svg)"));
        assert!(
            md.contains("failover: 2 kills of the leader, median unavailability 1000 ms, 7 errors"),
            "{md}"
        );
    }

    #[test]
    fn latency_and_failover_charts_come_from_the_runs_that_have_them() {
        let mut write = run();
        write["ecsd"]["per_second_p99_ms"] = json!([12.5, 14.0]);
        let failover = json!({"ecsd": {"windows_ms": [900.0, 1100.0, 950.0],
                                        "timeline": {"from_ms": -1000.0, "bin_ms": 100.0, "ok": [40, 0, 35],
                                                     "errors": [0, 3, 0], "max_latency_ms": [5.0, 800.0, 9.0]}}});
        let runs = [("write".to_string(), write), ("failover".to_string(), failover)];
        let latency = latency_series(&runs);
        assert_eq!(latency, vec![("write: ecsd".to_string(), vec![12.5, 14.0])]);
        let kills = failover_series(&runs);
        assert_eq!(kills, vec![("failover".to_string(), vec![900.0, 1100.0, 950.0])]);
        assert_eq!(
            failover_timeline_series(&runs),
            vec![
                ("failover: ok".to_string(), vec![40.0, 0.0, 35.0]),
                ("failover: errors".to_string(), vec![0.0, 3.0, 0.0])
            ]
        );
        let svg = line_svg("unavailability (ms)", "kill", &kills);
        assert!(svg.contains("unavailability (ms)") && svg.contains(">kill<"));
        assert_eq!(svg.matches("<polyline").count(), 1);
    }

    #[test]
    fn the_chart_draws_a_line_per_series_with_its_label() {
        let s = series(&[("write".into(), run())]);
        assert_eq!(s.len(), 2);
        assert_eq!(s[0], ("write: ecsd".to_string(), vec![8900, 9100]));
        let svg = throughput_svg(&s);
        assert!(svg.starts_with("<svg"));
        assert_eq!(svg.matches("<polyline").count(), 2);
        assert!(svg.contains("write: moto"));
        // Nothing to draw is still a picture.
        assert!(throughput_svg(&[]).ends_with("</svg>\n"));
    }
}
