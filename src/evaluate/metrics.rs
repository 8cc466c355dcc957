//! Classification metrics: top-1/top-5, per-class accuracy and the confusion matrix, as JSON and
//! as a picture.

use std::path::Path;

use anyhow::Result;
use plotters::prelude::*;
use serde::{Deserialize, Serialize};

/// What `eesmm eval` reports (written as `eval.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClassificationReport {
    pub images: usize,
    pub top1: f64,
    pub top5: f64,
    pub per_class: Vec<ClassAccuracy>,
    /// `confusion[true][predicted]`: image counts.
    pub confusion: Vec<Vec<usize>>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClassAccuracy {
    pub class: String,
    pub images: usize,
    pub accuracy: f64,
}

impl ClassificationReport {
    /// From logits `[N, K]` (flattened) and the true labels.
    pub fn from_logits(logits: &[f32], labels: &[usize], class_names: &[String]) -> Self {
        let classes = class_names.len();
        let mut confusion = vec![vec![0usize; classes]; classes];
        let (mut top1, mut top5) = (0usize, 0usize);
        for (row, &label) in logits.chunks(classes).zip(labels) {
            let mut order: Vec<usize> = (0..classes).collect();
            order.sort_by(|&a, &b| row[b].total_cmp(&row[a]));
            confusion[label][order[0]] += 1;
            top1 += usize::from(order[0] == label);
            top5 += usize::from(order.iter().take(5).any(|&k| k == label));
        }
        let n = labels.len().max(1) as f64;
        let per_class = class_names
            .iter()
            .enumerate()
            .map(|(k, name)| {
                let images: usize = confusion[k].iter().sum();
                ClassAccuracy {
                    class: name.clone(),
                    images,
                    accuracy: confusion[k][k] as f64 / images.max(1) as f64,
                }
            })
            .collect();
        Self {
            images: labels.len(),
            top1: top1 as f64 / n,
            top5: top5 as f64 / n,
            per_class,
            confusion,
        }
    }

    /// The confusion matrix as a heat map (rows: true class, columns: predicted), each row
    /// normalised to its class's image count; cells show percentages when there is room.
    pub fn plot_confusion(&self, path: &Path, title: &str) -> Result<()> {
        let k = self.confusion.len();
        let cell = (720 / k.max(1)).clamp(4, 64) as i32;
        let label_width = if k <= 40 { 150 } else { 10 };
        let (w, h) = (
            (label_width + cell * k as i32 + 20) as u32,
            (60 + cell * k as i32 + label_width * 3 / 4) as u32,
        );
        crate::train::report::register_font();
        let mut buffer = vec![255u8; (w * h * 3) as usize];
        {
            let root = BitMapBackend::with_buffer(&mut buffer, (w, h)).into_drawing_area();
            let err = |e: DrawingAreaErrorKind<_>| anyhow::anyhow!("{e}");
            root.draw(&Text::new(
                format!(
                    "{title} — top-1 {:.2} %   (rows: true class, columns: predicted, % of row)",
                    100.0 * self.top1
                ),
                (10, 10),
                ("sans-serif", 20),
            ))
            .map_err(err)?;
            let (x0, y0) = (label_width, 50);
            for (t, row) in self.confusion.iter().enumerate() {
                let total = row.iter().sum::<usize>().max(1) as f64;
                for (p, &count) in row.iter().enumerate() {
                    let share = count as f64 / total;
                    let shade = (255.0 * (1.0 - share)) as u8;
                    let (x, y) = (x0 + p as i32 * cell, y0 + t as i32 * cell);
                    root.draw(&Rectangle::new(
                        [(x, y), (x + cell, y + cell)],
                        RGBColor(shade, shade, 255).filled(),
                    ))
                    .map_err(err)?;
                    if cell >= 28 && count > 0 {
                        let color = if share > 0.5 { WHITE } else { BLACK };
                        root.draw(&Text::new(
                            format!("{:.0}", 100.0 * share),
                            (x + 4, y + cell / 3),
                            ("sans-serif", 12).into_font().color(&color),
                        ))
                        .map_err(err)?;
                    }
                }
            }
            if k <= 40 {
                let size = (cell - 2).clamp(8, 14);
                for (i, class) in self.per_class.iter().enumerate() {
                    let name: String = class.class.chars().take(18).collect();
                    let y = y0 + i as i32 * cell + cell / 3;
                    root.draw(&Text::new(name.clone(), (5, y), ("sans-serif", size)))
                        .map_err(err)?;
                    let x = x0 + i as i32 * cell + cell / 3;
                    let style = ("sans-serif", size)
                        .into_font()
                        .transform(FontTransform::Rotate90);
                    root.draw(&Text::new(name, (x, y0 + k as i32 * cell + 4), style))
                        .map_err(err)?;
                }
            }
            root.present().map_err(err)?;
        }
        crate::train::report::save_rgb(path, w, h, buffer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_top1_top5_and_confusion() {
        let names: Vec<String> = (0..6).map(|k| format!("c{k}")).collect();
        // Three images: correct; label 1 ranked second; label 2 ranked last.
        let logits = [
            9.0, 1.0, 0.0, 0.0, 0.0, 0.0, //
            0.0, 5.0, 0.0, 0.0, 0.0, 6.0, //
            1.0, 2.0, 0.0, 3.0, 4.0, 5.0,
        ];
        let report = ClassificationReport::from_logits(&logits, &[0, 1, 2], &names);
        assert!((report.top1 - 1.0 / 3.0).abs() < 1e-12);
        assert!((report.top5 - 2.0 / 3.0).abs() < 1e-12);
        assert_eq!(report.confusion[1][5], 1);
        assert_eq!(report.confusion[2][5], 1);
        assert_eq!(report.per_class[0].accuracy, 1.0);
        assert_eq!(report.per_class[3].images, 0);
    }
}
