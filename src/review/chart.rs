//! The history chart of a read's detail page: inline SVG, one bar per billing period, the expected range
//! of this period as a band, this read highlighted, estimates and meter changes marked. No script.

use super::html::Esc;
use chrono::NaiveDate;
use std::fmt::Write;

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
const TOP: f64 = 16.0;
const BOTTOM: f64 = 44.0;

fn fmt_use(v: f64) -> String {
    crate::vee::amount(v)
}

/// The chart as an `<svg>` element (a text legend follows it on the page: see [`legend`]).
pub fn svg(input: &ChartInput<'_>) -> String {
    let n = input.bars.len().max(1) as f64;
    let top_value = input
        .bars
        .iter()
        .map(|b| b.usage)
        .chain(input.band.map(|b| b.1))
        .fold(0.0f64, f64::max)
        .max(1.0)
        * 1.1;
    let plot_w = W - LEFT - RIGHT;
    let plot_h = H - TOP - BOTTOM;
    let y = |v: f64| TOP + plot_h * (1.0 - (v.max(0.0) / top_value).min(1.0));
    let slot = plot_w / n;
    let mut s = String::new();
    let _ = write!(
        s,
        "<svg id=\"history-chart\" xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 {W} {H}\" width=\"{W}\" height=\"{H}\" \
         role=\"img\" aria-labelledby=\"chart-title chart-desc\">\
         <title id=\"chart-title\">Use per billing period, {unit}</title>\
         <desc id=\"chart-desc\">{n} periods; this read is drawn in orange; estimates are hatched; the shaded band is the expected range for this period.</desc>\
         <defs><pattern id=\"hatch\" width=\"6\" height=\"6\" patternUnits=\"userSpaceOnUse\" patternTransform=\"rotate(45)\">\
         <rect width=\"6\" height=\"6\" fill=\"#c9d6e0\"/><line x1=\"0\" y1=\"0\" x2=\"0\" y2=\"6\" stroke=\"#5a7184\" stroke-width=\"2\"/></pattern></defs>",
        unit = Esc(input.unit),
        n = input.bars.len(),
    );
    // Axes and gridlines at 0, ½ and the top.
    for frac in [0.0, 0.5, 1.0] {
        let v = top_value / 1.1 * frac;
        let yy = y(v);
        let _ = write!(
            s,
            "<line x1=\"{LEFT}\" x2=\"{x2}\" y1=\"{yy:.1}\" y2=\"{yy:.1}\" stroke=\"#ddd\"/>\
             <text x=\"{tx}\" y=\"{ty:.1}\" font-size=\"11\" text-anchor=\"end\">{label}</text>",
            x2 = W - RIGHT,
            tx = LEFT - 4.0,
            ty = yy + 4.0,
            label = Esc(&fmt_use(v)),
        );
    }
    if let Some((low, high)) = input.band {
        let _ = write!(
            s,
            "<rect class=\"band\" x=\"{LEFT}\" y=\"{y1:.1}\" width=\"{plot_w}\" height=\"{h:.1}\" fill=\"#b7e0b7\" fill-opacity=\"0.5\">\
             <title>Expected range this period: {lo}–{hi} {unit}</title></rect>",
            y1 = y(high),
            h = (y(low) - y(high)).max(1.0),
            lo = Esc(&fmt_use(low)),
            hi = Esc(&fmt_use(high)),
            unit = Esc(input.unit),
        );
    }
    for (i, b) in input.bars.iter().enumerate() {
        let x = LEFT + slot * i as f64 + slot * 0.15;
        let bw = (slot * 0.7).max(1.0);
        let yy = y(b.usage);
        let h = (TOP + plot_h - yy).max(0.5);
        let fill = if b.current {
            "#e07b00"
        } else if b.estimated {
            "url(#hatch)"
        } else {
            "#2f6f9f"
        };
        let what = match (b.current, b.estimated) {
            (true, _) => " (this read)",
            (false, true) => " (estimated)",
            _ => "",
        };
        let _ = write!(
            s,
            "<rect class=\"bar{cls}\" x=\"{x:.1}\" y=\"{yy:.1}\" width=\"{bw:.1}\" height=\"{h:.1}\" fill=\"{fill}\">\
             <title>{from} – {to}: {u} {unit}{what}</title></rect>",
            cls = if b.current {
                " current"
            } else if b.estimated {
                " estimated"
            } else {
                ""
            },
            from = b.from,
            to = b.to,
            u = Esc(&fmt_use(b.usage)),
            unit = Esc(input.unit),
        );
        if b.estimated {
            let _ = write!(
                s,
                "<text x=\"{cx:.1}\" y=\"{ty:.1}\" font-size=\"10\" text-anchor=\"middle\">E</text>",
                cx = x + bw / 2.0,
                ty = yy - 3.0
            );
        }
        // Month labels every third period (and the last), so they do not collide.
        if i % 3 == 0 || i + 1 == input.bars.len() {
            let _ = write!(
                s,
                "<text x=\"{cx:.1}\" y=\"{ty}\" font-size=\"10\" text-anchor=\"middle\">{m}</text>",
                cx = x + bw / 2.0,
                ty = H - BOTTOM + 14.0,
                m = b.to.format("%b %y"),
            );
        }
    }
    for change in &input.meter_changes {
        // The boundary before the first period ending after the change.
        let Some(i) = input.bars.iter().position(|b| b.to > *change) else {
            continue;
        };
        let x = LEFT + slot * i as f64;
        let _ = write!(
            s,
            "<g class=\"meter-change\"><line x1=\"{x:.1}\" x2=\"{x:.1}\" y1=\"{TOP}\" y2=\"{yb}\" stroke=\"#8b1a1a\" stroke-dasharray=\"4 3\" stroke-width=\"2\"/>\
             <text x=\"{tx:.1}\" y=\"{ty}\" font-size=\"10\" fill=\"#8b1a1a\">meter change</text>\
             <title>Meter changed on {change}</title></g>",
            yb = TOP + plot_h,
            tx = x + 3.0,
            ty = TOP + 10.0,
        );
    }
    let _ = write!(
        s,
        "<line x1=\"{LEFT}\" x2=\"{x2}\" y1=\"{yb}\" y2=\"{yb}\" stroke=\"#333\"/>\
         <text x=\"{LEFT}\" y=\"{ly}\" font-size=\"11\">Use per period ({unit}) — orange: this read; hatched E: estimated; green band: expected range; dashed: meter change</text></svg>",
        x2 = W - RIGHT,
        yb = TOP + plot_h,
        ly = H - 6.0,
        unit = Esc(input.unit),
    );
    s
}

