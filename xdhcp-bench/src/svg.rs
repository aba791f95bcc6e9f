//! Plots of a run as hand-written SVG (no plotting crate): rate over time, latency over time,
//! and the latency distribution of each exchange in the manner of HdrHistogram (latency
//! against percentile on a log scale of 1/(1−p), so the tail is readable).

use super::gen::{RunOutcome, Sample};
use std::fmt::Write as _;
use std::io;
use std::path::Path;

const W: f64 = 860.0;
const H: f64 = 440.0;
const LEFT: f64 = 80.0;
const RIGHT: f64 = 200.0;
const TOP: f64 = 40.0;
const BOTTOM: f64 = 55.0;
const COLORS: [&str; 6] = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b"];

/// Maps a data value to a y coordinate.
type Scale = Box<dyn Fn(f64) -> f64>;

/// One line of a chart: name and points.
#[derive(Debug, Clone)]
pub struct Line {
    pub name: String,
    pub points: Vec<(f64, f64)>,
}

/// A line chart; the y axis is linear from 0 or logarithmic.
#[derive(Debug, Clone)]
pub struct Chart {
    pub title: String,
    pub x_label: String,
    pub y_label: String,
    pub lines: Vec<Line>,
    /// Tick positions and labels for x; evenly spaced numbers when `None`.
    pub x_ticks: Option<Vec<(f64, String)>>,
    pub y_log: bool,
}

/// About six round tick values (1, 2, 5 × 10^k steps) from 0 to at least `max`.
fn nice_ticks(max: f64) -> Vec<f64> {
    let max = if max > 0.0 { max } else { 1.0 };
    let raw = max / 6.0;
    let mag = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0].iter().map(|m| m * mag).find(|s| max / s <= 6.0).unwrap_or(10.0 * mag);
    (0..=((max / step).ceil() as usize)).map(|i| i as f64 * step).collect()
}

