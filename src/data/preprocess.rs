//! The one way an image file becomes model input, shared by training and evaluation on image
//! folders, `eesmm verify` and `eesmm infer`: decode (the format read from the content, not the
//! extension), convert to RGB, resize the shorter side and center-crop (torchvision's
//! `Resize(int)` + `CenterCrop`, as timm evaluates), then [`to_tensor_data`] for the channel
//! conversion and normalisation. What a model was evaluated with is recorded as a [`Resize`] in
//! its sidecar and its ONNX model card, so that it is what it is served with.

use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};

use anyhow::{bail, ensure, Context, Result};
use image::imageops::FilterType;
use image::{DynamicImage, ImageDecoder, ImageReader};
use serde::{Deserialize, Serialize};

pub use super::loader::{to_tensor_data, ImageFormat};
use super::RawImage;
use crate::limits;

/// timm's Swin evaluation crop: the shorter side goes to `⌊size / 0.9⌋`, then a center crop.
pub const CROP_PCT: f64 = 0.9;

/// The resampling filter of the resize.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Interpolation {
    Bicubic,
    Bilinear,
    Nearest,
}

impl Interpolation {
    /// The name in an ONNX model card.
    pub fn name(self) -> &'static str {
        match self {
            Self::Bicubic => "bicubic",
            Self::Bilinear => "bilinear",
            Self::Nearest => "nearest",
        }
    }

    pub fn parse(name: &str) -> Result<Self> {
        Ok(match name {
            "bicubic" => Self::Bicubic,
            "bilinear" => Self::Bilinear,
            "nearest" => Self::Nearest,
            other => bail!("interpolation `{other}` is not bicubic, bilinear or nearest"),
        })
    }

    fn filter(self) -> FilterType {
        match self {
            Self::Bicubic => FilterType::CatmullRom,
            Self::Bilinear => FilterType::Triangle,
            Self::Nearest => FilterType::Nearest,
        }
    }
}

/// How a decoded image is brought to the model's input size.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resize {
    /// The shorter side is resized to this; the longer keeps the aspect ratio (truncated).
    pub shorter_side: usize,
    /// Then the center `crop x crop` is kept.
    pub crop: usize,
    pub interpolation: Interpolation,
}

impl Resize {
    /// timm's evaluation transform for a `size` px model: shorter side `⌊size / 0.9⌋`, bicubic.
    pub fn timm_eval(size: usize) -> Self {
        Self {
            shorter_side: (size as f64 / CROP_PCT).floor() as usize,
            crop: size,
            interpolation: Interpolation::Bicubic,
        }
    }

    /// Images already at the model's size, taken whole (datasets held in memory: Fashion-MNIST,
    /// CIFAR).
    pub fn native(size: usize) -> Self {
        Self {
            shorter_side: size,
            crop: size,
            interpolation: Interpolation::Bicubic,
        }
    }

    /// The size the image is resized to before the crop, refused when smaller than the crop or
    /// past [`limits::MAX_RESIZED_PIXELS`] (an extreme aspect ratio).
    pub fn target(&self, w: u64, h: u64) -> Result<(u32, u32)> {
        ensure!(w > 0 && h > 0, "empty image");
        let short = self.shorter_side as u64;
        // torchvision's Resize(int): the longer side is truncated.
        let (long, shorter) = (w.max(h), w.min(h));
        let long = short
            .checked_mul(long)
            .map(|l| l / shorter)
            .context("the resize overflows")?;
        let (nw, nh) = if w <= h { (short, long) } else { (long, short) };
        let s = self.crop as u64;
        ensure!(
            nw >= s && nh >= s,
            "resized to {nw}x{nh}, smaller than the {s}x{s} crop"
        );
        ensure!(
            nw.saturating_mul(nh) <= limits::MAX_RESIZED_PIXELS,
            "a {w}x{h} image resized to {nw}x{nh} is more than the {} pixels allowed",
            limits::MAX_RESIZED_PIXELS
        );
        Ok((nw as u32, nh as u32))
    }
}

/// Opens an image file for decoding, the format read from its content, with the decoder's
/// allocation bounded ([`limits::MAX_DECODER_BYTES`]). Only regular files are opened: a FIFO
/// would block.
fn open(path: &Path) -> Result<ImageReader<BufReader<File>>> {
    let meta = std::fs::metadata(path).context("cannot open")?;
    ensure!(meta.is_file(), "not a regular file");
    let mut reader = ImageReader::open(path)
        .context("cannot open")?
        .with_guessed_format()
        .context("cannot read")?;
    let mut bounds = image::Limits::default();
    bounds.max_alloc = Some(limits::MAX_DECODER_BYTES);
    reader.limits(bounds);
    Ok(reader)
}

