//! The history chart of a read's page: inline SVG, one bar per billing period, the expected range drawn
//! over this period only, this read highlighted, estimates and meter changes marked. An outlier (a
//! 17,309-HCF mis-key among 12-HCF months) does not flatten the rest: the axis stops above the ordinary
//! bars and the expected range, the outlier's bar is broken at the top and labelled with its value.
//! No script.

use chrono::NaiveDate;
use maud::{html, Markup};

/// One billing period's use.
#[derive(Debug, Clone, PartialEq)]
pub struct ChartBar {
    pub from: NaiveDate,
    pub to: NaiveDate,
    /// Use in the chart's unit.
    pub usage: f64,
    pub estimated: bool,
    /// The read under review.
    pub current: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ChartInput<'a> {
    /// Oldest first.
    pub bars: Vec<ChartBar>,
    /// Expected range of use for the period under review (low, high).
    pub band: Option<(f64, f64)>,
    pub meter_changes: Vec<NaiveDate>,
    pub unit: &'a str,
}

const W: f64 = 760.0;
const H: f64 = 280.0;
const LEFT: f64 = 56.0;
const RIGHT: f64 = 12.0;
const TOP: f64 = 22.0;
const BOTTOM: f64 = 44.0;

fn fmt_use(v: f64) -> String {
    crate::vee::amount(v)
}

fn f1(v: f64) -> String {
    format!("{v:.1}")
}

/// The top of the axis: above every ordinary bar and the expected range, but not stretched by an
/// outlier (a bar over 4× the median of the others and over twice the expected range's top).
pub fn axis_top(input: &ChartInput<'_>) -> f64 {
    let mut values: Vec<f64> = input.bars.iter().map(|b| b.usage.max(0.0)).collect();
    values.sort_by(f64::total_cmp);
    let median = values.get(values.len() / 2).copied().unwrap_or(0.0);
    let band_top = input.band.map_or(0.0, |b| b.1);
    let limit = (median * 4.0).max(band_top * 2.0).max(10.0);
    values
        .iter()
        .copied()
        .filter(|v| *v <= limit)
        .chain(input.band.map(|b| b.1))
        .fold(0.0f64, f64::max)
        .max(1.0)
}

