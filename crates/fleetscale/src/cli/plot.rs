//! The plots of `fleetscale simulate --plot` and `fleetscale forecast
//! --plot`, drawn with plotters' SVG backend: a simulation's timeline with
//! one row per policy (capacity against offered load, and mean latency
//! against the SLO), with `--sweep` the SLO-versus-cost frontiers, and a
//! forecast backtest's holdout. Pure: a report in, SVG text out.

use plotters::coord::Shift;
use plotters::prelude::*;

use fleetscale_core::forecast::{BacktestPoint, BacktestReport};
use fleetscale_sim::Report;

/// Policy colours, in the order of the report's results.
const COLORS: [RGBColor; 8] = [
    RGBColor(0xd6, 0x27, 0x28),
    RGBColor(0x1f, 0x77, 0xb4),
    RGBColor(0x2c, 0xa0, 0x2c),
    RGBColor(0xff, 0x7f, 0x0e),
    RGBColor(0x94, 0x67, 0xbd),
    RGBColor(0x8c, 0x56, 0x4b),
    RGBColor(0xe3, 0x77, 0xc2),
    RGBColor(0x17, 0xbe, 0xcf),
];
/// Offered load.
const LOAD: RGBColor = RGBColor(0x99, 0x99, 0x99);
/// The SLO line (a colour no policy has).
pub const SLO: RGBColor = RGBColor(0x33, 0x33, 0x33);
/// Background of every plotting area (the rectangle the data are drawn in).
pub const AREA: RGBColor = RGBColor(0xfa, 0xfa, 0xfa);
/// Width of the timeline plot, px.
const WIDTH: u32 = 1200;
/// Height of one policy's row of the timeline plot, px.
const ROW: u32 = 230;
/// Height of the timeline plot's title, px.
const TITLE: u32 = 40;
/// Most points drawn per line (longer timelines are thinned evenly).
const MAX_POINTS: usize = 2000;

/// A drawing error, with what was being drawn.
fn err<E: std::fmt::Display>(what: &str) -> impl FnOnce(E) -> anyhow::Error + '_ {
    move |e| anyhow::anyhow!("drawing the plot ({what}): {e}")
}

/// `h:mm` of a time in hours.
fn hm(h: f64) -> String {
    let m = (h * 60.0).round() as i64;
    format!("{}:{:02}", m / 60, m % 60)
}

/// Every `k`-th of `v` (and its last), so that at most [`MAX_POINTS`] remain.
fn thin<T: Copy>(v: &[T]) -> Vec<T> {
    let k = v.len().div_ceil(MAX_POINTS).max(1);
    let mut out: Vec<T> = v.iter().step_by(k).copied().collect();
    if let Some(last) = v.last() {
        if (v.len() - 1) / k * k != v.len() - 1 {
            out.push(*last);
        }
    }
    out
}

/// The latency axis's range (log scale): the finite latencies of every
/// policy and the SLO, with some room, so the SLO line is always inside.
fn latency_range(r: &Report) -> (f64, f64) {
    let (lo, hi) = r
        .results
        .iter()
        .flat_map(|p| p.timeline.iter().map(|t| t.mean_latency_ms))
        .filter(|v| v.is_finite() && *v > 0.0)
        .chain(std::iter::once(r.slo_ms).filter(|v| v.is_finite() && *v > 0.0))
        .fold((f64::INFINITY, 0.0_f64), |(lo, hi), v| {
            (lo.min(v), hi.max(v))
        });
    if !lo.is_finite() || hi <= 0.0 {
        return (1.0, 100.0);
    }
    // Room above the highest line for the legend.
    ((lo / 2.0).max(0.01), hi * 6.0)
}

/// Tick values of a log axis over `lo..hi`: 1, 2 and 5 times the powers of
/// ten inside it, or every 1–9 multiple when those are fewer than three.
fn log_ticks(lo: f64, hi: f64) -> Vec<f64> {
    let ticks = |mults: &[f64]| -> Vec<f64> {
        let (k0, k1) = (lo.log10().floor() as i32, hi.log10().ceil() as i32);
        (k0..=k1)
            .flat_map(|k| mults.iter().map(move |m| m * 10f64.powi(k)))
            .filter(|v| (lo..=hi).contains(v))
            .collect()
    };
    let t = ticks(&[1.0, 2.0, 5.0]);
    if t.len() >= 3 {
        t
    } else {
        ticks(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0])
    }
}

