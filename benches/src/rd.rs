//! Rate–distortion figures: Bjøntegaard delta rate between two encoders' curves and the curves
//! drawn as a PNG (plotters, DejaVu Sans from Debian's `fonts-dejavu-core`).

use std::path::Path;

use anyhow::Context;
use plotters::prelude::*;

/// One encode of one clip: its measured rate and quality.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RdPoint {
    /// Bits per second actually produced.
    pub kbps: f64,
    /// Mean Y-PSNR over the clip, dB.
    pub psnr: f64,
}

/// Bjøntegaard delta rate of `test` against `anchor`, in percent: how many more bits `test`
/// spends than `anchor` at equal PSNR, averaged over the PSNR range both curves cover
/// (negative: `test` saves bits). Each curve is fitted as log10(rate) = cubic(PSNR) by least
/// squares, as in VCEG-M33. `None` with fewer than four points on either curve or no overlap.
pub fn bd_rate(anchor: &[RdPoint], test: &[RdPoint]) -> Option<f64> {
    if anchor.len() < 4 || test.len() < 4 {
        return None;
    }
    let fit = |pts: &[RdPoint]| {
        let xs: Vec<f64> = pts.iter().map(|p| p.psnr).collect();
        let ys: Vec<f64> = pts.iter().map(|p| p.kbps.max(1e-9).log10()).collect();
        cubic_least_squares(&xs, &ys)
    };
    let (a, t) = (fit(anchor)?, fit(test)?);
    let range = |pts: &[RdPoint]| {
        pts.iter().fold((f64::MAX, f64::MIN), |(lo, hi), p| {
            (lo.min(p.psnr), hi.max(p.psnr))
        })
    };
    let ((alo, ahi), (tlo, thi)) = (range(anchor), range(test));
    let (lo, hi) = (alo.max(tlo), ahi.min(thi));
    if hi <= lo {
        return None;
    }
    let integral = |c: &[f64; 4], x: f64| {
        c[0] * x + c[1] * x * x / 2.0 + c[2] * x.powi(3) / 3.0 + c[3] * x.powi(4) / 4.0
    };
    let avg = |c: &[f64; 4]| (integral(c, hi) - integral(c, lo)) / (hi - lo);
    Some((10f64.powf(avg(&t) - avg(&a)) - 1.0) * 100.0)
}

/// Coefficients c0..c3 of the cubic that fits (xs, ys) best in least squares (exactly through
/// four points). `None` when the system is singular (repeated x values).
fn cubic_least_squares(xs: &[f64], ys: &[f64]) -> Option<[f64; 4]> {
    // Normal equations (VᵀV) c = Vᵀy on x shifted to its mean, for conditioning.
    let mean = xs.iter().sum::<f64>() / xs.len() as f64;
    let mut m = [[0.0f64; 5]; 4];
    for (&x, &y) in xs.iter().zip(ys) {
        let d = x - mean;
        let pow = [1.0, d, d * d, d * d * d];
        for r in 0..4 {
            for c in 0..4 {
                m[r][c] += pow[r] * pow[c];
            }
            m[r][4] += pow[r] * y;
        }
    }
    // Gaussian elimination with partial pivoting.
    for col in 0..4 {
        let pivot = (col..4).max_by(|&a, &b| m[a][col].abs().total_cmp(&m[b][col].abs()))?;
        if m[pivot][col].abs() < 1e-12 {
            return None;
        }
        m.swap(col, pivot);
        let pivot_row = m[col];
        for (r, row) in m.iter_mut().enumerate() {
            if r != col {
                let f = row[col] / pivot_row[col];
                for (v, p) in row.iter_mut().zip(pivot_row).skip(col) {
                    *v -= f * p;
                }
            }
        }
    }
    let s: Vec<f64> = (0..4).map(|r| m[r][4] / m[r][r]).collect();
    // Expand the polynomial in (x - mean) back to powers of x.
    let (a, b, c, d) = (s[0], s[1], s[2], s[3]);
    let k = mean;
    Some([
        a - b * k + c * k * k - d * k * k * k,
        b - 2.0 * c * k + 3.0 * d * k * k,
        c - 3.0 * d * k,
        d,
    ])
}

/// One panel of the plot: a title and each encoder's points, lowest rate first.
#[derive(Debug, Clone)]
pub struct Panel {
    /// Caption.
    pub title: String,
    /// Encoder name and its points.
    pub curves: Vec<(String, Vec<RdPoint>)>,
}

/// Where Debian's `fonts-dejavu-core` puts the font the plot's text uses.
const FONT: &str = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf";