/// The chart as an `<svg>` element (a text legend follows it on the page: see [`legend`]).
pub fn svg(input: &ChartInput<'_>) -> Markup {
    let n = input.bars.len().max(1) as f64;
    let top = axis_top(input);
    let scale = top * 1.1;
    let plot_w = W - LEFT - RIGHT;
    let plot_h = H - TOP - BOTTOM;
    let base = TOP + plot_h;
    let y = |v: f64| TOP + plot_h * (1.0 - (v.max(0.0) / scale).min(1.0));
    let slot = plot_w / n;
    let current_slot = input.bars.iter().position(|b| b.current);
    html! {
        svg #history-chart xmlns="http://www.w3.org/2000/svg" viewBox={ "0 0 " (W) " " (H) } width=(W) height=(H)
            role="img" aria-labelledby="chart-title chart-desc" {
            title #chart-title { "Use per billing period, " (input.unit) }
            desc #chart-desc { (input.bars.len()) " periods; this read is drawn in orange; estimates are hatched; the shaded band is the expected range for this period; a bar cut by a zigzag is off the scale." }
            defs { pattern #hatch width="6" height="6" patternUnits="userSpaceOnUse" patternTransform="rotate(45)" {
                rect width="6" height="6" fill="#c9d6e0" {}
                line x1="0" y1="0" x2="0" y2="6" stroke="#5a7184" stroke-width="2" {}
            } }
            @for frac in [0.0, 0.5, 1.0] {
                @let v = top * frac;
                line x1=(LEFT) x2=(W - RIGHT) y1=(f1(y(v))) y2=(f1(y(v))) stroke="#ddd" {}
                text x=(LEFT - 4.0) y=(f1(y(v) + 4.0)) font-size="11" text-anchor="end" { (fmt_use(v)) }
            }
            @if let Some((low, high)) = input.band {
                // Over this period's bar (or the whole plot when this read has no bar).
                @let (bx, bw) = match current_slot { Some(i) => (LEFT + slot * i as f64, slot), None => (LEFT, plot_w) };
                rect.band x=(f1(bx)) y=(f1(y(high))) width=(f1(bw)) height=(f1((y(low) - y(high)).max(1.0))) fill="#5cb85c" fill-opacity="0.35" stroke="#2e7d32" stroke-dasharray="3 2" {
                    title { "Expected range this period: " (fmt_use(low)) "–" (fmt_use(high)) " " (input.unit) }
                }
            }
            @for (i, b) in input.bars.iter().enumerate() {
                @let x = LEFT + slot * i as f64 + slot * 0.15;
                @let bw = (slot * 0.7).max(1.0);
                @let clipped = b.usage > scale;
                @let yy = y(b.usage);
                @let h = (base - yy).max(0.5);
                @let fill = if b.current { "#e07b00" } else if b.estimated { "url(#hatch)" } else { "#2f6f9f" };
                @let what = match (b.current, b.estimated) { (true, _) => " (this read)", (false, true) => " (estimated)", _ => "" };
                @let cls = if b.current { "bar current" } else if b.estimated { "bar estimated" } else { "bar" };
                rect class=(cls) x=(f1(x)) y=(f1(yy)) width=(f1(bw)) height=(f1(h)) fill=(fill) {
                    title { (b.from) " – " (b.to) ": " (fmt_use(b.usage)) " " (input.unit) (what) }
                }
                @if clipped {
                    // The break: a white zigzag across the bar near the top, and the value above it.
                    path.axis-break d={ "M" (f1(x - 2.0)) " " (f1(TOP + 10.0)) " l" (f1(bw / 4.0 + 1.0)) " -5 l" (f1(bw / 4.0)) " 10 l" (f1(bw / 4.0)) " -10 l" (f1(bw / 4.0 + 1.0)) " 5" }
                        stroke="#fff" stroke-width="3" fill="none" {}
                    text.outlier x=(f1(x + bw / 2.0)) y=(f1(TOP - 6.0)) font-size="11" font-weight="bold" text-anchor="middle" fill="#8b1a1a" {
                        (fmt_use(b.usage)) " ↑"
                    }
                }
                @if b.estimated {
                    text x=(f1(x + bw / 2.0)) y=(f1(yy - 3.0)) font-size="10" text-anchor="middle" { "E" }
                }
                @if i % 3 == 0 || i + 1 == input.bars.len() {
                    text x=(f1(x + bw / 2.0)) y=(H - BOTTOM + 14.0) font-size="10" text-anchor="middle" { (b.to.format("%b %y")) }
                }
            }
            @for change in &input.meter_changes {
                @if let Some(i) = input.bars.iter().position(|b| b.to > *change) {
                    @let x = LEFT + slot * i as f64;
                    g.meter-change {
                        line x1=(f1(x)) x2=(f1(x)) y1=(TOP) y2=(base) stroke="#8b1a1a" stroke-dasharray="4 3" stroke-width="2" {}
                        text x=(f1(x + 3.0)) y=(TOP + 10.0) font-size="10" fill="#8b1a1a" { "meter change" }
                        title { "Meter changed on " (change) }
                    }
                }
            }
            line x1=(LEFT) x2=(W - RIGHT) y1=(base) y2=(base) stroke="#333" {}
            text x=(LEFT) y=(H - 6.0) font-size="11" {
                "Use per period (" (input.unit) ") — orange: this read; hatched E: estimated; green: expected this period; zigzag: off the scale; dashed: meter change"
            }
        }
    }
}