/// The timeline plot: a title, then one row per policy, each with two
/// panels sharing the time axis (time since the trace's start, h:mm) —
/// ready capacity against offered load (instances), and mean latency per
/// bucket (ms, log scale) against the SLO. One row per policy keeps
/// policies that overlap apart; the axes' ranges are shared by all rows so
/// rows compare at a glance.
pub fn timeline_svg(r: &Report) -> anyhow::Result<String> {
    let n = r.results.len().max(1);
    let height = TITLE + ROW * n as u32;
    let mut buf = String::new();
    {
        let root = SVGBackend::with_string(&mut buf, (WIDTH, height)).into_drawing_area();
        root.fill(&WHITE).map_err(err("background"))?;
        let (title, body) = root.split_vertically(TITLE);
        title
            .titled(
                &format!(
                    "{}: ready capacity against offered load, and mean latency against the SLO ({} ms), per policy",
                    r.trace, r.slo_ms
                ),
                ("sans-serif", 16),
            )
            .map_err(err("title"))?;
        let t_max = (r.load.len().max(1) as f64 * r.bucket_s / 3600.0).max(1.0 / 60.0);
        let cap_max = r
            .results
            .iter()
            .flat_map(|p| p.timeline.iter().map(|t| t.capacity))
            .chain(r.load.iter().copied())
            .filter(|v| v.is_finite())
            .fold(1.0, f64::max)
            * 1.5; // room above the highest line for the legend
        let lat = latency_range(r);
        let rows = body.split_evenly((n, 2));
        for (k, p) in r.results.iter().enumerate() {
            let color = COLORS[k % COLORS.len()];
            let hours = |t: f64| t / 3600.0;
            let load: Vec<(f64, f64)> = r
                .load
                .iter()
                .enumerate()
                .map(|(i, v)| (hours(i as f64 * r.bucket_s), *v))
                .collect();
            let cap: Vec<(f64, f64)> = p
                .timeline
                .iter()
                .map(|t| (hours(t.t_s), t.capacity))
                .collect();
            capacity_panel(&rows[2 * k], &p.policy, color, t_max, cap_max, &load, &cap)?;
            let latency: Vec<(f64, f64)> = p
                .timeline
                .iter()
                .filter(|t| t.mean_latency_ms.is_finite() && t.mean_latency_ms > 0.0)
                .map(|t| (hours(t.t_s), t.mean_latency_ms))
                .collect();
            latency_panel(
                &rows[2 * k + 1],
                &p.policy,
                color,
                t_max,
                lat,
                r.slo_ms,
                &latency,
            )?;
        }
        root.present().map_err(err("output"))?;
    }
    Ok(buf)
}

/// The left panel of a policy's row: capacity and offered load, instances.
fn capacity_panel(
    area: &DrawingArea<SVGBackend<'_>, Shift>,
    policy: &str,
    color: RGBColor,
    t_max: f64,
    cap_max: f64,
    load: &[(f64, f64)],
    cap: &[(f64, f64)],
) -> anyhow::Result<()> {
    let mut c = ChartBuilder::on(area)
        .caption(format!("{policy}: ready capacity"), ("sans-serif", 14))
        .margin(8)
        .x_label_area_size(36)
        .y_label_area_size(56)
        .build_cartesian_2d(0.0..t_max, 0.0..cap_max)
        .map_err(err("capacity axes"))?;
    c.plotting_area()
        .fill(&AREA)
        .map_err(err("capacity area"))?;
    c.configure_mesh()
        .x_desc("time since the trace's start (h:mm)")
        .y_desc("instances")
        .x_labels(8)
        .y_labels(5)
        .x_label_formatter(&|h| hm(*h))
        .y_label_formatter(&|v| format!("{v:.0}"))
        .light_line_style(WHITE)
        .draw()
        .map_err(err("capacity mesh"))?;
    c.draw_series(LineSeries::new(thin(load), LOAD.stroke_width(1)))
        .map_err(err("offered load"))?
        .label("offered load (instances at 100%)")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], LOAD.stroke_width(2)));
    c.draw_series(LineSeries::new(thin(cap), color.stroke_width(2)))
        .map_err(err("capacity"))?
        .label(format!("{policy} ready capacity"))
        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2)));
    c.configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()
        .map_err(err("capacity legend"))?;
    Ok(())
}