/// Draws the panels in a grid of `columns` (PSNR over log rate) and writes a PNG.
pub fn plot(path: &Path, panels: &[Panel], columns: usize) -> anyhow::Result<()> {
    let font = std::fs::read(FONT).with_context(|| {
        format!("reading {FONT} for the plot's text (Debian package fonts-dejavu-core)")
    })?;
    plotters::style::register_font("sans-serif", FontStyle::Normal, Box::leak(font.into()))
        .map_err(|_| anyhow::anyhow!("{FONT} is not a font plotters can read"))?;
    let columns = columns.max(1);
    let rows = panels.len().div_ceil(columns).max(1);
    let (w, h) = (560 * columns as u32, 420 * rows as u32);
    let mut buf = vec![0u8; (w * h * 3) as usize];
    {
        let root = BitMapBackend::with_buffer(&mut buf, (w, h)).into_drawing_area();
        root.fill(&WHITE).map_err(draw_error)?;
        let areas = root.split_evenly((rows, columns));
        let colours = [
            RGBColor(200, 40, 40),
            RGBColor(40, 90, 200),
            RGBColor(30, 150, 60),
        ];
        for (area, panel) in areas.iter().zip(panels) {
            let pts = panel.curves.iter().flat_map(|(_, p)| p.iter());
            let (xlo, xhi, ylo, yhi) = pts.fold(
                (f64::MAX, f64::MIN, f64::MAX, f64::MIN),
                |(a, b, c, d), p| (a.min(p.kbps), b.max(p.kbps), c.min(p.psnr), d.max(p.psnr)),
            );
            if xlo > xhi {
                continue;
            }
            let mut chart = ChartBuilder::on(area)
                .caption(&panel.title, ("sans-serif", 18))
                .margin(12)
                .x_label_area_size(40)
                .y_label_area_size(50)
                .build_cartesian_2d(
                    ((xlo * 0.8)..(xhi * 1.25)).log_scale(),
                    (ylo - 1.0).floor()..(yhi + 1.0).ceil(),
                )
                .map_err(draw_error)?;
            chart
                .configure_mesh()
                .x_desc("kbit/s (log)")
                .x_labels(8)
                .x_label_formatter(&|v| format!("{v:.0}"))
                .y_label_formatter(&|v| format!("{v:.0}"))
                .y_desc("Y-PSNR dB")
                .label_style(("sans-serif", 13))
                .draw()
                .map_err(draw_error)?;
            for (i, (name, curve)) in panel.curves.iter().enumerate() {
                let colour = colours[i % colours.len()];
                let xy: Vec<(f64, f64)> = curve.iter().map(|p| (p.kbps, p.psnr)).collect();
                chart
                    .draw_series(LineSeries::new(xy.clone(), colour.stroke_width(2)))
                    .map_err(draw_error)?
                    .label(name.as_str())
                    .legend(move |(x, y)| {
                        PathElement::new(vec![(x, y), (x + 18, y)], colour.stroke_width(2))
                    });
                chart
                    .draw_series(xy.into_iter().map(|c| Circle::new(c, 3, colour.filled())))
                    .map_err(draw_error)?;
            }
            chart
                .configure_series_labels()
                .position(SeriesLabelPosition::LowerRight)
                .label_font(("sans-serif", 13))
                .border_style(BLACK)
                .background_style(WHITE.mix(0.85))
                .draw()
                .map_err(draw_error)?;
        }
        root.present().map_err(draw_error)?;
    }
    image::save_buffer(path, &buf, w, h, image::ColorType::Rgb8)
        .with_context(|| format!("writing {}", path.display()))
}

fn draw_error<E: std::fmt::Display>(e: E) -> anyhow::Error {
    anyhow::anyhow!("drawing the RD plot: {e}")
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn curve(rates: &[f64], psnr: impl Fn(f64) -> f64) -> Vec<RdPoint> {
        rates
            .iter()
            .map(|&kbps| RdPoint {
                kbps,
                psnr: psnr(kbps),
            })
            .collect()
    }

    #[test]
    fn bd_rate_of_a_curve_shifted_in_rate_is_the_shift() {
        let quality = |k: f64| 20.0 + 6.0 * k.log2();
        let a = curve(&[1000.0, 2000.0, 4000.0, 8000.0], quality);
        assert!(bd_rate(&a, &a).unwrap().abs() < 1e-6);
        // The same qualities at 1.25x the bits: +25 %; at 0.8x: -20 %.
        let more: Vec<RdPoint> = a
            .iter()
            .map(|p| RdPoint {
                kbps: p.kbps * 1.25,
                ..*p
            })
            .collect();
        assert!((bd_rate(&a, &more).unwrap() - 25.0).abs() < 1e-6);
        assert!((bd_rate(&more, &a).unwrap() + 20.0).abs() < 1e-6);
        // A curve at other rates on the same line still measures 0.
        let b = curve(&[1500.0, 3000.0, 5000.0, 7000.0], quality);
        assert!(bd_rate(&a, &b).unwrap().abs() < 1e-6);
        // Too few points, or no overlap in quality: no figure.
        assert!(bd_rate(&a[..3], &b).is_none());
        let far = curve(&[1000.0, 2000.0, 4000.0, 8000.0], |k| 200.0 + k.log2());
        assert!(bd_rate(&a, &far).is_none());
    }
}