/// The same facts as text, for readers who cannot see the chart.
pub fn legend(input: &ChartInput<'_>) -> Markup {
    let past: Vec<&ChartBar> = input.bars.iter().filter(|b| !b.current).collect();
    let top = axis_top(input) * 1.1;
    let off: Vec<&ChartBar> = input.bars.iter().filter(|b| b.usage > top).collect();
    html! {
        ul.legend {
            @if let Some(cur) = input.bars.iter().find(|b| b.current) {
                li { "This read (orange): " (fmt_use(cur.usage)) " " (input.unit) " for " (cur.from) " – " (cur.to) "." }
            }
            @match input.band {
                Some((lo, hi)) => li { "Expected range this period (green band): " (fmt_use(lo)) "–" (fmt_use(hi)) " " (input.unit) "." },
                None => li { "No expected range: too little history." },
            }
            @if !past.is_empty() {
                @let avg = past.iter().map(|b| b.usage).sum::<f64>() / past.len() as f64;
                li { (past.len()) " earlier periods (blue), average " (fmt_use(avg)) " " (input.unit) "; "
                    (past.iter().filter(|b| b.estimated).count()) " estimated (hatched, marked E)." }
            }
            @for b in &off {
                li { "Off the scale: " (fmt_use(b.usage)) " " (input.unit) " for " (b.from) " – " (b.to) " (bar cut by a zigzag)." }
            }
            @for c in &input.meter_changes { li { "Meter changed on " (c) " (dashed line)." } }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn day(m: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(2026, m, 5).unwrap()
    }

    fn bars(current: f64) -> Vec<ChartBar> {
        (1..=10)
            .map(|m| ChartBar {
                from: day(m),
                to: day(m + 1),
                usage: if m == 10 { current } else { 12.0 },
                estimated: m == 4,
                current: m == 10,
            })
            .collect()
    }

    #[test]
    fn the_chart_has_one_bar_per_period_with_titles_band_and_markers() {
        let input = ChartInput {
            bars: bars(48.0),
            band: Some((8.0, 17.0)),
            meter_changes: vec![day(6)],
            unit: "hcf",
        };
        let s = svg(&input).into_string();
        assert_eq!(s.matches("<rect class=\"bar").count(), 10);
        assert_eq!(s.matches("class=\"bar current\"").count(), 1);
        assert_eq!(s.matches("class=\"bar estimated\"").count(), 1);
        assert!(s.contains("<title>Expected range this period: 8–17 hcf</title>"));
        assert!(s.contains("Meter changed on 2026-06-05"));
        assert!(s.contains("<title>2026-10-05 – 2026-11-05: 48 hcf (this read)</title>"));
        assert!(!s.contains("axis-break"), "nothing is off the scale");
        // The band covers this period's slot only, not all ten.
        let band = &s[s.find("class=\"band\"").unwrap()..];
        let width: f64 = band["class=\"band\" x=\"".len()..]
            .split("width=\"")
            .nth(1)
            .unwrap()
            .split('"')
            .next()
            .unwrap()
            .parse()
            .unwrap();
        assert!(width < 80.0, "band width {width}");
        let l = legend(&input).into_string();
        assert!(l.contains("9 earlier periods"), "{l}");
    }

    #[test]
    fn an_outlier_is_cut_and_labelled_and_the_rest_keeps_its_scale() {
        let input = ChartInput {
            bars: bars(17_309.0),
            band: Some((8.0, 17.0)),
            meter_changes: vec![],
            unit: "hcf",
        };
        assert!(axis_top(&input) < 40.0, "{}", axis_top(&input));
        let s = svg(&input).into_string();
        assert_eq!(s.matches("axis-break").count(), 1);
        assert!(s.contains("17309 ↑"), "the outlier's value is written");
        // An ordinary 12-HCF bar is a visible fraction of the plot, not a sliver.
        let first = &s[s.find("<rect class=\"bar\"").unwrap()..];
        let h: f64 = first
            .split("height=\"")
            .nth(1)
            .unwrap()
            .split('"')
            .next()
            .unwrap()
            .parse()
            .unwrap();
        assert!(h > 50.0, "ordinary bar height {h}");
        assert!(legend(&input)
            .into_string()
            .contains("Off the scale: 17309 hcf"));
    }

    #[test]
    fn an_empty_history_still_draws_a_valid_chart() {
        let s = svg(&ChartInput {
            bars: vec![],
            band: None,
            meter_changes: vec![],
            unit: "<gal>",
        })
        .into_string();
        assert!(s.starts_with("<svg") && s.ends_with("</svg>"));
        assert!(s.contains("&lt;gal&gt;"));
    }
}