/// The right panel of a policy's row: mean latency (log) and the SLO, ms.
fn latency_panel(
    area: &DrawingArea<SVGBackend<'_>, Shift>,
    policy: &str,
    color: RGBColor,
    t_max: f64,
    (lo, hi): (f64, f64),
    slo_ms: f64,
    latency: &[(f64, f64)],
) -> anyhow::Result<()> {
    let mut c = ChartBuilder::on(area)
        .caption(format!("{policy}: mean latency"), ("sans-serif", 14))
        .margin(8)
        .x_label_area_size(36)
        .y_label_area_size(64)
        .build_cartesian_2d(
            0.0..t_max,
            (lo..hi).log_scale().with_key_points(log_ticks(lo, hi)),
        )
        .map_err(err("latency axes"))?;
    c.plotting_area().fill(&AREA).map_err(err("latency area"))?;
    c.configure_mesh()
        .x_desc("time since the trace's start (h:mm)")
        .y_desc("ms (log scale)")
        .x_labels(8)
        .y_labels(6)
        .x_label_formatter(&|h| hm(*h))
        .y_label_formatter(&|v| {
            if *v >= 10.0 {
                format!("{v:.0}")
            } else {
                format!("{v:.2}")
            }
        })
        .light_line_style(WHITE)
        .draw()
        .map_err(err("latency mesh"))?;
    c.draw_series(LineSeries::new(thin(latency), color.stroke_width(1)))
        .map_err(err("latency"))?
        .label(format!("{policy} mean latency"))
        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2)));
    c.draw_series(DashedLineSeries::new(
        [(0.0, slo_ms), (t_max, slo_ms)],
        6,
        4,
        SLO.stroke_width(2),
    ))
    .map_err(err("SLO"))?
    .label(format!("SLO {slo_ms} ms"))
    .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], SLO.stroke_width(2)));
    c.configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()
        .map_err(err("latency legend"))?;
    Ok(())
}

