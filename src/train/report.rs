//! What a run shows: a progress bar, `metrics.jsonl`, `loss.png` and reconstruction grids.

use std::collections::BTreeMap;
use std::fs::OpenOptions;
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use indicatif::{ProgressBar, ProgressStyle};
use plotters::prelude::*;
use serde::Serialize;
use serde_json::{Map, Value};

use crate::data::Normalization;

static FONT: &[u8] = include_bytes!("../../assets/DejaVuSans.ttf");

/// Makes the bundled DejaVu Sans plotters' "sans-serif" (no system fonts are needed).
pub fn register_font() {
    let _ = plotters::style::register_font("sans-serif", FontStyle::Normal, FONT);
}

pub fn progress_bar(total: usize, done: usize) -> ProgressBar {
    let bar = ProgressBar::new(total as u64);
    bar.set_style(
        ProgressStyle::with_template("{prefix} [{bar:30}] {pos}/{len} {msg} ETA {eta}")
            .expect("valid template")
            .progress_chars("=> "),
    );
    bar.set_position(done as u64);
    bar
}

/// One logged optimizer step of `metrics.jsonl`.
#[derive(Debug, Clone, Serialize)]
pub struct StepRecord {
    /// Optimizer steps done.
    pub step: usize,
    /// Epochs done, fractional.
    pub epoch: f64,
    /// The weighted total loss (`loss`) and each named term, means over the step's micro-batches
    /// and replicas.
    #[serde(flatten)]
    pub losses: BTreeMap<&'static str, f64>,
    /// Figures logged with the loss but not trained on (EESMM's `separation`), means likewise.
    #[serde(flatten)]
    pub monitors: BTreeMap<&'static str, f64>,
    pub lr: f64,
    pub grad_norm: f64,
    pub images_per_s: f64,
    pub elapsed_s: f64,
}

/// `metrics.jsonl`: one JSON object per logged step. On resume, lines past the checkpoint's
/// step are dropped so the file reads as one uninterrupted run.
pub struct MetricsLog {
    path: PathBuf,
}

impl MetricsLog {
    pub fn open(run_dir: &Path, resumed_step: usize) -> Result<Self> {
        let path = run_dir.join("metrics.jsonl");
        if path.exists() {
            let kept: Vec<String> = read_lines(&path)?
                .into_iter()
                .filter(|line| step_of(line).is_some_and(|s| s <= resumed_step))
                .collect();
            let text: String = kept.iter().map(|l| format!("{l}\n")).collect();
            crate::fsutil::write_atomic(&path, text.as_bytes())?;
        }
        Ok(Self { path })
    }

    /// Appends one record (a [`StepRecord`], or a stage's own, e.g. an evaluation) as a line.
    pub fn append(&self, record: &impl Serialize) -> Result<()> {
        let line = serde_json::to_string(record)?;
        let mut file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
            .with_context(|| format!("{}: cannot append", self.path.display()))?;
        writeln!(file, "{line}")?;
        Ok(())
    }

    pub fn records(&self) -> Result<Vec<Map<String, Value>>> {
        Ok(read_lines(&self.path)?
            .iter()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok()?.as_object().cloned())
            .collect())
    }
}

fn read_lines(path: &Path) -> Result<Vec<String>> {
    if !path.exists() {
        return Ok(Vec::new());
    }
    let file =
        std::fs::File::open(path).with_context(|| format!("{}: cannot read", path.display()))?;
    Ok(std::io::BufReader::new(file)
        .lines()
        .map_while(|l| l.ok())
        .collect())
}

fn step_of(line: &str) -> Option<usize> {
    serde_json::from_str::<Value>(line)
        .ok()?
        .get("step")?
        .as_u64()
        .map(|s| s as usize)
}

/// One chart of [`plot_metrics`]: the record keys it draws and its y axis.
pub struct Panel<'a> {
    pub keys: &'a [&'a str],
    pub y_label: &'a str,
}

/// Plots the metric records against `step` into a PNG: one chart per panel with any points,
/// stacked, the title above the first.
pub fn plot_metrics(
    path: &Path,
    records: &[Map<String, Value>],
    panels: &[Panel],
    title: &str,
) -> Result<()> {
    const W: u32 = 900;
    const FIRST: u32 = 500;
    const NEXT: u32 = 300;
    let drawn: Vec<(&Panel, Vec<Series>)> = panels
        .iter()
        .map(|panel| (panel, series(records, panel.keys)))
        .filter(|(_, series)| !series.is_empty())
        .collect();
    let h = FIRST + NEXT * drawn.len().saturating_sub(1) as u32;
    let x_max = drawn
        .iter()
        .flat_map(|(_, series)| series.iter().flat_map(|(_, p)| p.iter().map(|&(x, _)| x)))
        .fold(1.0f64, f64::max);
    register_font();
    let mut buffer = vec![255u8; (W * h * 3) as usize];
    {
        let root = BitMapBackend::with_buffer(&mut buffer, (W, h)).into_drawing_area();
        let mut area = root.clone();
        let mut colour = 0;
        for (i, (panel, series)) in drawn.into_iter().enumerate() {
            let height = if i == 0 { FIRST } else { NEXT };
            let (this, rest) = area.split_vertically(height);
            let caption = if i == 0 { title } else { "" };
            draw_panel(&this, panel, series, x_max, caption, &mut colour)?;
            area = rest;
        }
        root.present().map_err(|e| anyhow::anyhow!("{e}"))?;
    }
    save_rgb(path, W, h, buffer)
}

