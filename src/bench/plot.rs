//! An SVG plot of end-to-end latency percentiles (p50, p90, p99) against offered load, one
//! colour per backend, with the latency bound as a dashed line. Written by hand: a few
//! hundred bytes of markup need no plotting crate.

use super::report::Report;
use std::fmt::Write;

const W: f64 = 720.0;
const H: f64 = 440.0;
const LEFT: f64 = 70.0;
const RIGHT: f64 = 180.0;
const TOP: f64 = 40.0;
const BOTTOM: f64 = 60.0;
const COLOURS: &[&str] = &["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e"];
/// Dash pattern per percentile: p50 solid, p90 dashed, p99 dotted.
const SERIES: &[(&str, &str)] = &[("p50", ""), ("p90", "6 3"), ("p99", "2 3")];

/// A "nice" axis maximum (1, 2 or 5 times a power of ten) at or above `v`.
fn nice(v: f64) -> f64 {
    if !(v.is_finite() && v > 0.0) {
        return 1.0;
    }
    let p = 10f64.powf(v.log10().floor());
    [1.0, 2.0, 5.0, 10.0].iter().map(|m| m * p).find(|x| *x >= v).unwrap_or(10.0 * p)
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// The SVG document.
pub fn latency_svg(report: &Report) -> String {
    let points: Vec<_> = report.backends.iter().flat_map(|b| &b.load_points).collect();
    let x_max = nice(points.iter().map(|p| p.offered_qps).fold(0.0, f64::max) * 1.05);
    let y_data = points.iter().filter_map(|p| p.latency_s.p99).fold(0.0, f64::max);
    let y_max = nice(y_data.max(report.latency_bound_s.min(y_data * 2.0)) * 1.05);
    let (pw, ph) = (W - LEFT - RIGHT, H - TOP - BOTTOM);
    let sx = |x: f64| LEFT + x / x_max * pw;
    let sy = |y: f64| TOP + ph - (y / y_max).min(1.05) * ph;

    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(s, r#"<rect width="{W}" height="{H}" fill="white"/>"#);
    let _ = writeln!(
        s,
        r#"<text x="{}" y="22" text-anchor="middle" font-size="14">{}: end-to-end latency against offered load</text>"#,
        LEFT + pw / 2.0,
        esc(&report.model)
    );
    for i in 0..=5 {
        let (fx, fy) = (x_max * i as f64 / 5.0, y_max * i as f64 / 5.0);
        let _ = writeln!(
            s,
            "<line x1=\"{x:.1}\" y1=\"{TOP}\" x2=\"{x:.1}\" y2=\"{b:.1}\" stroke=\"#eee\"/>\n\
             <text x=\"{x:.1}\" y=\"{t:.1}\" text-anchor=\"middle\">{fx}</text>",
            x = sx(fx),
            b = TOP + ph,
            t = TOP + ph + 18.0,
            fx = trim(fx)
        );
        let _ = writeln!(
            s,
            "<line x1=\"{LEFT}\" y1=\"{y:.1}\" x2=\"{r:.1}\" y2=\"{y:.1}\" stroke=\"#eee\"/>\n\
             <text x=\"{l:.1}\" y=\"{ty:.1}\" text-anchor=\"end\">{fy}</text>",
            y = sy(fy),
            r = LEFT + pw,
            l = LEFT - 6.0,
            ty = sy(fy) + 4.0,
            fy = trim(fy)
        );
    }
    let _ = writeln!(
        s,
        "<rect x=\"{LEFT}\" y=\"{TOP}\" width=\"{pw}\" height=\"{ph}\" fill=\"none\" stroke=\"#444\"/>\n\
         <text x=\"{cx}\" y=\"{by}\" text-anchor=\"middle\">offered load (queries/s)</text>\n\
         <text transform=\"translate(18 {cy}) rotate(-90)\" text-anchor=\"middle\">latency (s)</text>",
        cx = LEFT + pw / 2.0,
        by = H - 15.0,
        cy = TOP + ph / 2.0
    );
    if report.latency_bound_s <= y_max {
        let y = sy(report.latency_bound_s);
        let _ = writeln!(
            s,
            "<line x1=\"{LEFT}\" y1=\"{y:.1}\" x2=\"{r:.1}\" y2=\"{y:.1}\" stroke=\"#888\" stroke-dasharray=\"8 4\"/>\n\
             <text x=\"{r:.1}\" y=\"{ty:.1}\" text-anchor=\"end\" fill=\"#666\">p99 bound {b} s</text>",
            r = LEFT + pw,
            ty = y - 4.0,
            b = trim(report.latency_bound_s)
        );
    }
    let mut legend_y = TOP + 10.0;
    for (bi, b) in report.backends.iter().enumerate() {
        let colour = COLOURS[bi % COLOURS.len()];
        let mut pts: Vec<_> = b.load_points.iter().collect();
        pts.sort_by(|a, b| a.offered_qps.total_cmp(&b.offered_qps));
        for (si, (name, dash)) in SERIES.iter().enumerate() {
            let get = |p: &&super::report::LoadPoint| [p.latency_s.p50, p.latency_s.p90, p.latency_s.p99][si];
            let xy: Vec<String> =
                pts.iter().filter_map(|p| get(p).map(|y| format!("{:.1},{:.1}", sx(p.offered_qps), sy(y)))).collect();
            if xy.is_empty() {
                continue;
            }
            let _ = writeln!(
                s,
                r#"<polyline points="{}" fill="none" stroke="{colour}" stroke-width="2" stroke-dasharray="{dash}"/>"#,
                xy.join(" ")
            );
            for p in &xy {
                let (x, y) = p.split_once(',').unwrap_or(("0", "0"));
                let _ = writeln!(s, r#"<circle cx="{x}" cy="{y}" r="3" fill="{colour}"/>"#);
            }
            let lx = LEFT + pw + 12.0;
            let _ = writeln!(
                s,
                "<line x1=\"{lx}\" y1=\"{legend_y}\" x2=\"{x2}\" y2=\"{legend_y}\" stroke=\"{colour}\" stroke-width=\"2\" stroke-dasharray=\"{dash}\"/>\n\
                 <text x=\"{tx}\" y=\"{ty}\">{} {name}</text>",
                esc(&b.backend),
                x2 = lx + 28.0,
                tx = lx + 34.0,
                ty = legend_y + 4.0
            );
            legend_y += 18.0;
        }
    }
    s.push_str("</svg>\n");
    s
}

/// A tick label without trailing zeros.
fn trim(v: f64) -> String {
    let t = format!("{v:.3}");
    t.trim_end_matches('0').trim_end_matches('.').to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::report::{BackendResult, LoadPoint};
    use crate::bench::stats::Percentiles;

    #[test]
    fn the_plot_has_a_line_per_backend_and_percentile() {
        let point = |q: f64, l: f64| LoadPoint {
            offered_qps: q,
            achieved_qps: q,
            passed: l < 12.0,
            latency_s: Percentiles { n: 3, mean: Some(l), p50: Some(l), p90: Some(l * 1.5), p99: Some(l * 2.0) },
        };
        let backend = |name: &str| BackendResult {
            backend: name.into(),
            device: "d".into(),
            engine: "e".into(),
            summaries: vec![],
            max_qps: Some(1.0),
            load_points: vec![point(2.0, 8.0), point(1.0, 2.0)],
        };
        let r = Report {
            lumen: "0".into(),
            model: "synthetic <tiny>".into(),
            dataset: "d".into(),
            samples: 3,
            max_new_tokens: 4,
            seed: 0,
            max_seqs: 1,
            latency_bound_s: 12.0,
            backends: vec![backend("cpu"), backend("wgpu")],
        };
        let svg = latency_svg(&r);
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
        assert_eq!(svg.matches("<polyline").count(), 6);
        assert!(svg.contains("synthetic &lt;tiny&gt;") && svg.contains("p99 bound 12 s"));
        assert_eq!((nice(0.7), nice(1.0), nice(13.0), nice(0.0)), (1.0, 1.0, 20.0, 1.0));
    }
}