/// Width and height from a decoder, refused past [`limits::MAX_IMAGE_PIXELS`].
fn checked_dimensions(decoder: &impl ImageDecoder) -> Result<(u32, u32)> {
    let (w, h) = decoder.dimensions();
    ensure!(w > 0 && h > 0, "empty image ({w}x{h})");
    ensure!(
        u64::from(w) * u64::from(h) <= limits::MAX_IMAGE_PIXELS,
        "{w}x{h} is more than the {} pixels allowed",
        limits::MAX_IMAGE_PIXELS
    );
    Ok((w, h))
}

/// Reads an image's header: its size is within bounds, and so is its size after `resize`.
pub fn probe(path: &Path, resize: &Resize) -> Result<()> {
    let decoder = open(path)?.into_decoder().context("not a readable image")?;
    let (w, h) = checked_dimensions(&decoder)?;
    resize.target(w.into(), h.into()).map(|_| ())
}

/// Reads and decodes an image file, whatever its extension says. A JPEG must be complete (end
/// with its end-of-image marker): the decoder would fill a truncated one in silently.
pub fn decode(path: &Path) -> Result<DynamicImage> {
    let reader = open(path)?;
    if reader.format() == Some(image::ImageFormat::Jpeg) {
        let bytes = std::fs::read(path).context("cannot read")?;
        ensure!(
            jpeg_is_complete(&bytes),
            "truncated JPEG (no end-of-image marker after its last scan)"
        );
    }
    let decoder = reader
        .into_decoder()
        .context("not a decodable image (JPEG or PNG)")?;
    checked_dimensions(&decoder)?;
    DynamicImage::from_decoder(decoder).context("not a decodable image (JPEG or PNG)")
}

/// Whether an end-of-image marker (FF D9) follows the last start-of-scan marker (FF DA): scan
/// data cannot hold either (an FF there is followed by 00), so a file cut inside its last scan
/// has none.
fn jpeg_is_complete(bytes: &[u8]) -> bool {
    let last_scan = bytes.windows(2).rposition(|m| m == [0xFF, 0xDA]);
    last_scan.is_some_and(|at| bytes[at..].windows(2).any(|m| m == [0xFF, 0xD9]))
}

/// The shorter side resized to `resize.shorter_side`, then the center crop, as RGB bytes.
pub fn resize_and_crop(image: &DynamicImage, resize: &Resize) -> Result<RawImage> {
    let (nw, nh) = resize.target(image.width().into(), image.height().into())?;
    let s = resize.crop as u32;
    let resized = image.resize_exact(nw, nh, resize.interpolation.filter());
    // torchvision's CenterCrop: offset round((size - crop) / 2).
    let left = ((nw - s) as f64 / 2.0).round() as u32;
    let top = ((nh - s) as f64 / 2.0).round() as u32;
    let crop = resized.crop_imm(left, top, s, s).to_rgb8();
    Ok(RawImage {
        height: resize.crop,
        width: resize.crop,
        channels: 3,
        pixels: crop.into_raw(),
    })
}

/// Decodes, resizes and crops one file; errors say what went wrong (the caller names the file).
pub fn load(path: &Path, resize: &Resize) -> Result<RawImage> {
    resize_and_crop(&decode(path)?, resize)
}

/// One file as model input `[C, S, S]`: [`load`], then [`to_tensor_data`].
pub fn load_input(path: &Path, resize: &Resize, format: &ImageFormat) -> Result<Vec<f32>> {
    Ok(to_tensor_data(&load(path, resize)?, format))
}

/// The files named by `inputs`: files as given, folders expanded to their regular files (sorted,
/// not recursive, hidden files skipped; other entries such as FIFOs are left out with a warning).
/// Missing paths are kept, to be reported when read.
pub fn expand_inputs(inputs: &[PathBuf]) -> Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for input in inputs {
        if !input.is_dir() {
            files.push(input.clone());
            continue;
        }
        let mut entries = Vec::new();
        let mut left_out = Vec::new();
        for entry in
            std::fs::read_dir(input).with_context(|| format!("{}: cannot list", input.display()))?
        {
            let path = entry
                .with_context(|| format!("{}: cannot list", input.display()))?
                .path();
            if path
                .file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with('.'))
            {
                continue;
            }
            match std::fs::metadata(&path) {
                Ok(meta) if meta.is_file() => entries.push(path),
                Ok(meta) if meta.is_dir() => {}
                _ => left_out.push(path),
            }
        }
        if let Some(first) = left_out.first() {
            tracing::warn!(
                "{}: left out {} entries that are not regular files, e.g. {}",
                input.display(),
                left_out.len(),
                first.display()
            );
        }
        entries.sort();
        files.extend(entries);
    }
    Ok(files)
}
