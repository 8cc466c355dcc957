//! The label-efficiency report (`eesmm report label-efficiency`): the rows that
//! `scripts/experiments/label_efficiency.py` writes, summarised as mean ± std per (pretraining, labels), as a
//! Markdown table and as a plot of top-1 against the number of labels with error bars.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, Result};
use plotters::prelude::*;
use serde::Deserialize;

use crate::train::report::{register_font, save_rgb};

/// One run of the experiment (accuracies as fractions; absent where a run does not apply, e.g.
/// no fine-tuning of raw pixels).
#[derive(Debug, Clone, Deserialize)]
pub struct Row {
    pub pretraining: String,
    pub labels: usize,
    pub seed: u64,
    pub finetune_top1: Option<f64>,
    pub linear_probe_top1: Option<f64>,
    pub knn_top1: Option<f64>,
    pub pretrain_wall_s: f64,
    pub pretrain_images: usize,
}

/// Reads one accuracy of a row.
type Metric = fn(&Row) -> Option<f64>;

/// The three ways an encoder is judged, with the names the table and plot give them.
pub const METRICS: [(&str, Metric); 3] = [
    ("fine-tune", |r| r.finetune_top1),
    ("linear probe", |r| r.linear_probe_top1),
    ("20-NN", |r| r.knn_top1),
];

/// Mean and sample standard deviation (0 for one value) of `values`, and their count.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Spread {
    pub mean: f64,
    pub std: f64,
    pub runs: usize,
}

impl Spread {
    pub fn of(values: &[f64]) -> Option<Self> {
        let n = values.len();
        if n == 0 {
            return None;
        }
        let mean = values.iter().sum::<f64>() / n as f64;
        let var = match n {
            1 => 0.0,
            _ => values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1) as f64,
        };
        Some(Self {
            mean,
            std: var.sqrt(),
            runs: n,
        })
    }
}

/// Per (pretraining, labels): the spread of each metric over seeds (None where no run has it).
pub type Summary = BTreeMap<(String, usize), [Option<Spread>; 3]>;

pub fn summarize(rows: &[Row]) -> Summary {
    let mut groups: BTreeMap<(String, usize), Vec<&Row>> = BTreeMap::new();
    for row in rows {
        groups
            .entry((row.pretraining.clone(), row.labels))
            .or_default()
            .push(row);
    }
    groups
        .into_iter()
        .map(|(key, runs)| {
            let spread = |metric: Metric| {
                Spread::of(&runs.iter().filter_map(|r| metric(r)).collect::<Vec<_>>())
            };
            (key, METRICS.map(|(_, metric)| spread(metric)))
        })
        .collect()
}

/// A results file as `scripts/stamp.py` writes it: the machine, versions, date and command
/// (`stamp`, docs/results/README.md), and the rows.
#[derive(Debug, Deserialize)]
struct Stamped {
    #[serde(rename = "stamp")]
    _stamp: serde::de::IgnoredAny,
    rows: Vec<Row>,
}

/// Reads the rows of a stamped results file.
pub fn read_rows(path: &Path) -> Result<Vec<Row>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("{}: cannot read", path.display()))?;
    let file: Stamped = serde_json::from_str(&text).with_context(|| {
        format!(
            "{}: not a stamped file of label-efficiency rows ({{\"stamp\": {{..}}, \"rows\": \
             [{{pretraining, labels, seed, ..._top1}}, ..]}})",
            path.display()
        )
    })?;
    Ok(file.rows)
}

/// The Markdown table: one line per (pretraining, labels), top-1 % as mean ± std (seeds).
pub fn markdown_table(rows: &[Row]) -> String {
    let wall: BTreeMap<&str, (f64, usize)> = rows
        .iter()
        .map(|r| {
            (
                r.pretraining.as_str(),
                (r.pretrain_wall_s, r.pretrain_images),
            )
        })
        .collect();
    let mut out = String::from(
        "| pretraining | pretrain wall time | pretrain images | labels | seeds | fine-tune top-1 % | linear probe top-1 % | 20-NN top-1 % |\n|---|---|---|---|---|---|---|---|\n",
    );
    for ((pretraining, labels), spreads) in summarize(rows) {
        let (seconds, images) = wall[pretraining.as_str()];
        let cell = |s: &Option<Spread>| match s {
            Some(s) if s.runs > 1 => format!("{:.1} ± {:.1}", 100.0 * s.mean, 100.0 * s.std),
            Some(s) => format!("{:.1}", 100.0 * s.mean),
            None => "—".into(),
        };
        let runs = spreads.iter().flatten().map(|s| s.runs).max().unwrap_or(0);
        // Scratch and pixels pretrain nothing.
        let (wall, images) = match images {
            0 => ("—".to_string(), "—".to_string()),
            _ => (format!("{:.1} min", seconds / 60.0), images.to_string()),
        };
        out += &format!(
            "| {pretraining} | {wall} | {images} | {labels} | {runs} | {} | {} | {} |\n",
            cell(&spreads[0]),
            cell(&spreads[1]),
            cell(&spreads[2]),
        );
    }
    out
}