/// The frontiers (`--sweep`): SLO attainment on x, instance-seconds on y,
/// one line per policy over its knob (its points marked), each policy's
/// default ringed; the x range starts a little below the lowest default
/// attainment (a knob that collapses would squash the rest).
pub fn frontier_svg(r: &Report) -> anyhow::Result<String> {
    let lowest_default = r
        .results
        .iter()
        .map(|p| p.slo_attainment)
        .filter(|a| a.is_finite())
        .fold(1.0, f64::min);
    let x0 = (lowest_default - 0.05).max(0.0);
    let pts: Vec<(f64, f64)> = r
        .frontiers
        .values()
        .flatten()
        .map(|p| (p.slo_attainment, p.instance_seconds))
        .chain(
            r.results
                .iter()
                .map(|p| (p.slo_attainment, p.instance_seconds)),
        )
        .filter(|(a, c)| a.is_finite() && c.is_finite() && *a >= x0)
        .collect();
    // Then from the lowest point shown, with a margin on both sides.
    let lowest = pts.iter().map(|p| p.0).fold(1.0, f64::min).max(x0);
    let x1 = pts.iter().map(|p| p.0).fold(lowest + 1e-4, f64::max);
    let pad = (x1 - lowest) * 0.04;
    let (x0, x1) = ((lowest - pad).max(x0), x1 + pad);
    let y1 = pts.iter().map(|p| p.1).fold(1.0, f64::max) * 1.08;
    let mut buf = String::new();
    {
        let root = SVGBackend::with_string(&mut buf, (1000, 620)).into_drawing_area();
        root.fill(&WHITE).map_err(err("background"))?;
        let mut c = ChartBuilder::on(&root)
            .caption(
                format!(
                    "{}: SLO attainment against instance-seconds per knob setting (rings: defaults)",
                    r.trace
                ),
                ("sans-serif", 16),
            )
            .margin(12)
            .x_label_area_size(44)
            .y_label_area_size(80)
            .build_cartesian_2d(x0..x1, 0.0..y1)
            .map_err(err("frontier axes"))?;
        c.plotting_area()
            .fill(&AREA)
            .map_err(err("frontier area"))?;
        c.configure_mesh()
            .x_desc(format!(
                "SLO attainment (share of requests within {} ms)",
                r.slo_ms
            ))
            .y_desc("instance-seconds")
            .x_labels(8)
            .y_labels(8)
            .x_label_formatter(&|a| format!("{a:.3}"))
            .y_label_formatter(&|v| format!("{v:.0}"))
            .light_line_style(WHITE)
            .draw()
            .map_err(err("frontier mesh"))?;
        for (k, (name, f)) in r.frontiers.iter().enumerate() {
            let color = COLORS[k % COLORS.len()];
            let mut f: Vec<(f64, f64)> = f
                .iter()
                .map(|p| (p.slo_attainment, p.instance_seconds))
                .filter(|(a, c)| a.is_finite() && c.is_finite() && *a >= x0)
                .collect();
            f.sort_by(|a, b| a.0.total_cmp(&b.0));
            c.draw_series(LineSeries::new(f.clone(), color.stroke_width(2)))
                .map_err(err("frontier"))?
                .label(name.as_str())
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
                });
            c.draw_series(f.iter().map(|p| Circle::new(*p, 3, color.filled())))
                .map_err(err("frontier points"))?;
            if let Some(d) = r.results.iter().find(|p| &p.policy == name) {
                if d.slo_attainment.is_finite() && d.slo_attainment >= x0 {
                    c.draw_series(std::iter::once(Circle::new(
                        (d.slo_attainment, d.instance_seconds),
                        8,
                        color.stroke_width(2),
                    )))
                    .map_err(err("default point"))?;
                }
            }
        }
        c.configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .draw()
            .map_err(err("frontier legend"))?;
        root.present().map_err(err("output"))?;
    }
    Ok(buf)
}

/// `YYYY-MM-DD HH:MM` (UTC) of a Unix time in ms (days to a civil date
/// by Howard Hinnant's algorithm).
fn utc(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let (days, sod) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}",
        sod / 3600,
        sod % 3600 / 60
    )
}

/// Time ticks over `t0..t1` (Unix ms): multiples of the smallest step
/// among 1 h, 3 h, 6 h, 12 h, 1 d, 2 d and 7 d that gives at most 8.
fn time_ticks(t0: i64, t1: i64) -> Vec<i64> {
    const H: i64 = 3_600_000;
    let step = [H, 3 * H, 6 * H, 12 * H, 24 * H, 48 * H, 168 * H]
        .into_iter()
        .find(|s| (t1 - t0) / s < 8)
        .unwrap_or(168 * H);
    let first = t0.div_euclid(step) * step + if t0.rem_euclid(step) > 0 { step } else { 0 };
    (0..)
        .map(|k| first + k * step)
        .take_while(|t| *t <= t1)
        .collect()
}

/// One series of a backtest point.
type Field = fn(&BacktestPoint) -> f64;

