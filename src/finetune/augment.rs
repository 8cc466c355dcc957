//! Fine-tuning augmentation as timm does it: RandAugment on the decoded image, random erasing on
//! the normalised tensor, and Mixup / CutMix with label smoothing on the batch.

use rand::Rng;
use rand_distr::{Beta, Distribution, StandardNormal};
use serde::{Deserialize, Serialize};

use crate::data::RawImage;

/// `augment:` of a fine-tuning stage. Every part is off unless set.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FinetuneAugment {
    /// timm's RandAugment on the decoded image. Default: none (off).
    #[serde(default)]
    pub rand_augment: Option<RandAugment>,
    /// Probability of erasing one random box per image (timm's `RandomErasing`, pixel mode),
    /// in [0, 1]. Default: 0.0.
    #[serde(default)]
    pub random_erasing: f64,
    /// Mixup's Beta(α, α) parameter α ≥ 0; 0 turns it off. Default: 0.0.
    #[serde(default)]
    pub mixup: f64,
    /// CutMix's Beta(α, α) parameter α ≥ 0; 0 turns it off. Default: 0.0.
    #[serde(default)]
    pub cutmix: f64,
    /// Probability that a batch is mixed at all, in [0, 1]. Default: 1.0.
    #[serde(default = "one")]
    pub mix_prob: f64,
    /// With both on: probability of CutMix rather than Mixup for a batch, in [0, 1].
    /// Default: 0.5.
    #[serde(default = "half")]
    pub switch_prob: f64,
    /// Label smoothing of the cross-entropy, in [0, 1). Default: 0.0.
    #[serde(default)]
    pub label_smoothing: f64,
}

fn one() -> f64 {
    1.0
}
fn half() -> f64 {
    0.5
}

/// timm's `rand-m{magnitude}-n{num_ops}`: `num_ops` operations drawn uniformly per image, each
/// at `magnitude` out of 10 (signed at random where it has a direction).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RandAugment {
    /// Operations applied per image. Default: 2.
    #[serde(default = "two")]
    pub num_ops: usize,
    /// Strength of every operation, in [0, 10]. Default: 9.0.
    #[serde(default = "nine")]
    pub magnitude: f32,
}

fn two() -> usize {
    2
}
fn nine() -> f32 {
    9.0
}

/// The operations RandAugment draws from (timm's `_RAND_INCREASING_TRANSFORMS`).
#[derive(Debug, Clone, Copy, PartialEq)]
enum Op {
    AutoContrast,
    Equalize,
    Invert,
    Rotate,
    Posterize,
    Solarize,
    Color,
    Contrast,
    Brightness,
    Sharpness,
    ShearX,
    ShearY,
    TranslateX,
    TranslateY,
}

const OPS: [Op; 14] = [
    Op::AutoContrast,
    Op::Equalize,
    Op::Invert,
    Op::Rotate,
    Op::Posterize,
    Op::Solarize,
    Op::Color,
    Op::Contrast,
    Op::Brightness,
    Op::Sharpness,
    Op::ShearX,
    Op::ShearY,
    Op::TranslateX,
    Op::TranslateY,
];

/// PIL's fill for pixels that come from outside the image.
const FILL: u8 = 128;

impl RandAugment {
    pub fn apply(&self, rng: &mut impl Rng, image: &RawImage) -> RawImage {
        let mut image = image.clone();
        for _ in 0..self.num_ops {
            let op = OPS[rng.random_range(0..OPS.len())];
            let sign = if rng.random_bool(0.5) { -1.0 } else { 1.0 };
            image = apply_op(op, &image, self.magnitude / 10.0, sign);
        }
        image
    }
}

