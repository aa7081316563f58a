//! Violin plots (the paper's Figures 2 and 3) as PNG and SVG.
//!
//! Each violin is a Gaussian kernel density estimate of one group, drawn over the group's
//! range and mirrored, with the interquartile range as a bar and the median as a white mark.
//! Text uses a font shipped with the crate (DejaVu Sans, reduced to ASCII), so no system font
//! library is needed.

use std::path::{Path, PathBuf};
use std::sync::Once;

use anyhow::{Context, anyhow};
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use crate::stats::{Summary, kde};

static FONT: &[u8] = include_bytes!("../assets/fonts/DejaVuSans-subset.ttf");
static REGISTER: Once = Once::new();

fn register_font() {
    REGISTER.call_once(|| {
        // The font is compiled in and known to parse; a failure would leave text unrendered
        // but is reported by the first drawing call.
        let _ = plotters::style::register_font("sans-serif", FontStyle::Normal, FONT);
    });
}

/// One violin.
#[derive(Clone, Debug)]
pub struct ViolinGroup {
    /// Label under the violin.
    pub name: String,
    pub values: Vec<f64>,
    /// Fill colour (RGB).
    pub color: (u8, u8, u8),
}

/// A violin plot.
#[derive(Clone, Debug)]
pub struct ViolinPlot {
    pub title: String,
    pub y_label: String,
    pub groups: Vec<ViolinGroup>,
    /// Draw a horizontal line at y = 0 (for margins).
    pub zero_line: bool,
}

/// Image size in pixels.
pub const SIZE: (u32, u32) = (900, 560);
/// Density evaluation points per violin.
const GRID: usize = 160;

/// Colours of labels 0, 1, 2.
pub const LABEL_COLORS: [(u8, u8, u8); 3] = [(214, 96, 77), (244, 165, 66), (77, 146, 33)];

fn draw<DB: DrawingBackend>(root: &DrawingArea<DB, Shift>, plot: &ViolinPlot) -> anyhow::Result<()>
where
    DB::ErrorType: 'static,
{
    let err = |e: DrawingAreaErrorKind<DB::ErrorType>| anyhow!("drawing {:?}: {e}", plot.title);
    root.fill(&WHITE).map_err(err)?;
    let all: Vec<f64> = plot
        .groups
        .iter()
        .flat_map(|g| g.values.iter().copied())
        .collect();
    let (mut lo, mut hi) = all
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &v| {
            (a.min(v), b.max(v))
        });
    if plot.zero_line {
        lo = lo.min(0.0);
        hi = hi.max(0.0);
    }
    if !lo.is_finite() || !hi.is_finite() {
        (lo, hi) = (0.0, 1.0);
    }
    let pad = ((hi - lo) * 0.06).max(0.01);
    let (ymin, ymax) = (lo - pad, hi + pad);
    let n = plot.groups.len().max(1);
    let mut chart = ChartBuilder::on(root)
        .caption(&plot.title, ("sans-serif", 22))
        .margin(16)
        .x_label_area_size(48)
        .y_label_area_size(64)
        .build_cartesian_2d(-0.5f64..(n as f64 - 0.5), ymin..ymax)
        .map_err(err)?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(0)
        .y_labels(8)
        .y_desc(plot.y_label.as_str())
        .y_label_style(("sans-serif", 14))
        .axis_desc_style(("sans-serif", 16))
        .light_line_style(TRANSPARENT)
        .bold_line_style(RGBColor(225, 225, 225))
        .draw()
        .map_err(err)?;
    if plot.zero_line {
        chart
            .draw_series(std::iter::once(PathElement::new(
                vec![(-0.5, 0.0), (n as f64 - 0.5, 0.0)],
                RGBColor(120, 120, 120),
            )))
            .map_err(err)?;
    }
    for (i, g) in plot.groups.iter().enumerate() {
        let x = i as f64;
        let color = RGBColor(g.color.0, g.color.1, g.color.2);
        if let Some(s) = Summary::of(&g.values) {
            let span = (s.max - s.min).max((ymax - ymin) * 0.01);
            let (a, b) = ((s.min + s.max - span) / 2.0, (s.min + s.max + span) / 2.0);
            let grid: Vec<f64> = (0..GRID)
                .map(|j| a + (b - a) * j as f64 / (GRID - 1) as f64)
                .collect();
            let dens = kde(&g.values, &grid);
            let peak = dens.iter().copied().fold(0.0, f64::max);
            let half = |d: f64| if peak > 0.0 { 0.4 * d / peak } else { 0.0 };
            let mut outline: Vec<(f64, f64)> = grid
                .iter()
                .zip(&dens)
                .map(|(&y, &d)| (x - half(d), y))
                .collect();
            outline.extend(
                grid.iter()
                    .zip(&dens)
                    .rev()
                    .map(|(&y, &d)| (x + half(d), y)),
            );
            chart
                .draw_series(std::iter::once(Polygon::new(
                    outline.clone(),
                    color.mix(0.55).filled(),
                )))
                .map_err(err)?;
            outline.push(outline[0]);
            chart
                .draw_series(std::iter::once(PathElement::new(
                    outline,
                    color.stroke_width(1),
                )))
                .map_err(err)?;
            chart
                .draw_series(std::iter::once(Rectangle::new(
                    [(x - 0.035, s.q1), (x + 0.035, s.q3)],
                    BLACK.mix(0.75).filled(),
                )))
                .map_err(err)?;
            chart
                .draw_series(std::iter::once(PathElement::new(
                    vec![(x, s.min), (x, s.max)],
                    BLACK.mix(0.6),
                )))
                .map_err(err)?;
            chart
                .draw_series(std::iter::once(Rectangle::new(
                    [
                        (x - 0.035, s.median - (ymax - ymin) * 0.003),
                        (x + 0.035, s.median + (ymax - ymin) * 0.003),
                    ],
                    WHITE.filled(),
                )))
                .map_err(err)?;
        }
        let (px, py) = chart.backend_coord(&(x, ymin));
        let style = ("sans-serif", 15)
            .into_font()
            .color(&BLACK)
            .pos(Pos::new(HPos::Center, VPos::Top));
        root.draw(&Text::new(g.name.clone(), (px, py + 8), style.clone()))
            .map_err(err)?;
        let small = ("sans-serif", 12)
            .into_font()
            .color(&RGBColor(90, 90, 90))
            .pos(Pos::new(HPos::Center, VPos::Top));
        root.draw(&Text::new(
            format!("n={}", g.values.len()),
            (px, py + 27),
            small,
        ))
        .map_err(err)?;
    }
    root.present().map_err(err)?;
    Ok(())
}