/// A forecast backtest's holdout: the actual series, the model's forecast
/// with its prediction interval shaded, and the seasonal-naive baseline,
/// over UTC time; the accuracy of both in the title.
pub fn forecast_svg(r: &BacktestReport, level: f64) -> anyhow::Result<String> {
    let pts = &r.points;
    let t0 = pts.first().map_or(0, |p| p.ts_ms);
    let t1 = pts.last().map_or(1, |p| p.ts_ms).max(t0 + 1);
    // The interval's upper bound can dwarf the series: it counts up to 3×
    // the forecast.
    let y1 = pts
        .iter()
        .map(|p| p.actual.max(p.upper.min(p.forecast * 3.0)).max(p.baseline))
        .filter(|v| v.is_finite())
        .fold(1.0_f64, f64::max)
        * 1.25;
    let clamp = |v: f64| if v.is_finite() { v.clamp(0.0, y1) } else { 0.0 };
    let mut buf = String::new();
    {
        let root = SVGBackend::with_string(&mut buf, (1200, 460)).into_drawing_area();
        root.fill(&WHITE).map_err(err("background"))?;
        let mut c = ChartBuilder::on(&root)
            .caption(
                format!(
                    "forecast backtest over the holdout: {} MAPE {:.1}%, seasonal naive {:.1}%",
                    r.model.name(),
                    r.ours.mape * 100.0,
                    r.baseline.mape * 100.0
                ),
                ("sans-serif", 16),
            )
            .margin(12)
            .x_label_area_size(44)
            .y_label_area_size(70)
            .build_cartesian_2d((t0..t1).with_key_points(time_ticks(t0, t1)), 0.0..y1)
            .map_err(err("forecast axes"))?;
        c.plotting_area()
            .fill(&AREA)
            .map_err(err("forecast area"))?;
        c.configure_mesh()
            .x_desc("time (UTC)")
            .y_desc("value per interval (the trace's unit)")
            .x_labels(7)
            .y_labels(6)
            .x_label_formatter(&|t| utc(*t))
            .y_label_formatter(&|v| format!("{v:.0}"))
            .light_line_style(WHITE)
            .draw()
            .map_err(err("forecast mesh"))?;
        let band_color = RGBColor(0x9e, 0xca, 0xe1);
        let band: Vec<(i64, f64)> = pts
            .iter()
            .map(|p| (p.ts_ms, clamp(p.upper)))
            .chain(pts.iter().rev().map(|p| (p.ts_ms, clamp(p.lower))))
            .collect();
        c.draw_series(std::iter::once(Polygon::new(
            band,
            band_color.mix(0.6).filled(),
        )))
        .map_err(err("interval"))?
        .label(format!("{:.0}% prediction interval", level * 100.0))
        .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 20, y + 5)], band_color.filled()));
        let series: [(&str, RGBColor, Field); 3] = [
            ("seasonal naive", LOAD, |p| p.baseline),
            ("actual", BLACK, |p| p.actual),
            ("forecast", COLORS[0], |p| p.forecast),
        ];
        for (label, color, f) in series {
            let line: Vec<(i64, f64)> = pts.iter().map(|p| (p.ts_ms, clamp(f(p)))).collect();
            c.draw_series(LineSeries::new(thin(&line), color.stroke_width(1)))
                .map_err(err(label))?
                .label(if label == "forecast" {
                    format!("forecast ({})", r.model.name())
                } else {
                    label.to_string()
                })
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
                });
        }
        c.configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .draw()
            .map_err(err("forecast legend"))?;
        root.present().map_err(err("output"))?;
    }
    Ok(buf)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use fleetscale_sim::{FrontierPoint, PolicyResult, Report, TimelinePoint};

    use super::*;

    /// The elements of an SVG document: tag name and attributes (text
    /// content is left out; `<text>`'s is in the `text` attribute).
    fn elements(svg: &str) -> Vec<(String, BTreeMap<String, String>)> {
        let mut out = Vec::new();
        let mut rest = svg;
        while let Some(i) = rest.find('<') {
            rest = &rest[i + 1..];
            let end = rest.find('>').expect("closed tag");
            let tag = &rest[..end];
            let after = &rest[end + 1..];
            rest = after;
            if tag.starts_with('/') || tag.starts_with('?') || tag.starts_with('!') {
                continue;
            }
            let name: String = tag.chars().take_while(|c| c.is_alphanumeric()).collect();
            let mut attrs = BTreeMap::new();
            let mut a = &tag[name.len()..];
            while let Some(eq) = a.find("=\"") {
                let key = a[..eq].trim().to_string();
                let v = &a[eq + 2..];
                let close = v.find('"').expect("closed attribute");
                attrs.insert(key, v[..close].to_string());
                a = &v[close + 1..];
            }
            if name == "text" {
                let content = after.split("</text>").next().unwrap_or_default();
                let content = content
                    .replace("&apos;", "'")
                    .replace("&quot;", "\"")
                    .replace("&lt;", "<")
                    .replace("&gt;", ">")
                    .replace("&amp;", "&");
                attrs.insert("text".into(), content.trim().to_string());
            }
            out.push((name, attrs));
        }
        out
    }

    fn num(a: &BTreeMap<String, String>, k: &str) -> f64 {
        a[k].parse().unwrap_or_else(|_| panic!("{k}={}", a[k]))
    }

    /// The points an element draws (lines, polylines).
    fn points(name: &str, a: &BTreeMap<String, String>) -> Vec<(f64, f64)> {
        match name {
            "line" => vec![(num(a, "x1"), num(a, "y1")), (num(a, "x2"), num(a, "y2"))],
            "polyline" => a["points"]
                .split_whitespace()
                .map(|p| {
                    let (x, y) = p.split_once(',').unwrap();
                    (x.parse().unwrap(), y.parse().unwrap())
                })
                .collect(),
            _ => Vec::new(),
        }
    }

    fn hex(c: RGBColor) -> String {
        format!("#{:02X}{:02X}{:02X}", c.0, c.1, c.2)
    }

    /// Three policies over two hours whose latencies (50–200 ms) are far
    /// below the SLO (20 s), and whose capacities overlap.
    fn report() -> Report {
        let buckets = 120;
        let result = |name: &str, cap: f64| PolicyResult {
            policy: name.into(),
            requests: 1000,
            slo_attainment: 0.99,
            p50_latency_ms: 80.0,
            p95_latency_ms: 150.0,
            p99_latency_ms: 190.0,
            instance_seconds: cap * 7200.0,
            lower_bound_instance_seconds: 3.0 * 7200.0,
            overprovision_instance_seconds: (cap - 3.0) * 7200.0,
            mean_utilization: 0.6,
            scaling_actions: 4,
            dropped: 0,
            timeline: (0..buckets)
                .map(|i| TimelinePoint {
                    t_s: i as f64 * 60.0,
                    capacity: cap,
                    mean_latency_ms: if i == 7 {
                        f64::NAN
                    } else {
                        50.0 + 150.0 * (i % 10) as f64 / 10.0
                    },
                    missed: 0,
                })
                .collect(),
        };
        Report {
            trace: "synthetic".into(),
            format: "rates".into(),
            horizon_s: 7200.0,
            slo_ms: 20_000.0,
            cold_start_s: 60.0,
            tick_s: 15.0,
            seed: 1,
            slots_per_instance: 4,
            peak_instances: 5,
            load: (0..buckets).map(|i| 2.0 + (i % 30) as f64 / 10.0).collect(),
            bucket_s: 60.0,
            results: vec![
                result("fleetscale", 5.0),
                result("hpa", 5.0),
                result("static", 5.0),
            ],
            frontiers: BTreeMap::new(),
            equal_attainment: Vec::new(),
        }
    }

    fn texts(svg: &str) -> Vec<String> {
        elements(svg)
            .into_iter()
            .filter(|(n, _)| n == "text")
            .map(|(_, a)| a["text"].clone())
            .collect()
    }

    #[test]
    fn timeline_has_axes_time_ticks_and_legends_one_row_per_policy() {
        let svg = timeline_svg(&report()).unwrap();
        assert!(svg.starts_with("<svg"), "{}", &svg[..80.min(svg.len())]);
        let t = texts(&svg);
        for want in [
            "time since the trace's start (h:mm)",
            "instances",
            "ms (log scale)",
            "offered load (instances at 100%)",
            "SLO 20000 ms",
            "fleetscale: ready capacity",
            "hpa: mean latency",
            "static ready capacity",
            "0:00",
            "1:00",
        ] {
            assert!(t.iter().any(|x| x == want), "no text {want:?} in {t:?}");
        }
        // Two panels (two plotting areas) per policy: overlapping policies
        // are drawn apart.
        let areas = elements(&svg)
            .into_iter()
            .filter(|(n, a)| n == "rect" && a.get("fill") == Some(&hex(AREA)))
            .count();
        assert_eq!(areas, 6);
    }

    #[test]
    fn slo_line_is_inside_a_plotting_area_even_far_above_every_latency() {
        for slo_ms in [20_000.0, 1.0, 120.0] {
            let r = Report { slo_ms, ..report() };
            let svg = timeline_svg(&r).unwrap();
            let els = elements(&svg);
            let areas: Vec<(f64, f64, f64, f64)> = els
                .iter()
                .filter(|(n, a)| n == "rect" && a.get("fill") == Some(&hex(AREA)))
                .map(|(_, a)| {
                    let (x, y) = (num(a, "x"), num(a, "y"));
                    (x, y, x + num(a, "width"), y + num(a, "height"))
                })
                .collect();
            let slo: Vec<Vec<(f64, f64)>> = els
                .iter()
                .filter(|(_, a)| a.get("stroke") == Some(&hex(SLO)))
                .map(|(n, a)| points(n, a))
                .collect();
            // One dashed line of several dashes per latency panel.
            assert!(slo.len() > 3 * 3, "SLO {slo_ms}: {} dashes", slo.len());
            for seg in slo {
                assert!(
                    areas.iter().any(|&(x0, y0, x1, y1)| seg
                        .iter()
                        .all(|&(x, y)| (x0..=x1).contains(&x) && (y0..=y1).contains(&y))),
                    "SLO {slo_ms}: {seg:?} outside every plotting area {areas:?}"
                );
            }
        }
    }

    #[test]
    fn frontier_has_axes_legend_and_rings_the_defaults() {
        let mut r = report();
        let knob = |k: f64, a: f64, c: f64| FrontierPoint {
            knob: k,
            slo_attainment: a,
            instance_seconds: c,
        };
        r.frontiers.insert(
            "fleetscale".into(),
            vec![knob(0.9, 0.95, 20_000.0), knob(0.99, 0.99, 36_000.0)],
        );
        r.frontiers.insert(
            "hpa".into(),
            vec![knob(0.5, 0.99, 50_000.0), knob(0.9, 0.96, 30_000.0)],
        );
        let svg = frontier_svg(&r).unwrap();
        let t = texts(&svg);
        for want in [
            "SLO attainment (share of requests within 20000 ms)",
            "instance-seconds",
            "fleetscale",
            "hpa",
        ] {
            assert!(t.iter().any(|x| x == want), "no text {want:?} in {t:?}");
        }
        let rings = elements(&svg)
            .into_iter()
            .filter(|(n, a)| n == "circle" && num(a, "r") == 8.0)
            .count();
        assert_eq!(rings, 2, "one ring per policy with a frontier");
    }

    #[test]
    fn log_ticks_are_inside_the_range_and_at_least_three() {
        assert_eq!(
            log_ticks(3.0, 700.0),
            vec![5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0]
        );
        let t = log_ticks(55_000.0, 2_160_000.0);
        assert_eq!(
            t,
            vec![100_000.0, 200_000.0, 500_000.0, 1_000_000.0, 2_000_000.0]
        );
        let t = log_ticks(3.0, 9.5);
        assert_eq!(t, vec![3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0]);
    }

    #[test]
    fn time_ticks_fall_on_round_hours_and_days() {
        const H: i64 = 3_600_000;
        let t0 = 1_709_210_400_000; // 2024-02-29 12:40
        let t = time_ticks(t0, t0 + 7 * 24 * H);
        assert_eq!(t.len(), 7, "{t:?}");
        assert!(t.iter().all(|x| utc(*x).ends_with("00:00")), "{t:?}");
        let t = time_ticks(t0, t0 + 5 * H);
        assert_eq!(utc(t[0]), "2024-02-29 13:00");
        assert_eq!(t.len(), 5);
    }

    #[test]
    fn utc_labels_are_civil_dates() {
        assert_eq!(utc(0), "1970-01-01 00:00");
        assert_eq!(utc(1_709_210_400_000), "2024-02-29 12:40");
        assert_eq!(utc(-60_000), "1969-12-31 23:59");
    }

    #[test]
    fn thinning_keeps_the_ends_and_bounds_the_points() {
        let v: Vec<usize> = (0..10_001).collect();
        let t = thin(&v);
        assert!(t.len() <= MAX_POINTS + 1, "{}", t.len());
        assert_eq!((t[0], *t.last().unwrap()), (0, 10_000));
        assert_eq!(thin(&[1, 2, 3]), vec![1, 2, 3]);
    }
}
