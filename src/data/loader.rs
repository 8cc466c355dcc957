//! From dataset records to normalised float batches, prepared on background threads.
//!
//! An epoch's order is a permutation drawn from `(seed, epoch)`, so the position in the data is
//! just `(epoch, step)`: a resumed run sees exactly the batches an uninterrupted one would.

use std::sync::mpsc::{sync_channel, Receiver};
use std::thread::JoinHandle;

use rand::seq::SliceRandom;
use rand::SeedableRng;
use rayon::prelude::*;

use super::{Dataset, Normalization, RawImage};

/// How images enter the model: size, channels and normalisation.
#[derive(Debug, Clone, PartialEq)]
pub struct ImageFormat {
    pub size: usize,
    pub channels: usize,
    pub normalization: Normalization,
}

/// A batch on the host: `[B, C, S, S]` row-major, plus labels.
#[derive(Debug, Clone)]
pub struct HostBatch {
    pub images: Vec<f32>,
    pub labels: Vec<usize>,
    pub batch: usize,
}

/// One image as normalised `[C, S, S]` floats: bilinear resize to `S x S`, channel conversion
/// (gray → RGB repeats, RGB → gray by luma), then `(x / 255 - mean) / std`.
pub fn to_tensor_data(image: &RawImage, format: &ImageFormat) -> Vec<f32> {
    let s = format.size;
    let mut out = vec![0.0f32; format.channels * s * s];
    let sample = |y: f32, x: f32, c: usize| -> f32 {
        // Bilinear sample at (y, x) in source pixel coordinates, edges clamped.
        let (h, w) = (image.height as f32, image.width as f32);
        let y = y.clamp(0.0, h - 1.0);
        let x = x.clamp(0.0, w - 1.0);
        let (y0, x0) = (y.floor() as usize, x.floor() as usize);
        let (y1, x1) = (
            (y0 + 1).min(image.height - 1),
            (x0 + 1).min(image.width - 1),
        );
        let (fy, fx) = (y - y0 as f32, x - x0 as f32);
        let at = |yy: usize, xx: usize| {
            image.pixels[(yy * image.width + xx) * image.channels + c] as f32
        };
        let top = at(y0, x0) * (1.0 - fx) + at(y0, x1) * fx;
        let bottom = at(y1, x0) * (1.0 - fx) + at(y1, x1) * fx;
        top * (1.0 - fy) + bottom * fy
    };
    let (scale_y, scale_x) = (
        image.height as f32 / s as f32,
        image.width as f32 / s as f32,
    );
    for y in 0..s {
        for x in 0..s {
            let (sy, sx) = (
                (y as f32 + 0.5) * scale_y - 0.5,
                (x as f32 + 0.5) * scale_x - 0.5,
            );
            let rgb: Vec<f32> = (0..image.channels).map(|c| sample(sy, sx, c)).collect();
            for c in 0..format.channels {
                let value = match (image.channels, format.channels) {
                    (1, _) => rgb[0],
                    (3, 1) => 0.299 * rgb[0] + 0.587 * rgb[1] + 0.114 * rgb[2],
                    _ => rgb[c],
                };
                let n = &format.normalization;
                out[(c * s + y) * s + x] = (value / 255.0 - n.mean[c]) / n.std[c];
            }
        }
    }
    out
}

/// The order of an epoch: a permutation of `0..len` seeded by `(seed, epoch)`.
pub fn epoch_order(len: usize, seed: u64, epoch: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..len).collect();
    let mut rng = rand::rngs::StdRng::seed_from_u64(
        seed ^ (epoch as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15),
    );
    order.shuffle(&mut rng);
    order
}

/// Normalised images and labels of `indices`, decoded in parallel.
pub fn host_batch(
    dataset: &Dataset,
    indices: &[usize],
    format: &ImageFormat,
) -> anyhow::Result<HostBatch> {
    let images: Vec<Vec<f32>> = indices
        .par_iter()
        .map(|&i| Ok(to_tensor_data(dataset.image(i)?.as_ref(), format)))
        .collect::<anyhow::Result<_>>()?;
    Ok(HostBatch {
        images: images.concat(),
        labels: indices.iter().map(|&i| dataset.labels[i]).collect(),
        batch: indices.len(),
    })
}

/// Runs `prepare(step)` for `steps` on a background thread, at most `depth` ahead of the
/// consumer, so decoding and augmentation overlap the training step.
pub struct Prefetcher<T> {
    receiver: Receiver<T>,
    worker: Option<JoinHandle<()>>,
}

impl<T: Send + 'static> Prefetcher<T> {
    pub fn new(
        steps: std::ops::Range<usize>,
        depth: usize,
        prepare: impl Fn(usize) -> T + Send + 'static,
    ) -> Self {
        let (sender, receiver) = sync_channel(depth);
        let worker = std::thread::spawn(move || {
            for step in steps {
                if sender.send(prepare(step)).is_err() {
                    return; // the consumer stopped early
                }
            }
        });
        Self {
            receiver,
            worker: Some(worker),
        }
    }
}

impl<T> Iterator for Prefetcher<T> {
    type Item = T;

    fn next(&mut self) -> Option<T> {
        self.receiver.recv().ok()
    }
}

impl<T> Drop for Prefetcher<T> {
    fn drop(&mut self) {
        // Unblock the worker by dropping the receiver first, then wait for it.
        let (_, empty) = sync_channel(0);
        drop(std::mem::replace(&mut self.receiver, empty));
        if let Some(worker) = self.worker.take() {
            let _ = worker.join();
        }
    }
}