/// One operation at strength `level` in [0, 1].
fn apply_op(op: Op, image: &RawImage, level: f32, sign: f32) -> RawImage {
    let (w, h) = (image.width as f32, image.height as f32);
    match op {
        Op::AutoContrast => per_channel(image, |values| {
            let (lo, hi) = (*values.iter().min().unwrap(), *values.iter().max().unwrap());
            let span = (hi - lo).max(1) as f32;
            values
                .iter()
                .map(|&v| {
                    if hi > lo {
                        ((v - lo) as f32 * 255.0 / span) as u8
                    } else {
                        v
                    }
                })
                .collect()
        }),
        Op::Equalize => per_channel(image, equalize),
        Op::Invert => map_pixels(image, |v| 255 - v),
        Op::Posterize => {
            let bits = (8.0 - (4.0 * level).round()) as u32; // 8 → 4 bits
            let mask = (0xFFu32 << (8 - bits)) as u8;
            map_pixels(image, |v| v & mask)
        }
        Op::Solarize => {
            let threshold = (256.0 - 256.0 * level) as u16;
            map_pixels(image, |v| if v as u16 >= threshold { 255 - v } else { v })
        }
        Op::Color => {
            let gray = grayscale(image);
            blend(image, &gray, 1.0 + sign * 0.9 * level)
        }
        Op::Contrast => {
            let mean = grayscale(image)
                .pixels
                .iter()
                .map(|&v| v as f32)
                .sum::<f32>()
                / (image.width * image.height * image.channels) as f32;
            let flat = filled(image, mean.round() as u8);
            blend(image, &flat, 1.0 + sign * 0.9 * level)
        }
        Op::Brightness => blend(image, &filled(image, 0), 1.0 + sign * 0.9 * level),
        Op::Sharpness => blend(image, &smooth(image), 1.0 + sign * 0.9 * level),
        Op::Rotate => {
            let angle = (sign * 30.0 * level).to_radians();
            let (cos, sin) = (angle.cos(), angle.sin());
            let (cx, cy) = (w / 2.0, h / 2.0);
            // Output pixel → source pixel: rotate about the centre.
            affine(
                image,
                [
                    cos,
                    sin,
                    cx - cos * cx - sin * cy,
                    -sin,
                    cos,
                    cy + sin * cx - cos * cy,
                ],
            )
        }
        Op::ShearX => affine(image, [1.0, sign * 0.3 * level, 0.0, 0.0, 1.0, 0.0]),
        Op::ShearY => affine(image, [1.0, 0.0, 0.0, sign * 0.3 * level, 1.0, 0.0]),
        Op::TranslateX => affine(image, [1.0, 0.0, sign * 0.45 * level * w, 0.0, 1.0, 0.0]),
        Op::TranslateY => affine(image, [1.0, 0.0, 0.0, 0.0, 1.0, sign * 0.45 * level * h]),
    }
}

fn map_pixels(image: &RawImage, f: impl Fn(u8) -> u8) -> RawImage {
    RawImage {
        pixels: image.pixels.iter().map(|&v| f(v)).collect(),
        ..image.clone()
    }
}

fn filled(image: &RawImage, value: u8) -> RawImage {
    map_pixels(image, |_| value)
}

/// Applies `f` to each channel's values separately.
fn per_channel(image: &RawImage, f: impl Fn(&[u8]) -> Vec<u8>) -> RawImage {
    let c = image.channels;
    let mut out = image.clone();
    for k in 0..c {
        let values: Vec<u8> = image.pixels.iter().skip(k).step_by(c).copied().collect();
        for (i, v) in f(&values).into_iter().enumerate() {
            out.pixels[i * c + k] = v;
        }
    }
    out
}

/// Histogram equalisation (PIL's `ImageOps.equalize`).
fn equalize(values: &[u8]) -> Vec<u8> {
    let mut histogram = [0usize; 256];
    for &v in values {
        histogram[v as usize] += 1;
    }
    let last = histogram.iter().rposition(|&n| n > 0).unwrap_or(0);
    let step = (values.len() - histogram[last]) / 255;
    if step == 0 {
        return values.to_vec();
    }
    let mut lut = [0u8; 256];
    let mut running = step / 2;
    for (v, &n) in histogram.iter().enumerate() {
        lut[v] = (running / step).min(255) as u8;
        running += n;
    }
    values.iter().map(|&v| lut[v as usize]).collect()
}

/// Luma (ITU-R 601) repeated over the image's channels.
fn grayscale(image: &RawImage) -> RawImage {
    if image.channels == 1 {
        return image.clone();
    }
    let c = image.channels;
    let mut out = image.clone();
    for px in out.pixels.chunks_mut(c) {
        let luma = 0.299 * px[0] as f32 + 0.587 * px[1] as f32 + 0.114 * px[2] as f32;
        px.iter_mut().for_each(|v| *v = luma.round() as u8);
    }
    out
}

/// PIL's `SMOOTH` filter (3×3, centre weight 5, others 1); borders are kept.
fn smooth(image: &RawImage) -> RawImage {
    let (w, h, c) = (image.width, image.height, image.channels);
    let mut out = image.clone();
    for y in 1..h.saturating_sub(1) {
        for x in 1..w.saturating_sub(1) {
            for k in 0..c {
                let mut sum = 4 * image.pixels[(y * w + x) * c + k] as u32;
                for dy in 0..3 {
                    for dx in 0..3 {
                        sum += image.pixels[((y + dy - 1) * w + x + dx - 1) * c + k] as u32;
                    }
                }
                out.pixels[(y * w + x) * c + k] = ((sum + 6) / 13) as u8;
            }
        }
    }
    out
}