/// A named line: `(step, value)` points.
type Series<'a> = (&'a str, Vec<(f64, f64)>);

/// The `(step, value)` points of each key that has any.
fn series<'a>(records: &[Map<String, Value>], keys: &[&'a str]) -> Vec<Series<'a>> {
    keys.iter()
        .map(|&k| {
            let points = records
                .iter()
                .filter_map(|r| Some((r.get("step")?.as_f64()?, r.get(k)?.as_f64()?)))
                .collect();
            (k, points)
        })
        .filter(|(_, p): &Series| !p.is_empty())
        .collect()
}

/// One chart: y from 0 to just above the largest value, a legend of the keys.
fn draw_panel(
    area: &DrawingArea<BitMapBackend, plotters::coord::Shift>,
    panel: &Panel,
    series: Vec<Series>,
    x_max: f64,
    caption: &str,
    colour: &mut usize,
) -> Result<()> {
    let y_max = series
        .iter()
        .flat_map(|(_, p)| p.iter().map(|&(_, y)| y))
        .fold(0.0f64, f64::max);
    let mut chart = ChartBuilder::on(area)
        .caption(caption, ("sans-serif", 22))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(0.0..x_max, 0.0..(y_max * 1.05).max(1e-6))
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    chart
        .configure_mesh()
        .x_desc("step")
        .y_desc(panel.y_label)
        .draw()
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    for (name, points) in series {
        let color = Palette99::pick(*colour).to_rgba();
        *colour += 1;
        chart
            .draw_series(LineSeries::new(points, color.stroke_width(2)))
            .map_err(|e| anyhow::anyhow!("{e}"))?
            .label(name)
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
            });
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(())
}

pub fn save_rgb(path: &Path, width: u32, height: u32, pixels: Vec<u8>) -> Result<()> {
    let image = image::RgbImage::from_raw(width, height, pixels).context("image buffer size")?;
    let mut bytes = Vec::new();
    image.write_to(
        &mut std::io::Cursor::new(&mut bytes),
        image::ImageFormat::Png,
    )?;
    crate::fsutil::write_atomic(path, &bytes)
}

/// A grid of images: one row per sample, one column per entry; each entry is a normalised
/// `[C, S, S]` image. Tiles are enlarged `zoom` times (nearest) and separated by 2 px; a
/// caption, if any, is written in a strip above them.
pub fn image_grid(
    path: &Path,
    rows: &[Vec<Vec<f32>>],
    channels: usize,
    size: usize,
    norm: &Normalization,
    caption: Option<&str>,
) -> Result<()> {
    const CAPTION: usize = 24;
    let zoom = (96 / size).max(1);
    let tile = size * zoom;
    let cols = rows.first().map_or(0, |r| r.len());
    let top = if caption.is_some() { CAPTION } else { 0 };
    let (w, h) = (cols * (tile + 2) + 2, top + rows.len() * (tile + 2) + 2);
    let mut pixels = vec![64u8; w * h * 3];
    for (r, row) in rows.iter().enumerate() {
        for (c, img) in row.iter().enumerate() {
            let (ox, oy) = (2 + c * (tile + 2), top + 2 + r * (tile + 2));
            for y in 0..tile {
                for x in 0..tile {
                    let (sy, sx) = (y / zoom, x / zoom);
                    for k in 0..3 {
                        let ch = if channels == 1 { 0 } else { k };
                        let v = img[(ch * size + sy) * size + sx] * norm.std[ch] + norm.mean[ch];
                        pixels[((oy + y) * w + ox + x) * 3 + k] =
                            (v.clamp(0.0, 1.0) * 255.0).round() as u8;
                    }
                }
            }
        }
    }
    if let Some(text) = caption {
        register_font();
        let area =
            BitMapBackend::with_buffer(&mut pixels, (w as u32, h as u32)).into_drawing_area();
        area.draw_text(text, &("sans-serif", 16).into_font().color(&WHITE), (6, 4))
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        area.present().map_err(|e| anyhow::anyhow!("{e}"))?;
    }
    save_rgb(path, w as u32, h as u32, pixels)
}