/// The same facts as text, for readers who cannot see the chart.
pub fn legend(input: &ChartInput<'_>) -> String {
    let mut s = String::from("<ul class=\"legend\">");
    if let Some(cur) = input.bars.iter().find(|b| b.current) {
        let _ = write!(
            s,
            "<li>This read (orange): {} {} for {} – {}.</li>",
            Esc(&fmt_use(cur.usage)),
            Esc(input.unit),
            cur.from,
            cur.to
        );
    }
    match input.band {
        Some((lo, hi)) => {
            let _ = write!(
                s,
                "<li>Expected range this period (green band): {}–{} {}.</li>",
                Esc(&fmt_use(lo)),
                Esc(&fmt_use(hi)),
                Esc(input.unit)
            );
        }
        None => s.push_str("<li>No expected range: too little history.</li>"),
    }
    let past: Vec<&ChartBar> = input.bars.iter().filter(|b| !b.current).collect();
    if !past.is_empty() {
        let avg = past.iter().map(|b| b.usage).sum::<f64>() / past.len() as f64;
        let est = past.iter().filter(|b| b.estimated).count();
        let _ = write!(
            s,
            "<li>{} earlier periods (blue), average {} {}; {} estimated (hatched, marked E).</li>",
            past.len(),
            Esc(&fmt_use(avg)),
            Esc(input.unit),
            est
        );
    }
    for c in &input.meter_changes {
        let _ = write!(s, "<li>Meter changed on {c} (dashed line).</li>");
    }
    s.push_str("</ul>");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn day(m: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(2026, m, 5).unwrap()
    }

    #[test]
    fn the_chart_has_one_bar_per_period_with_titles_band_and_markers() {
        let bars: Vec<ChartBar> = (1..=10)
            .map(|m| ChartBar {
                from: day(m),
                to: day(m + 1),
                usage: if m == 10 { 48.0 } else { 12.0 },
                estimated: m == 4,
                current: m == 10,
            })
            .collect();
        let input = ChartInput {
            bars,
            band: Some((8.0, 17.0)),
            meter_changes: vec![day(6)],
            unit: "hcf",
        };
        let s = svg(&input);
        assert_eq!(s.matches("<rect class=\"bar").count(), 10);
        assert_eq!(s.matches("class=\"bar current\"").count(), 1);
        assert_eq!(s.matches("class=\"bar estimated\"").count(), 1);
        assert!(s.contains("<title>Expected range this period: 8–17 hcf</title>"));
        assert!(s.contains("Meter changed on 2026-06-05"));
        assert!(s.contains("<title>2026-10-05 – 2026-11-05: 48 hcf (this read)</title>"));
        let l = legend(&input);
        assert!(l.contains("9 earlier periods"), "{l}");
    }

    #[test]
    fn an_empty_history_still_draws_a_valid_chart() {
        let s = svg(&ChartInput {
            bars: vec![],
            band: None,
            meter_changes: vec![],
            unit: "<gal>",
        });
        assert!(s.starts_with("<svg") && s.ends_with("</svg>"));
        assert!(s.contains("&lt;gal&gt;"));
    }
}
