//! A run's report as one self-contained HTML page: inline CSS and SVG, no script, no network
//! (its Content-Security-Policy forbids both). The page is a handlebars template, which
//! HTML-escapes every value taken from the journal.

use serde::Serialize;

use super::duration;
use super::run::{Chart, RunReport};

const TEMPLATE: &str = include_str!("report.html.hbs");

/// The drawing area: the width of every SVG, and the left margin for labels.
const WIDTH: f64 = 960.0;
const LEFT: f64 = 190.0;
const RIGHT: f64 = 20.0;
const ROW: f64 = 24.0;
const CHART_HEIGHT: f64 = 180.0;

#[derive(Serialize)]
struct Tick {
    at: String,
    label: String,
}

#[derive(Serialize)]
struct Rect {
    x: String,
    width: String,
    class: String,
    title: String,
}

#[derive(Serialize)]
struct Lane {
    y: String,
    text_y: String,
    label: String,
    bars: Vec<Rect>,
}

#[derive(Serialize)]
struct Line {
    name: String,
    class: String,
    points: String,
    legend_x: String,
}

#[derive(Serialize)]
struct Mark {
    x: String,
    class: String,
    title: String,
}

#[derive(Serialize)]
struct ChartView {
    title: String,
    step: String,
    unit: String,
    lines: Vec<Line>,
    marks: Vec<Mark>,
    y_ticks: Vec<Tick>,
    x_ticks: Vec<Tick>,
}

/// A step of `max` or less in 1, 2, 5 times a power of ten, giving about five ticks.
fn tick_step(max: f64) -> f64 {
    let raw = (max / 5.0).max(f64::MIN_POSITIVE);
    let power = 10f64.powf(raw.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|m| m * power)
        .find(|s| *s >= raw)
        .unwrap_or(10.0 * power)
}

fn ticks(max: f64) -> impl Iterator<Item = f64> {
    let step = tick_step(max);
    (0..)
        .map(move |i| f64::from(i) * step)
        .take_while(move |v| *v <= max + step * 1e-9)
}

fn number(v: f64) -> String {
    let text = format!("{v:.3}");
    text.trim_end_matches('0').trim_end_matches('.').to_string()
}

/// Positions on the time axis, `span` seconds wide.
struct Axis {
    span: f64,
}

impl Axis {
    fn x(&self, t: f64) -> f64 {
        LEFT + (t / self.span) * (WIDTH - LEFT - RIGHT)
    }

    fn ticks(&self) -> Vec<Tick> {
        ticks(self.span)
            .map(|t| Tick {
                at: format!("{:.1}", self.x(t)),
                label: format!("{}s", number(t)),
            })
            .collect()
    }
}

fn chart(chart: &Chart, axis: &Axis) -> ChartView {
    let top = chart
        .series
        .iter()
        .flat_map(|s| s.points.iter().map(|p| p.1))
        .fold(0.0f64, f64::max);
    let top = if top > 0.0 {
        let step = tick_step(top);
        (top / step).ceil() * step
    } else {
        1.0
    };
    let y = |v: f64| 10.0 + (1.0 - v / top) * (CHART_HEIGHT - 40.0);
    let lines = chart
        .series
        .iter()
        .enumerate()
        .map(|(i, s)| Line {
            name: s.name.to_string(),
            class: format!("series{i}"),
            points: s
                .points
                .iter()
                .map(|(t, v)| format!("{:.1},{:.1}", axis.x(*t), y(*v)))
                .collect::<Vec<_>>()
                .join(" "),
            legend_x: format!("{:.0}", LEFT + 10.0 + 130.0 * i as f64),
        })
        .collect();
    let marks = chart
        .marks
        .iter()
        .map(|(t, ok)| Mark {
            x: format!("{:.1}", axis.x(*t)),
            class: if *ok { "pass" } else { "fail" }.to_string(),
            title: format!(
                "t+{}s: {}",
                number(*t),
                if *ok { "healthy" } else { "unhealthy" }
            ),
        })
        .collect();
    // Marks alone (health probes without answer times) have no scale.
    let y_ticks = match chart.series.is_empty() {
        true => Vec::new(),
        false => ticks(top)
            .map(|v| Tick {
                at: format!("{:.1}", y(v)),
                label: number(v),
            })
            .collect(),
    };
    ChartView {
        title: chart.title.to_string(),
        step: chart.step.clone(),
        unit: chart.unit.to_string(),
        lines,
        marks,
        y_ticks,
        x_ticks: axis.ticks(),
    }
}