/// Renders the plot as SVG text.
pub fn render_svg(plot: &ViolinPlot) -> anyhow::Result<String> {
    register_font();
    let mut s = String::new();
    {
        let root = SVGBackend::with_string(&mut s, SIZE).into_drawing_area();
        draw(&root, plot)?;
    }
    Ok(s)
}

/// Renders the plot as PNG bytes.
pub fn render_png(plot: &ViolinPlot) -> anyhow::Result<Vec<u8>> {
    register_font();
    let (w, h) = SIZE;
    let mut rgb = vec![0u8; (w * h * 3) as usize];
    {
        let root = BitMapBackend::with_buffer(&mut rgb, SIZE).into_drawing_area();
        draw(&root, plot)?;
    }
    let mut out = Vec::new();
    let mut enc = png::Encoder::new(&mut out, w, h);
    enc.set_color(png::ColorType::Rgb);
    enc.set_depth(png::BitDepth::Eight);
    let mut writer = enc.write_header().context("encoding PNG")?;
    writer.write_image_data(&rgb).context("encoding PNG")?;
    writer.finish().context("encoding PNG")?;
    Ok(out)
}

/// Writes `<stem>.png` and `<stem>.svg` into `dir`; returns both paths.
pub fn write_plot(dir: &Path, stem: &str, plot: &ViolinPlot) -> anyhow::Result<(PathBuf, PathBuf)> {
    let png = dir.join(format!("{stem}.png"));
    let svg = dir.join(format!("{stem}.svg"));
    std::fs::write(&png, render_png(plot)?)
        .with_context(|| format!("cannot write {}", png.display()))?;
    std::fs::write(&svg, render_svg(plot)?)
        .with_context(|| format!("cannot write {}", svg.display()))?;
    Ok((png, svg))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plot() -> ViolinPlot {
        let wave = |c: f64, n: usize| {
            (0..n)
                .map(|i| c + 0.1 * ((i as f64) * 0.7).sin())
                .collect::<Vec<_>>()
        };
        ViolinPlot {
            title: "Scores by label".into(),
            y_label: "cosine".into(),
            groups: vec![
                ViolinGroup {
                    name: "label 0".into(),
                    values: wave(0.2, 300),
                    color: LABEL_COLORS[0],
                },
                ViolinGroup {
                    name: "label 1".into(),
                    values: vec![0.5],
                    color: LABEL_COLORS[1],
                },
                ViolinGroup {
                    name: "label 2".into(),
                    values: vec![],
                    color: LABEL_COLORS[2],
                },
            ],
            zero_line: true,
        }
    }

    #[test]
    fn png_is_a_valid_image_of_the_expected_size() {
        let bytes = render_png(&plot()).unwrap();
        assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n");
        let decoder = png::Decoder::new(std::io::Cursor::new(bytes.as_slice()));
        let mut reader = decoder.read_info().unwrap();
        let mut buf = vec![0; reader.output_buffer_size().unwrap()];
        let info = reader.next_frame(&mut buf).unwrap();
        assert_eq!((info.width, info.height), SIZE);
        // Not blank: the violin fill colour of label 0 (mixed with white) appears, and so
        // does dark text/axis ink.
        let px: Vec<&[u8]> = buf[..info.buffer_size()].chunks(3).collect();
        let dark = px
            .iter()
            .filter(|p| p[0] < 60 && p[1] < 60 && p[2] < 60)
            .count();
        let reddish = px
            .iter()
            .filter(|p| p[0] > 200 && p[1] > 130 && p[1] < 190 && p[2] < 170 && p[2] > 100)
            .count();
        assert!(dark > 500, "dark pixels: {dark}");
        assert!(reddish > 1000, "violin pixels: {reddish}");
    }

    #[test]
    fn svg_holds_the_shapes_and_labels() {
        let svg = render_svg(&plot()).unwrap();
        assert!(svg.starts_with("<svg"));
        assert!(svg.contains("Scores by label"));
        assert!(svg.contains("label 0") && svg.contains("n=300") && svg.contains("n=0"));
        assert!(svg.contains("<polygon"));
        assert!(svg.len() > 5_000);
    }

    #[test]
    fn files_are_written() {
        let dir = tempfile::tempdir().unwrap();
        let (png, svg) = write_plot(dir.path(), "scores", &plot()).unwrap();
        assert!(std::fs::metadata(&png).unwrap().len() > 5_000);
        assert!(std::fs::metadata(&svg).unwrap().len() > 5_000);
    }
}
