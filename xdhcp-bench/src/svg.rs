//! Plots of a run, drawn with `plotters` into SVG: rate over time, latency over time, and the
//! latency distribution of each exchange in the manner of HdrHistogram (latency against
//! percentile on a log scale of 1/(1−p), so the tail is readable).
//!
//! Only plotters' SVG backend is used: it writes text as SVG text elements, so drawing needs
//! no font files and no system libraries. Plots are drawn once, after a run: never on the
//! packet path.

use super::gen::{RunOutcome, Sample};
use plotters::coord::ranged1d::{AsRangedCoord, ValueFormatter};
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use std::io;
use std::ops::Range;
use std::path::Path;

const SIZE: (u32, u32) = (860, 440);
/// Room right of the plot for the legend.
const LEGEND_WIDTH: u32 = 170;
const COLORS: [RGBColor; 6] = [
    RGBColor(0x1f, 0x77, 0xb4),
    RGBColor(0xd6, 0x27, 0x28),
    RGBColor(0x2c, 0xa0, 0x2c),
    RGBColor(0xff, 0x7f, 0x0e),
    RGBColor(0x94, 0x67, 0xbd),
    RGBColor(0x8c, 0x56, 0x4b),
];

type DrawResult = Result<(), DrawingAreaErrorKind<<SVGBackend<'static> as DrawingBackend>::ErrorType>>;

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
    /// x is log10(1/(1−p)) for a percentile p, labelled as the percentile (0%, 90%, 99% ...).
    pub x_percentile: bool,
    pub y_log: bool,
}

/// A round axis label: 1500 → "1.5k", 2000000 → "2M".
fn number(v: f64) -> String {
    if v.abs() >= 1e6 {
        format!("{}M", round3(v / 1e6))
    } else if v.abs() >= 1e3 {
        format!("{}k", round3(v / 1e3))
    } else {
        format!("{}", round3(v))
    }
}

fn round3(v: f64) -> f64 {
    (v * 1000.0).round() / 1000.0
}

/// The percentile p for x = log10(1/(1−p)): 0 → "0%", 1 → "90%", 3 → "99.9%".
fn percentile(x: f64) -> String {
    let p = 100.0 * (1.0 - 10f64.powf(-x));
    let decimals = (x.ceil() as usize).saturating_sub(2);
    format!("{p:.decimals$}%")
}

impl Chart {
    /// The chart as an SVG document.
    pub fn render(&self) -> io::Result<String> {
        let mut svg = String::new();
        {
            let root = SVGBackend::with_string(&mut svg, SIZE).into_drawing_area();
            let (x, y) = self.ranges();
            let drawn = if self.y_log { self.draw(&root, x, y.log_scale()) } else { self.draw(&root, x, y) };
            drawn.and_then(|()| root.present()).map_err(|e| io::Error::other(e.to_string()))?;
        }
        Ok(svg)
    }

    /// The x and y ranges that hold every point: y from 0 (linear) or from the power of ten
    /// below the smallest positive value (logarithmic).
    fn ranges(&self) -> (Range<f64>, Range<f64>) {
        let pts = || self.lines.iter().flat_map(|l| l.points.iter().copied());
        let (mut x0, mut x1) = pts().fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), (x, _)| (a.min(x), b.max(x)));
        if !x0.is_finite() {
            (x0, x1) = (0.0, 1.0);
        }
        if self.x_percentile {
            // Whole decades of percentiles, at least up to 90%.
            (x0, x1) = (0.0, x1.ceil().max(1.0));
        }
        if x1 <= x0 {
            x1 = x0 + 1.0;
        }
        let y_max = pts().map(|(_, y)| y).fold(0.0, f64::max);
        if !self.y_log {
            return (x0..x1, 0.0..if y_max > 0.0 { y_max * 1.05 } else { 1.0 });
        }
        let y_min = pts().map(|(_, y)| y).filter(|&y| y > 0.0).fold(f64::INFINITY, f64::min);
        let lo = if y_min.is_finite() { 10f64.powf(y_min.log10().floor()) } else { 1.0 };
        let hi = if y_max > 0.0 { 10f64.powf(y_max.log10().ceil()) } else { 1.0 };
        (x0..x1, lo..hi.max(lo * 10.0))
    }

    fn draw<Y>(&self, root: &DrawingArea<SVGBackend<'_>, Shift>, x: Range<f64>, y: Y) -> DrawResult
    where
        Y: AsRangedCoord<Value = f64>,
        Y::CoordDescType: ValueFormatter<f64>,
    {
        root.fill(&WHITE)?;
        let (plot, legend) = root.split_horizontally(SIZE.0 - LEGEND_WIDTH);
        let mut chart = ChartBuilder::on(&plot)
            .caption(&self.title, ("sans-serif", 16))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(64)
            .build_cartesian_2d(x.clone(), y)?;
        let y_label = |v: &f64| number(*v);
        let x_label = |v: &f64| if self.x_percentile { percentile(*v) } else { number(*v) };
        let mut mesh = chart.configure_mesh();
        mesh.x_desc(&self.x_label)
            .y_desc(&self.y_label)
            .x_label_formatter(&x_label)
            .y_label_formatter(&y_label)
            .bold_line_style(BLACK.mix(0.12))
            .light_line_style(TRANSPARENT);
        if self.x_percentile {
            // One label per decade: 0%, 90%, 99% ...
            mesh.x_labels(x.end as usize + 1);
        }
        mesh.draw()?;
        let y_bottom = chart.y_range().start;
        for (i, line) in self.lines.iter().enumerate() {
            // A log axis cannot show 0: such points sit on the axis.
            let points = line.points.iter().map(|&(x, y)| (x, if self.y_log { y.max(y_bottom) } else { y }));
            chart.draw_series(LineSeries::new(points, color(i).stroke_width(2)))?;
        }
        let top = chart.plotting_area().get_base_pixel().1 - root.get_base_pixel().1;
        self.draw_legend(&legend, top)
    }

    /// The lines' names beside the plot, from `top` down, each after a stroke of its colour.
    fn draw_legend(&self, area: &DrawingArea<SVGBackend<'_>, Shift>, top: i32) -> DrawResult {
        for (i, line) in self.lines.iter().enumerate() {
            let y = top + 10 + 20 * i as i32;
            area.draw(&PathElement::new([(14, y), (36, y)], color(i).stroke_width(3)))?;
            let style = TextStyle::from(("sans-serif", 13).into_font()).pos(Pos::new(HPos::Left, VPos::Center));
            area.draw(&Text::new(line.name.as_str(), (42, y), style))?;
        }
        Ok(())
    }
}