/// The page.
pub(super) fn run(report: &RunReport) -> String {
    let axis = Axis {
        span: report.span.max(0.001),
    };
    let lanes: Vec<Lane> = report
        .steps
        .iter()
        .enumerate()
        .map(|(i, s)| Lane {
            y: format!("{:.0}", 10.0 + ROW * i as f64),
            text_y: format!("{:.0}", 10.0 + ROW * i as f64 + 15.0),
            label: s.id.clone(),
            bars: s
                .bars
                .iter()
                .map(|b| {
                    let x = axis.x(b.start);
                    Rect {
                        x: format!("{x:.1}"),
                        width: format!("{:.1}", (axis.x(b.end) - x).max(2.0)),
                        class: format!(
                            "bar {}{}",
                            serde_json::to_value(b.outcome)
                                .expect("serializes")
                                .as_str()
                                .unwrap_or_default(),
                            if b.undo { " undo" } else { "" }
                        ),
                        title: format!(
                            "{}{}: {} (t+{}s to t+{}s)",
                            s.id,
                            if b.undo { " rollback" } else { "" },
                            b.outcome.as_str(),
                            number(b.start),
                            number(b.end)
                        ),
                    }
                })
                .collect(),
        })
        .collect();
    let timeline_height = 10.0 + ROW * report.steps.len() as f64;
    let steps: Vec<_> = report
        .steps
        .iter()
        .map(|s| {
            serde_json::json!({
                "id": s.id, "kind": s.kind, "outcome": s.outcome,
                "class": s.outcome.replace(' ', "-"),
                "duration": duration(s.duration_ms), "note": s.note,
            })
        })
        .collect();
    let data = serde_json::json!({
        "id": report.id,
        "playbook": report.playbook,
        "phase": report.phase,
        "status": report.status,
        "status_class": report.status.replace(' ', "-"),
        "span": duration((report.span * 1000.0) as u64),
        "width": WIDTH,
        "left": LEFT,
        "right_edge": WIDTH - RIGHT,
        "timeline_height": timeline_height,
        "axis_y": timeline_height + 14.0,
        "timeline_svg_height": timeline_height + 24.0,
        "chart_height": CHART_HEIGHT,
        "chart_axis_y": CHART_HEIGHT - 30.0,
        "chart_label_y": CHART_HEIGHT - 14.0,
        "mark_y": CHART_HEIGHT - 38.0,
        "lanes": lanes,
        "x_ticks": axis.ticks(),
        "steps": steps,
        "charts": report.charts.iter().map(|c| chart(c, &axis)).collect::<Vec<_>>(),
        "checks": report.checks.iter().map(|c| serde_json::json!({
            "step": c.step, "name": c.name, "value": c.value, "threshold": c.threshold,
            "verdict": c.verdict,
        })).collect::<Vec<_>>(),
        "figures": report.figures.iter().map(|(step, lines)| serde_json::json!({
            "step": step,
            "lines": lines.iter().map(|(k, v)| serde_json::json!({"name": k, "value": v})).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
        "warnings": report.warnings,
        "rollback": report.rollback.iter().map(|(step, ok, summary)| serde_json::json!({
            "step": step, "ok": ok, "summary": summary,
        })).collect::<Vec<_>>(),
    });
    let mut engine = handlebars::Handlebars::new();
    engine.set_strict_mode(true);
    engine
        .render_template(TEMPLATE, &data)
        .expect("the report template renders")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_are_round_and_cover_the_span() {
        assert_eq!(ticks(9.3).collect::<Vec<_>>(), [0.0, 2.0, 4.0, 6.0, 8.0]);
        assert_eq!(tick_step(0.4), 0.1);
        assert_eq!(tick_step(170.0), 50.0);
        assert_eq!(number(2.50), "2.5");
        assert_eq!(number(3.0), "3");
    }
}