/// Top-1 % against labels (log axis), one panel per metric, one line per pretraining, error
/// bars of ± one std.
pub fn plot(rows: &[Row], path: &Path) -> Result<()> {
    const PANEL: (u32, u32) = (520, 440);
    let summary = summarize(rows);
    let pretrainings: Vec<String> = {
        let mut names: Vec<String> = summary.keys().map(|(p, _)| p.clone()).collect();
        names.dedup();
        names
    };
    let labels: Vec<usize> = rows.iter().map(|r| r.labels).collect();
    let (low, high) = (
        *labels.iter().min().context("no rows to plot")? as f64,
        *labels.iter().max().context("no rows to plot")? as f64,
    );
    let (w, h) = (PANEL.0 * METRICS.len() as u32, PANEL.1);
    register_font();
    let mut buffer = vec![255u8; (w * h * 3) as usize];
    {
        let root = BitMapBackend::with_buffer(&mut buffer, (w, h)).into_drawing_area();
        let panels = root.split_evenly((1, METRICS.len()));
        for (m, (area, (metric_name, _))) in panels.iter().zip(METRICS).enumerate() {
            let mut chart = ChartBuilder::on(area)
                .caption(format!("{metric_name} top-1 %"), ("sans-serif", 20))
                .margin(12)
                .x_label_area_size(40)
                .y_label_area_size(50)
                .build_cartesian_2d((low * 0.8..high * 1.25).log_scale(), 0.0..100.0)
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            chart
                .configure_mesh()
                .x_desc("labels")
                .draw()
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            for (i, name) in pretrainings.iter().enumerate() {
                let color = Palette99::pick(i).to_rgba();
                let points: Vec<(f64, Spread)> = summary
                    .iter()
                    .filter(|((p, _), _)| p == name)
                    .filter_map(|((_, n), spreads)| Some((*n as f64, spreads[m]?)))
                    .collect();
                if points.is_empty() {
                    continue;
                }
                let percent = |v: f64| 100.0 * v;
                chart
                    .draw_series(LineSeries::new(
                        points.iter().map(|(x, s)| (*x, percent(s.mean))),
                        color.stroke_width(2),
                    ))
                    .map_err(|e| anyhow::anyhow!("{e}"))?
                    .label(name.as_str())
                    .legend(move |(x, y)| {
                        PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
                    });
                chart
                    .draw_series(points.iter().map(|(x, s)| {
                        ErrorBar::new_vertical(
                            *x,
                            percent(s.mean - s.std),
                            percent(s.mean),
                            percent(s.mean + s.std),
                            color.filled(),
                            8,
                        )
                    }))
                    .map_err(|e| anyhow::anyhow!("{e}"))?;
            }
            chart
                .configure_series_labels()
                .position(SeriesLabelPosition::LowerRight)
                .background_style(WHITE.mix(0.8))
                .border_style(BLACK)
                .draw()
                .map_err(|e| anyhow::anyhow!("{e}"))?;
        }
        root.present().map_err(|e| anyhow::anyhow!("{e}"))?;
    }
    save_rgb(path, w, h, buffer)
}

/// `eesmm report label-efficiency`: prints the table and writes the plot.
pub fn report(results: &Path, plot_path: &Path) -> Result<()> {
    let rows = read_rows(results)?;
    print!("{}", markdown_table(&rows));
    plot(&rows, plot_path)?;
    println!("plot: {}", plot_path.display());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(pretraining: &str, labels: usize, seed: u64, top1: f64) -> Row {
        Row {
            pretraining: pretraining.into(),
            labels,
            seed,
            finetune_top1: Some(top1),
            linear_probe_top1: None,
            knn_top1: Some(top1 / 2.0),
            pretrain_wall_s: 90.0,
            pretrain_images: 1000,
        }
    }

    /// The committed results: 28 rows, stamped; EESMM fine-tuned on 600 labels averages 76.46 %
    /// over its three seeds (0.768, 0.762, 0.7638).
    #[test]
    fn the_committed_results_file_reads_as_stamped_rows() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/results/label-efficiency.json");
        let rows = read_rows(&path).unwrap();
        assert_eq!(rows.len(), 28);
        let eesmm = summarize(&rows)[&("eesmm".to_string(), 600)][0].unwrap();
        assert_eq!(eesmm.runs, 3);
        assert!((eesmm.mean - 0.7646).abs() < 1e-4, "{}", eesmm.mean);
        let bare = std::env::temp_dir().join("eesmm-bare-rows.json");
        std::fs::write(&bare, "[]").unwrap();
        let error = read_rows(&bare).unwrap_err();
        assert!(
            format!("{error:#}").contains("not a stamped file"),
            "{error:#}"
        );
    }

    #[test]
    fn seeds_are_summarised_as_mean_and_sample_std() {
        let rows = vec![
            row("eesmm", 600, 0, 0.70),
            row("eesmm", 600, 1, 0.74),
            row("eesmm", 600, 2, 0.72),
            Row {
                pretrain_wall_s: 0.0,
                pretrain_images: 0,
                ..row("scratch", 60000, 0, 0.85)
            },
        ];
        let summary = summarize(&rows);
        let eesmm = summary[&("eesmm".to_string(), 600)][0].unwrap();
        assert!((eesmm.mean - 0.72).abs() < 1e-12 && (eesmm.std - 0.02).abs() < 1e-12);
        assert_eq!(eesmm.runs, 3);
        let scratch = summary[&("scratch".to_string(), 60000)];
        assert_eq!(scratch[0].unwrap().std, 0.0);
        assert!(scratch[1].is_none());
        let table = markdown_table(&rows);
        assert!(
            table.contains("| eesmm | 1.5 min | 1000 | 600 | 3 | 72.0 ± 2.0 | — | 36.0 ± 1.0 |")
        );
        assert!(table.contains("| scratch | — | — | 60000 | 1 | 85.0 | — | 42.5 |"));
    }
}