/// `degenerate + factor · (image − degenerate)`, clamped (PIL's `ImageEnhance`).
fn blend(image: &RawImage, degenerate: &RawImage, factor: f32) -> RawImage {
    RawImage {
        pixels: image
            .pixels
            .iter()
            .zip(&degenerate.pixels)
            .map(|(&a, &d)| (d as f32 + factor * (a as f32 - d as f32)).clamp(0.0, 255.0) as u8)
            .collect(),
        ..image.clone()
    }
}

/// PIL's `Image.transform(AFFINE)`: output pixel (x, y) takes the source at
/// `(a·x + b·y + c, d·x + e·y + f)` (nearest), or [`FILL`] outside the image.
fn affine(image: &RawImage, [a, b, c, d, e, f]: [f32; 6]) -> RawImage {
    let (w, h, ch) = (image.width, image.height, image.channels);
    let mut pixels = vec![FILL; w * h * ch];
    for y in 0..h {
        for x in 0..w {
            let (px, py) = (x as f32 + 0.5, y as f32 + 0.5);
            let (sx, sy) = (a * px + b * py + c, d * px + e * py + f);
            if sx >= 0.0 && sy >= 0.0 && (sx as usize) < w && (sy as usize) < h {
                let from = ((sy as usize) * w + sx as usize) * ch;
                pixels[(y * w + x) * ch..][..ch].copy_from_slice(&image.pixels[from..from + ch]);
            }
        }
    }
    RawImage {
        pixels,
        ..image.clone()
    }
}

/// timm's `RandomErasing(mode='pixel')` on one normalised `[C, S, S]` image: with probability
/// `prob`, a box of 2–33 % of the area (aspect 0.3–3.3) is filled with N(0, 1) noise.
pub fn random_erase(
    rng: &mut impl Rng,
    image: &mut [f32],
    channels: usize,
    size: usize,
    prob: f64,
) {
    if prob <= 0.0 || !rng.random_bool(prob.min(1.0)) {
        return;
    }
    let area = (size * size) as f32;
    for _ in 0..10 {
        let target = area * rng.random_range(0.02..1.0 / 3.0);
        let aspect = rng.random_range(0.3f32.ln()..3.3f32.ln()).exp();
        let (h, w) = (
            (target * aspect).sqrt().round() as usize,
            (target / aspect).sqrt().round() as usize,
        );
        if h == 0 || w == 0 || h >= size || w >= size {
            continue;
        }
        let (top, left) = (
            rng.random_range(0..=size - h),
            rng.random_range(0..=size - w),
        );
        for c in 0..channels {
            for y in top..top + h {
                for x in left..left + w {
                    image[(c * size + y) * size + x] = StandardNormal.sample(rng);
                }
            }
        }
        return;
    }
}

/// Smoothed one-hot targets: `1 − ε + ε/K` for the label, `ε/K` elsewhere.
pub fn smoothed_targets(labels: &[usize], classes: usize, smoothing: f64) -> Vec<f32> {
    let off = (smoothing / classes as f64) as f32;
    let on = (1.0 - smoothing) as f32 + off;
    labels
        .iter()
        .flat_map(|&label| (0..classes).map(move |k| if k == label { on } else { off }))
        .collect()
}

