//! Image preprocessing from a model card, as timm evaluates Swin: decode (format guessed from
//! the content, not the extension), resize the shorter side (bicubic), center crop, scale to
//! [0, 1], normalise per channel, lay out as CHW.

use std::path::Path;

use anyhow::{ensure, Context, Result};
use image::imageops::FilterType;
use image::{DynamicImage, ImageReader};

use crate::onnx::ModelCard;

/// Reads and decodes an image file, whatever its extension says.
pub fn decode(path: &Path) -> Result<DynamicImage> {
    ImageReader::open(path)
        .context("cannot open")?
        .with_guessed_format()
        .context("cannot read")?
        .decode()
        .context("not a decodable image (JPEG or PNG)")
}

/// `[in_chans, S, S]` float32, row-major, ready to batch for the model of `card`.
pub fn preprocess(image: &DynamicImage, card: &ModelCard) -> Result<Vec<f32>> {
    let (w, h) = (image.width(), image.height());
    ensure!(w > 0 && h > 0, "empty image");
    let filter = match card.interpolation.as_str() {
        "bilinear" => FilterType::Triangle,
        "nearest" => FilterType::Nearest,
        _ => FilterType::CatmullRom, // bicubic
    };
    // Shorter side → `resize_shorter_side`, the other keeps the aspect ratio (torchvision's
    // Resize(int): the longer side is truncated).
    let short = card.resize_shorter_side as u64;
    let (nw, nh) = if w <= h {
        (short, short * h as u64 / w as u64)
    } else {
        (short * w as u64 / h as u64, short)
    };
    let resized = image.resize_exact(nw as u32, nh as u32, filter);
    // Center crop as torchvision's CenterCrop: offset round((size - crop) / 2).
    let s = card.image_size as u32;
    ensure!(
        resized.width() >= s && resized.height() >= s,
        "resized to {}x{}, smaller than the {s}x{s} crop",
        resized.width(),
        resized.height()
    );
    let left = ((resized.width() - s) as f64 / 2.0).round() as u32;
    let top = ((resized.height() - s) as f64 / 2.0).round() as u32;
    let crop = resized.crop_imm(left, top, s, s);
    let pixels: Vec<u8> = match card.in_chans {
        1 => crop.to_luma8().into_raw(),
        3 => crop.to_rgb8().into_raw(),
        c => anyhow::bail!("models with {c} input channels take no images (only 1 or 3)"),
    };
    let c = card.in_chans;
    let area = (s * s) as usize;
    let mut chw = vec![0.0f32; c * area];
    for (i, px) in pixels.chunks_exact(c).enumerate() {
        for (ch, &v) in px.iter().enumerate() {
            chw[ch * area + i] = (v as f32 / 255.0 - card.mean[ch]) / card.std[ch];
        }
    }
    Ok(chw)
}

/// Decodes and preprocesses one file; errors say what went wrong (the caller names the file).
pub fn load(path: &Path, card: &ModelCard) -> Result<Vec<f32>> {
    preprocess(&decode(path)?, card)
}

/// The files named by `inputs`: files as given, folders expanded to their files (sorted, not
/// recursive, hidden files skipped). Missing paths are kept, to be reported when read.
pub fn expand_inputs(inputs: &[std::path::PathBuf]) -> Result<Vec<std::path::PathBuf>> {
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
