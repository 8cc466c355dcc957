//! Fashion-MNIST in its original idx format (`.gz` or plain), as Debian's
//! `dataset-fashion-mnist` installs it under `/usr/share/datasets/fashion-mnist/`.

use std::io::Read;
use std::path::Path;

use anyhow::{bail, ensure, Context, Result};

use super::{Dataset, Images, Normalization, RawImage, Split};

pub const DEFAULT_ROOT: &str = "/usr/share/datasets/fashion-mnist";

pub const CLASS_NAMES: [&str; 10] = [
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
];

/// Mean and std of the 60,000 training images (pixels in [0, 1]).
pub const NORMALIZATION: ([f32; 1], [f32; 1]) = ([0.2860], [0.3530]);

pub fn load(root: &Path, split: Split) -> Result<Dataset> {
    let prefix = match split {
        Split::Train => "train",
        Split::Test => "t10k",
    };
    let images = read_idx(&find(root, &format!("{prefix}-images-idx3-ubyte"))?, 0x0803)?;
    let labels = read_idx(&find(root, &format!("{prefix}-labels-idx1-ubyte"))?, 0x0801)?;
    let (image_dims, pixels) = images;
    let (label_dims, labels) = labels;
    ensure!(
        image_dims.len() == 3 && label_dims.len() == 1,
        "{}: unexpected idx ranks",
        root.display()
    );
    ensure!(
        image_dims[0] == label_dims[0],
        "{}: {} images but {} labels",
        root.display(),
        image_dims[0],
        label_dims[0]
    );
    let (height, width) = (image_dims[1], image_dims[2]);
    if let Some(bad) = labels.iter().position(|&l| l >= 10) {
        bail!(
            "{}: label {} of record {bad} is not a class 0-9",
            root.display(),
            labels[bad]
        );
    }
    Ok(Dataset {
        images: Images::Decoded(
            pixels
                .chunks_exact(height * width)
                .map(|p| RawImage {
                    height,
                    width,
                    channels: 1,
                    pixels: p.to_vec(),
                })
                .collect(),
        ),
        labels: labels.into_iter().map(usize::from).collect(),
        class_names: CLASS_NAMES.iter().map(|s| s.to_string()).collect(),
        normalization: Normalization {
            mean: NORMALIZATION.0.to_vec(),
            std: NORMALIZATION.1.to_vec(),
        },
    })
}

/// `name.gz` if present, else `name`.
fn find(root: &Path, name: &str) -> Result<std::path::PathBuf> {
    [format!("{name}.gz"), name.to_string()]
        .into_iter()
        .map(|n| root.join(n))
        .find(|p| p.exists())
        .with_context(|| {
            format!(
                "{}: no {name}[.gz] (Fashion-MNIST idx files; on Debian: apt-get install dataset-fashion-mnist)",
                root.display()
            )
        })
}

/// Reads an idx file (gzip detected by content): its dimensions and unsigned-byte payload.
pub fn read_idx(path: &Path, magic: u32) -> Result<(Vec<usize>, Vec<u8>)> {
    let raw = std::fs::read(path).with_context(|| format!("{}: cannot read", path.display()))?;
    let bytes = if raw.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(&raw[..])
            .read_to_end(&mut out)
            .with_context(|| format!("{}: corrupt gzip stream", path.display()))?;
        out
    } else {
        raw
    };
    ensure!(bytes.len() >= 4, "{}: truncated idx header", path.display());
    let found = u32::from_be_bytes(bytes[..4].try_into().unwrap());
    ensure!(
        found == magic,
        "{}: idx magic {found:#010x}, expected {magic:#010x}",
        path.display()
    );
    let rank = (magic & 0xff) as usize;
    ensure!(
        bytes.len() >= 4 + 4 * rank,
        "{}: truncated idx header",
        path.display()
    );
    let dims: Vec<usize> = (0..rank)
        .map(|i| u32::from_be_bytes(bytes[4 + 4 * i..8 + 4 * i].try_into().unwrap()) as usize)
        .collect();
    let record: usize = dims[1..].iter().product();
    let payload = &bytes[4 + 4 * rank..];
    if payload.len() < dims[0] * record {
        bail!(
            "{}: truncated at record {} of {} (expected {} bytes of data, found {})",
            path.display(),
            payload.len() / record.max(1),
            dims[0],
            dims[0] * record,
            payload.len()
        );
    }
    let count = dims[0] * record;
    Ok((dims, payload[..count].to_vec()))
}
