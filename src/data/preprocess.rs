//! The one way an image file becomes model input, shared by training and evaluation on image
//! folders, `eesmm verify` and `eesmm infer`: decode (the format read from the content, not the
//! extension), convert to RGB, resize the shorter side and center-crop (torchvision's
//! `Resize(int)` + `CenterCrop`, as timm evaluates), then [`to_tensor_data`] for the channel
//! conversion and normalisation. What a model was evaluated with is recorded as a [`Resize`] in
//! its sidecar and its ONNX model card, so that it is what it is served with.

use std::path::{Path, PathBuf};

use anyhow::{bail, ensure, Context, Result};
use image::imageops::FilterType;
use image::{DynamicImage, ImageReader};
use serde::{Deserialize, Serialize};

pub use super::loader::{to_tensor_data, ImageFormat};
use super::RawImage;

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
}

/// Reads and decodes an image file, whatever its extension says.
pub fn decode(path: &Path) -> Result<DynamicImage> {
    ImageReader::open(path)
        .context("cannot open")?
        .with_guessed_format()
        .context("cannot read")?
        .decode()
        .context("not a decodable image (JPEG or PNG)")
}

/// The shorter side resized to `resize.shorter_side`, then the center crop, as RGB bytes.
pub fn resize_and_crop(image: &DynamicImage, resize: &Resize) -> Result<RawImage> {
    let (w, h) = (image.width() as u64, image.height() as u64);
    ensure!(w > 0 && h > 0, "empty image");
    let short = resize.shorter_side as u64;
    // torchvision's Resize(int): the longer side is truncated.
    let (nw, nh) = if w <= h {
        (short, short * h / w)
    } else {
        (short * w / h, short)
    };
    let s = resize.crop as u64;
    ensure!(
        nw >= s && nh >= s,
        "resized to {nw}x{nh}, smaller than the {s}x{s} crop"
    );
    let resized = image.resize_exact(nw as u32, nh as u32, resize.interpolation.filter());
    // torchvision's CenterCrop: offset round((size - crop) / 2).
    let left = ((nw - s) as f64 / 2.0).round() as u32;
    let top = ((nh - s) as f64 / 2.0).round() as u32;
    let crop = resized.crop_imm(left, top, s as u32, s as u32).to_rgb8();
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

/// The files named by `inputs`: files as given, folders expanded to their files (sorted, not
/// recursive, hidden files skipped). Missing paths are kept, to be reported when read.
pub fn expand_inputs(inputs: &[PathBuf]) -> Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for input in inputs {
        if input.is_dir() {
            let mut entries: Vec<_> = std::fs::read_dir(input)
                .with_context(|| format!("{}: cannot list", input.display()))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.is_file())
                .filter(|p| {
                    !p.file_name()
                        .is_some_and(|n| n.to_string_lossy().starts_with('.'))
                })
                .collect();
            entries.sort();
            files.extend(entries);
        } else {
            files.push(input.clone());
        }
    }
    Ok(files)
}
