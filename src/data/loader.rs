//! From dataset records to normalised float batches, prepared on background threads.
//!
//! An epoch's order is a permutation drawn from `(seed, epoch)`, so the position in the data is
//! just `(epoch, step)`: a resumed run sees exactly the batches an uninterrupted one would.

use std::sync::mpsc::{sync_channel, Receiver};
use std::thread::JoinHandle;

use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

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

/// torchvision's `RandomResizedCrop` + `RandomHorizontalFlip`: the light augmentation of
/// SimMIM/EESMM pretraining (`data.augment:`). The crop is then resized to the model's input.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CropAugment {
    /// Share of the image area kept, drawn uniformly from this range `[min, max]` within
    /// (0, 1]. Default: [0.67, 1.0].
    #[serde(default = "default_scale")]
    pub scale: [f32; 2],
    /// Aspect ratio (w/h) of the crop, drawn log-uniformly from this range `[min, max]`, > 0.
    /// Default: [0.75, 1.333].
    #[serde(default = "default_ratio")]
    pub ratio: [f32; 2],
    /// Flip horizontally with probability 1/2. Default: true.
    #[serde(default = "crate::yaml::default_true")]
    pub hflip: bool,
}

fn default_scale() -> [f32; 2] {
    [0.67, 1.0]
}
fn default_ratio() -> [f32; 2] {
    [0.75, 4.0 / 3.0]
}

impl CropAugment {
    /// `scale` a range within (0, 1] and `ratio` a range of positive ratios, each `[min, max]`
    /// with min ≤ max; `key` is where the augmentation is in the YAML (`data.augment`).
    pub fn validate(&self, key: &str) -> anyhow::Result<()> {
        let [min, max] = self.scale;
        anyhow::ensure!(
            min > 0.0 && min <= max && max <= 1.0,
            "{key}.scale: [{min}, {max}] is not a range [min, max] with 0 < min ≤ max ≤ 1 (shares of the image area)"
        );
        let [min, max] = self.ratio;
        anyhow::ensure!(
            min > 0.0 && min <= max && max.is_finite(),
            "{key}.ratio: [{min}, {max}] is not a range [min, max] with 0 < min ≤ max (aspect ratios w/h)"
        );
        Ok(())
    }

    /// A random crop of `image` (10 tries at a fitting box, else the whole image), maybe mirrored.
    pub fn apply(&self, rng: &mut impl Rng, image: &RawImage) -> RawImage {
        let (h, w) = (image.height as f32, image.width as f32);
        let (mut ch, mut cw, mut y0, mut x0) = (image.height, image.width, 0, 0);
        for _ in 0..10 {
            let area = h * w * rng.random_range(self.scale[0]..=self.scale[1]);
            let log_ratio = rng.random_range(self.ratio[0].ln()..=self.ratio[1].ln());
            let (tw, th) = (
                (area * log_ratio.exp()).sqrt().round(),
                (area / log_ratio.exp()).sqrt().round(),
            );
            if tw >= 1.0 && th >= 1.0 && tw <= w && th <= h {
                (cw, ch) = (tw as usize, th as usize);
                y0 = rng.random_range(0..=image.height - ch);
                x0 = rng.random_range(0..=image.width - cw);
                break;
            }
        }
        let flip = self.hflip && rng.random_bool(0.5);
        let c = image.channels;
        let mut pixels = Vec::with_capacity(ch * cw * c);
        for y in 0..ch {
            for x in 0..cw {
                let sx = if flip { x0 + cw - 1 - x } else { x0 + x };
                let at = ((y0 + y) * image.width + sx) * c;
                pixels.extend_from_slice(&image.pixels[at..at + c]);
            }
        }
        RawImage {
            height: ch,
            width: cw,
            channels: c,
            pixels,
        }
    }
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

/// Which images a micro-batch takes: consecutive slices of each epoch's order, the order drawn
/// once per epoch (not per batch) and kept.
#[derive(Debug, Clone)]
pub struct EpochSlices {
    len: usize,
    seed: u64,
    /// Images per micro-batch.
    take: usize,
    micro_per_epoch: usize,
    /// The epoch whose order is held, and that order.
    current: (usize, Vec<usize>),
}

impl EpochSlices {
    pub fn new(len: usize, seed: u64, take: usize, micro_per_epoch: usize) -> Self {
        Self {
            len,
            seed,
            take,
            micro_per_epoch,
            current: (0, Vec::new()),
        }
    }