impl FinetuneAugment {
    /// timm's `Mixup` in batch mode: with probability `mix_prob`, mixes the batch with itself
    /// reversed (Mixup blends whole images; CutMix pastes a box and takes λ from its area),
    /// and mixes the smoothed targets with the same λ. Returns the targets `[B, K]`.
    pub fn mix_batch(
        &self,
        rng: &mut impl Rng,
        images: &mut [f32],
        labels: &[usize],
        classes: usize,
        channels: usize,
        size: usize,
    ) -> Vec<f32> {
        let targets = smoothed_targets(labels, classes, self.label_smoothing);
        let on = self.mixup > 0.0 || self.cutmix > 0.0;
        if !on || !rng.random_bool(self.mix_prob.clamp(0.0, 1.0)) {
            return targets;
        }
        let use_cutmix =
            self.cutmix > 0.0 && (self.mixup <= 0.0 || rng.random_bool(self.switch_prob));
        let alpha = if use_cutmix { self.cutmix } else { self.mixup };
        let mut lambda = Beta::new(alpha, alpha).expect("alpha > 0").sample(rng) as f32;
        let batch = labels.len();
        let plane = channels * size * size;
        let reversed: Vec<f32> = (0..batch)
            .rev()
            .flat_map(|i| images[i * plane..(i + 1) * plane].to_vec())
            .collect();
        if use_cutmix {
            let cut = (1.0 - lambda).sqrt();
            let (ch, cw) = ((size as f32 * cut) as usize, (size as f32 * cut) as usize);
            let (cy, cx) = (rng.random_range(0..size), rng.random_range(0..size));
            let (y0, y1) = (cy.saturating_sub(ch / 2), (cy + ch / 2).min(size));
            let (x0, x1) = (cx.saturating_sub(cw / 2), (cx + cw / 2).min(size));
            for i in 0..batch {
                for c in 0..channels {
                    for y in y0..y1 {
                        for x in x0..x1 {
                            let at = i * plane + (c * size + y) * size + x;
                            images[at] = reversed[at];
                        }
                    }
                }
            }
            lambda = 1.0 - ((y1 - y0) * (x1 - x0)) as f32 / (size * size) as f32;
        } else {
            for (v, r) in images.iter_mut().zip(&reversed) {
                *v = lambda * *v + (1.0 - lambda) * r;
            }
        }
        (0..batch)
            .flat_map(|i| {
                let (own, other) = (
                    &targets[i * classes..(i + 1) * classes],
                    &targets[(batch - 1 - i) * classes..(batch - i) * classes],
                );
                own.iter()
                    .zip(other)
                    .map(|(a, b)| lambda * a + (1.0 - lambda) * b)
                    .collect::<Vec<_>>()
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn ramp() -> RawImage {
        RawImage {
            height: 8,
            width: 8,
            channels: 1,
            pixels: (0..64).map(|v| (v * 4) as u8).collect(),
        }
    }

    #[test]
    fn smoothed_targets_sum_to_one() {
        let t = smoothed_targets(&[2, 0], 4, 0.1);
        assert_eq!(t.len(), 8);
        assert!((t[2] - 0.925).abs() < 1e-6 && (t[0] - 0.025).abs() < 1e-6);
        assert!((t[..4].iter().sum::<f32>() - 1.0).abs() < 1e-6);
    }

    #[test]
    fn mixup_mixes_images_and_targets_with_one_lambda() {
        let augment = FinetuneAugment {
            mixup: 0.8,
            mix_prob: 1.0,
            ..Default::default()
        };
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        let mut images = vec![0.0, 1.0]; // two 1×1 images
        let targets = augment.mix_batch(&mut rng, &mut images, &[0, 1], 2, 1, 1);
        // Image 0 becomes λ·0 + (1 − λ)·1 = 1 − λ; its target is [λ, 1 − λ].
        let lambda = targets[0];
        assert!(lambda > 0.0 && lambda < 1.0);
        assert!((images[0] - (1.0 - lambda)).abs() < 1e-6);
        assert!((targets[1] - (1.0 - lambda)).abs() < 1e-6);
        assert!((targets[2] - (1.0 - lambda)).abs() < 1e-6);
    }

    #[test]
    fn cutmix_lambda_is_the_kept_area() {
        let augment = FinetuneAugment {
            cutmix: 1.0,
            mix_prob: 1.0,
            ..Default::default()
        };
        let mut rng = rand::rngs::StdRng::seed_from_u64(4);
        let size = 16;
        let mut images: Vec<f32> = (0..2 * size * size)
            .map(|i| if i < size * size { 0.0 } else { 1.0 })
            .collect();
        let targets = augment.mix_batch(&mut rng, &mut images, &[0, 1], 2, 1, size);
        let pasted = images[..size * size].iter().filter(|&&v| v == 1.0).count();
        let kept = 1.0 - pasted as f32 / (size * size) as f32;
        assert!((targets[0] - kept).abs() < 1e-6, "{} vs {kept}", targets[0]);
    }

    #[test]
    fn rand_augment_ops_keep_the_shape_and_do_what_they_say() {
        let image = ramp();
        for op in OPS {
            let out = apply_op(op, &image, 0.9, 1.0);
            assert_eq!(out.pixels.len(), image.pixels.len(), "{op:?}");
        }
        assert_eq!(apply_op(Op::Invert, &image, 1.0, 1.0).pixels[0], 255);
        // Translating right by 45 % of 8 px (3.6 → source x − 3.6): the left columns are fill.
        let moved = apply_op(Op::TranslateX, &image, 1.0, -1.0);
        assert_eq!(moved.pixels[0], FILL);
        assert_eq!(moved.pixels[4], image.pixels[0]);
        let stretched = apply_op(Op::AutoContrast, &image, 1.0, 1.0);
        assert_eq!((stretched.pixels[0], stretched.pixels[63]), (0, 255));
    }

    #[test]
    fn random_erasing_fills_one_box() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(0);
        let mut image = vec![5.0f32; 3 * 16 * 16];
        random_erase(&mut rng, &mut image, 3, 16, 1.0);
        let changed = image.iter().filter(|&&v| v != 5.0).count();
        assert!(changed >= 3 * 5 && changed % 3 == 0, "{changed}");
    }
}