fn color(i: usize) -> RGBColor {
    COLORS[i % COLORS.len()]
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
        x_percentile: false,
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
        x_percentile: false,
        y_log: true,
    }
}

/// Latency against percentile, x = log10(1/(1−p)), per exchange.
pub fn latency_distribution_chart(title: &str, o: &RunOutcome) -> Chart {
    let lines = o
        .exchanges
        .iter()
        .filter(|(_, st)| st.latency.count() > 0)
        .map(|(k, st)| {
            let h = &st.latency;
            // Beyond 1/count the percentile says nothing more.
            let xmax = (h.count() as f64).log10().max(1.0);
            let steps = (xmax / 0.02) as usize;
            let points = (0..=steps)
                .filter_map(|i| {
                    let x = i as f64 * 0.02;
                    Some((x, h.quantile(1.0 - 10f64.powf(-x))? as f64))
                })
                .collect();
            Line { name: k.name().to_string(), points }
        })
        .collect();
    Chart {
        title: format!("{title}: latency distribution"),
        x_label: "percentile".into(),
        y_label: "latency (µs)".into(),
        lines,
        x_percentile: true,
        y_log: true,
    }
}

/// Writes `rate.svg`, `latency.svg` and `latency-time.svg` into `dir` (created if needed).
pub fn write_plots(dir: &Path, title: &str, o: &RunOutcome) -> io::Result<()> {
    std::fs::create_dir_all(dir)?;
    std::fs::write(dir.join("rate.svg"), rate_chart(title, &o.series).render()?)?;
    std::fs::write(dir.join("latency.svg"), latency_distribution_chart(title, o).render()?)?;
    std::fs::write(dir.join("latency-time.svg"), latency_time_chart(title, &o.series).render()?)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_read_as_numbers_and_percentiles() {
        assert_eq!(
            (number(0.0), number(250.0), number(1500.0), number(2e6)),
            ("0".into(), "250".into(), "1.5k".into(), "2M".into())
        );
        assert_eq!(
            (percentile(0.0), percentile(1.0), percentile(2.0), percentile(3.0)),
            ("0%".into(), "90%".into(), "99%".into(), "99.9%".into())
        );
    }

    #[test]
    fn charts_render_as_closed_svg_with_escaped_text() {
        let c = Chart {
            title: "a <b>".into(),
            x_label: "x".into(),
            y_label: "y".into(),
            lines: vec![Line { name: "l".into(), points: vec![(0.0, 0.0), (1.0, 100.0)] }],
            x_percentile: false,
            y_log: true,
        };
        let s = c.render().unwrap();
        assert!(s.starts_with("<svg") && s.trim_end().ends_with("</svg>"), "{s}");
        assert!(s.contains("a &lt;b&gt;"));
        assert!(s.contains("<polyline"));
        // Empty charts render too, on either axis.
        for (y_log, x_percentile) in [(false, false), (true, true)] {
            let empty = Chart { lines: vec![], y_log, x_percentile, ..c.clone() };
            assert!(empty.render().unwrap().trim_end().ends_with("</svg>"));
        }
    }
}