    /// The dataset indices of micro-batch `micro`, counted from the start of training.
    pub fn indices(&mut self, micro: usize) -> &[usize] {
        let (epoch, position) = (micro / self.micro_per_epoch, micro % self.micro_per_epoch);
        if self.current.0 != epoch || self.current.1.is_empty() {
            self.current = (epoch, epoch_order(self.len, self.seed, epoch));
        }
        &self.current.1[position * self.take..(position + 1) * self.take]
    }
}

/// The random source of one image's augmentation: a function of the micro-batch's seed and the
/// image's position in the whole micro-batch (not of the replica that draws it).
pub fn image_rng(seed: u64, position: usize) -> rand::rngs::StdRng {
    rand::rngs::StdRng::seed_from_u64(
        seed ^ (position as u64 + 1).wrapping_mul(0x2545_F491_4F6C_DD1D),
    )
}

/// `[B, C, S, S]` host pixels (`B` = `pixels.len()` / image size) as a tensor on `device`.
pub fn images_tensor<B: burn::prelude::Backend>(
    pixels: Vec<f32>,
    format: &ImageFormat,
    device: &B::Device,
) -> burn::prelude::Tensor<B, 4> {
    let (c, s) = (format.channels, format.size);
    let batch = pixels.len() / (c * s * s);
    let data = burn::tensor::TensorData::new(pixels, [batch, c, s, s]);
    burn::prelude::Tensor::from_data(data, device)
}

/// Normalised images and labels of `indices`, decoded in parallel.
/// With `crop`, each image first gets a random resized crop and flip drawn from
/// `(seed, position in the micro-batch)`; `indices` start at position `first` (a data-parallel
/// replica decodes only its rows).
pub fn host_batch(
    dataset: &Dataset,
    indices: &[usize],
    first: usize,
    format: &ImageFormat,
    crop: Option<(&CropAugment, u64)>,
) -> anyhow::Result<HostBatch> {
    let images: Vec<Vec<f32>> = indices
        .par_iter()
        .enumerate()
        .map(|(k, &i)| {
            let image = dataset.image(i)?;
            Ok(match crop {
                Some((augment, seed)) => {
                    let mut rng = image_rng(seed, first + k);
                    to_tensor_data(&augment.apply(&mut rng, &image), format)
                }
                None => to_tensor_data(&image, format),
            })
        })
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
        mut prepare: impl FnMut(usize) -> T + Send + 'static,
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

#[cfg(test)]
mod tests {
    use super::*;

    fn ramp(h: usize, w: usize) -> RawImage {
        RawImage {
            height: h,
            width: w,
            channels: 1,
            pixels: (0..h * w).map(|v| v as u8).collect(),
        }
    }

    #[test]
    fn crops_keep_the_requested_area_and_aspect() {
        let augment = CropAugment {
            scale: [0.25, 0.25],
            ratio: [1.0, 1.0],
            hflip: false,
        };
        let mut rng = rand::rngs::StdRng::seed_from_u64(3);
        let crop = augment.apply(&mut rng, &ramp(16, 16));
        assert_eq!((crop.height, crop.width), (8, 8));
        // A contiguous window: each row continues the source row.
        assert_eq!(crop.pixels[1], crop.pixels[0] + 1);
        assert_eq!(crop.pixels[8], crop.pixels[0] + 16);
    }

    #[test]
    fn the_full_scale_flip_mirrors_rows() {
        let augment = CropAugment {
            scale: [1.0, 1.0],
            ratio: [1.0, 1.0],
            hflip: true,
        };
        let image = ramp(4, 4);
        let mirrored = (0..20u64)
            .map(|seed| augment.apply(&mut rand::rngs::StdRng::seed_from_u64(seed), &image))
            .find(|c| c.pixels[0] == 3)
            .expect("a flip in 20 draws");
        assert_eq!(&mirrored.pixels[..4], &[3, 2, 1, 0]);
    }
}