fn label(v: f64) -> String {
    if v >= 1e6 {
        format!("{}M", v / 1e6)
    } else if v >= 1e3 {
        format!("{}k", v / 1e3)
    } else if v.fract() == 0.0 {
        format!("{v:.0}")
    } else {
        format!("{v}")
    }
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

impl Chart {
    pub fn render(&self) -> String {
        let pts = self.lines.iter().flat_map(|l| l.points.iter());
        let (mut x0, mut x1, mut y1) = (f64::INFINITY, f64::NEG_INFINITY, 0f64);
        let mut y_min_pos = f64::INFINITY;
        for &(x, y) in pts {
            x0 = x0.min(x);
            x1 = x1.max(x);
            y1 = y1.max(y);
            if y > 0.0 {
                y_min_pos = y_min_pos.min(y);
            }
        }
        if let Some(t) = &self.x_ticks {
            for (x, _) in t {
                x0 = x0.min(*x);
                x1 = x1.max(*x);
            }
        }
        if !x0.is_finite() {
            (x0, x1) = (0.0, 1.0);
        }
        if x1 <= x0 {
            x1 = x0 + 1.0;
        }
        let pw = W - LEFT - RIGHT;
        let ph = H - TOP - BOTTOM;
        let sx = |x: f64| LEFT + (x - x0) / (x1 - x0) * pw;
        // y scale
        let (y_ticks, ymap): (Vec<(f64, String)>, Scale) = if self.y_log {
            let lo = if y_min_pos.is_finite() { y_min_pos.log10().floor() } else { 0.0 };
            let hi = if y1 > 0.0 { y1.log10().ceil().max(lo + 1.0) } else { lo + 1.0 };
            let ticks = (lo as i32..=hi as i32).map(|e| (10f64.powi(e), label(10f64.powi(e)))).collect();
            (ticks, Box::new(move |y: f64| TOP + ph - (y.max(10f64.powf(lo)).log10() - lo) / (hi - lo) * ph))
        } else {
            let t = nice_ticks(y1);
            let top = *t.last().unwrap_or(&1.0);
            let top = if top > 0.0 { top } else { 1.0 };
            (t.iter().map(|&v| (v, label(v))).collect(), Box::new(move |y: f64| TOP + ph - y / top * ph))
        };
        let x_ticks = match &self.x_ticks {
            Some(t) => t.clone(),
            None => nice_ticks(x1).into_iter().filter(|&v| v >= x0 && v <= x1).map(|v| (v, label(v))).collect(),
        };
        let mut s = String::new();
        let _ = writeln!(
            s,
            r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" font-family="sans-serif" font-size="12">"#
        );
        let _ = writeln!(s, r#"<rect width="{W}" height="{H}" fill="white"/>"#);
        let _ = writeln!(
            s,
            r#"<text x="{}" y="22" font-size="15" text-anchor="middle">{}</text>"#,
            LEFT + pw / 2.0,
            escape(&self.title)
        );
        for (v, l) in &y_ticks {
            let y = ymap(*v);
            let _ = writeln!(
                s,
                r##"<line x1="{LEFT}" x2="{}" y1="{y:.1}" y2="{y:.1}" stroke="#ddd"/><text x="{}" y="{:.1}" text-anchor="end">{l}</text>"##,
                LEFT + pw,
                LEFT - 6.0,
                y + 4.0
            );
        }
        for (v, l) in &x_ticks {
            let x = sx(*v);
            let _ = writeln!(
                s,
                r##"<line x1="{x:.1}" x2="{x:.1}" y1="{TOP}" y2="{}" stroke="#eee"/><text x="{x:.1}" y="{}" text-anchor="middle">{}</text>"##,
                TOP + ph,
                TOP + ph + 16.0,
                escape(l)
            );
        }
        let _ = writeln!(s, r##"<rect x="{LEFT}" y="{TOP}" width="{pw}" height="{ph}" fill="none" stroke="#444"/>"##);
        let _ = writeln!(
            s,
            r#"<text x="{}" y="{}" text-anchor="middle">{}</text>"#,
            LEFT + pw / 2.0,
            H - 12.0,
            escape(&self.x_label)
        );
        let _ = writeln!(
            s,
            r#"<text x="18" y="{}" text-anchor="middle" transform="rotate(-90 18 {})">{}</text>"#,
            TOP + ph / 2.0,
            TOP + ph / 2.0,
            escape(&self.y_label)
        );
        for (i, line) in self.lines.iter().enumerate() {
            let color = COLORS[i % COLORS.len()];
            let mut path = String::new();
            for &(x, y) in &line.points {
                let _ = write!(path, "{:.1},{:.1} ", sx(x), ymap(y));
            }
            let _ = writeln!(
                s,
                r#"<polyline fill="none" stroke="{color}" stroke-width="1.8" points="{}"/>"#,
                path.trim_end()
            );
            let ly = TOP + 10.0 + i as f64 * 20.0;
            let lx = LEFT + pw + 14.0;
            let _ = writeln!(
                s,
                r#"<line x1="{lx}" x2="{}" y1="{ly}" y2="{ly}" stroke="{color}" stroke-width="3"/><text x="{}" y="{}">{}</text>"#,
                lx + 22.0,
                lx + 28.0,
                ly + 4.0,
                escape(&line.name)
            );
        }
        s.push_str("</svg>\n");
        s
    }
}

fn series_line(name: &str, series: &[Sample], f: impl Fn(&Sample) -> Option<f64>) -> Line {
    Line { name: name.to_string(), points: series.iter().filter_map(|s| Some((s.t, f(s)?))).collect() }
}

/// Exchanges per second over time.
pub fn rate_chart(title: &str, series: &[Sample]) -> Chart {
    Chart {
        title: format!("{title}: rates per second"),
        x_label: "time (s)".into(),
        y_label: "per second".into(),
        lines: vec![
            series_line("started", series, |s| Some(s.initiated as f64)),
            series_line("replies", series, |s| Some(s.received as f64)),
            series_line("completed", series, |s| Some(s.completed as f64)),
            series_line("drops", series, |s| Some(s.drops as f64)),
        ],
        x_ticks: None,
        y_log: false,
    }
}

/// Median and 99th percentile latency of each second.
pub fn latency_time_chart(title: &str, series: &[Sample]) -> Chart {
    Chart {
        title: format!("{title}: latency over time"),
        x_label: "time (s)".into(),
        y_label: "latency (µs)".into(),
        lines: vec![
            series_line("p50", series, |s| s.p50_us.map(f64::from)),
            series_line("p99", series, |s| s.p99_us.map(f64::from)),
        ],
        x_ticks: None,
        y_log: true,
    }
}

/// Latency against percentile, x = log10(1/(1−p)), per exchange.
pub fn latency_distribution_chart(title: &str, o: &RunOutcome) -> Chart {
    let mut lines = Vec::new();
    let mut top = 1.0f64;
    for (k, st) in &o.exchanges {
        let h = &st.latency;
        if h.count() == 0 {
            continue;
        }
        // Beyond 1/count the percentile says nothing more.
        let xmax = (h.count() as f64).log10().max(1.0);
        top = top.max(xmax);
        let mut pts = Vec::new();
        let mut x = 0.0;
        while x <= xmax + 1e-9 {
            let p = 1.0 - 10f64.powf(-x);
            if let Some(v) = h.quantile(p) {
                pts.push((x, v as f64));
            }
            x += 0.02;
        }
        lines.push(Line { name: k.name().to_string(), points: pts });
    }
    let labels = ["0%", "90%", "99%", "99.9%", "99.99%", "99.999%", "99.9999%", "99.99999%"];
    let x_ticks =
        (0..=(top.ceil() as usize).min(labels.len() - 1)).map(|i| (i as f64, labels[i].to_string())).collect();
    Chart {
        title: format!("{title}: latency distribution"),
        x_label: "percentile".into(),
        y_label: "latency (µs)".into(),
        lines,
        x_ticks: Some(x_ticks),
        y_log: true,
    }
}

/// Writes `rate.svg`, `latency.svg` and `latency-time.svg` into `dir` (created if needed).
pub fn write_plots(dir: &Path, title: &str, o: &RunOutcome) -> io::Result<()> {
    std::fs::create_dir_all(dir)?;
    std::fs::write(dir.join("rate.svg"), rate_chart(title, &o.series).render())?;
    std::fs::write(dir.join("latency.svg"), latency_distribution_chart(title, o).render())?;
    std::fs::write(dir.join("latency-time.svg"), latency_time_chart(title, &o.series).render())?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_cover_the_range_and_the_svg_is_closed() {
        let t = nice_ticks(47_000.0);
        assert!(*t.last().unwrap() >= 47_000.0 && t.len() <= 8, "{t:?}");
        let c = Chart {
            title: "a <b>".into(),
            x_label: "x".into(),
            y_label: "y".into(),
            lines: vec![Line { name: "l".into(), points: vec![(0.0, 1.0), (1.0, 100.0)] }],
            x_ticks: None,
            y_log: true,
        };
        let s = c.render();
        assert!(s.starts_with("<svg") && s.ends_with("</svg>\n"));
        assert!(s.contains("a &lt;b&gt;"));
        assert!(s.contains("<polyline"));
        // An empty chart renders too.
        let empty = Chart { lines: vec![], y_log: false, ..c };
        assert!(empty.render().contains("</svg>"));
    }
}
