//! Fashion-MNIST in its original idx format (`.gz` or plain), as Debian's
//! `dataset-fashion-mnist` installs it under `/usr/share/datasets/fashion-mnist/`.

use std::io::Read;
use std::path::Path;

use anyhow::{bail, ensure, Context, Result};

use super::{Dataset, Images, Normalization, RawImage, Split};
use crate::limits;

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
    let images_path = find(root, &format!("{prefix}-images-idx3-ubyte"))?;
    let labels_path = find(root, &format!("{prefix}-labels-idx1-ubyte"))?;
    let (image_dims, pixels) = read_idx(&images_path, 0x0803)?;
    let (label_dims, labels) = read_idx(&labels_path, 0x0801)?;
    let (&[images, height, width], &[label_count]) = (&image_dims[..], &label_dims[..]) else {
        bail!("{}: unexpected idx ranks", root.display());
    };
    ensure!(
        images == label_count,
        "{}: {images} images but {label_count} labels",
        root.display(),
    );
    if let Some((bad, label)) = labels.iter().enumerate().find(|(_, &l)| l >= 10) {
        bail!(
            "{}: label {label} of record {bad} is not a class 0-9",
            labels_path.display()
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
        gunzip(&raw).with_context(|| format!("{}: corrupt gzip stream", path.display()))?
    } else {
        raw
    };
    parse_idx(&bytes, magic).with_context(|| path.display().to_string())
}

/// A gzip stream's content, refused past [`limits::MAX_DECOMPRESSED_BYTES`].
fn gunzip(raw: &[u8]) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(raw)
        .take(limits::MAX_DECOMPRESSED_BYTES + 1)
        .read_to_end(&mut out)?;
    ensure!(
        out.len() as u64 <= limits::MAX_DECOMPRESSED_BYTES,
        "expands to more than {} bytes",
        limits::MAX_DECOMPRESSED_BYTES
    );
    Ok(out)
}

/// The dimensions and payload of idx bytes; the magic's low byte is the rank.
pub fn parse_idx(bytes: &[u8], magic: u32) -> Result<(Vec<usize>, Vec<u8>)> {
    let (found, rest) = bytes
        .split_first_chunk::<4>()
        .context("truncated idx header (no magic)")?;
    let found = u32::from_be_bytes(*found);
    ensure!(
        found == magic,
        "idx magic {found:#010x}, expected {magic:#010x}"
    );
    let rank = (magic & 0xff) as usize;
    let dims: Vec<usize> = rest
        .as_chunks::<4>()
        .0
        .get(..rank)
        .with_context(|| format!("truncated idx header (fewer than {rank} dimensions)"))?
        .iter()
        .map(|d| u32::from_be_bytes(*d) as usize)
        .collect();
    let payload = &rest[4 * rank..];
    let records = dims.first().copied().unwrap_or(1);
    let record = limits::element_count(
        dims.get(1..).unwrap_or_default(),
        limits::MAX_ELEMENTS,
        "idx dimensions",
    )?;
    ensure!(
        record > 0,
        "idx dimensions {dims:?}: a record of zero bytes"
    );
    let count = limits::element_count(&dims, limits::MAX_ELEMENTS, "idx dimensions")?;
    let data = payload.get(..count).with_context(|| {
        format!(
            "truncated at record {} of {records} (expected {count} bytes of data, found {})",
            payload.len() / record,
            payload.len()
        )
    })?;
    Ok((dims, data.to_vec()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn idx3(dims: [u32; 3], payload: usize) -> Vec<u8> {
        let mut bytes = 0x0803u32.to_be_bytes().to_vec();
        for d in dims {
            bytes.extend_from_slice(&d.to_be_bytes());
        }
        bytes.resize(bytes.len() + payload, 7);
        bytes
    }

    fn error_of(bytes: &[u8]) -> String {
        format!("{:#}", parse_idx(bytes, 0x0803).unwrap_err())
    }

    #[test]
    fn reads_dimensions_and_payload() {
        let (dims, data) = parse_idx(&idx3([2, 3, 4], 24), 0x0803).unwrap();
        assert_eq!((dims, data.len()), (vec![2, 3, 4], 24));
    }

    #[test]
    fn malformed_headers_are_errors_not_wrapped_sizes() {
        assert_eq!(
            error_of(&idx3([1, 0, 28], 28)),
            "idx dimensions [1, 0, 28]: a record of zero bytes"
        );
        assert_eq!(
            error_of(&idx3([u32::MAX; 3], 0)),
            "idx dimensions: the dimensions [4294967295, 4294967295] make 18446744065119617025 \
             elements, more than the 1073741824 allowed"
        );
        assert_eq!(
            error_of(&idx3([60000, 28, 28], 784 * 2 + 5)),
            "truncated at record 2 of 60000 (expected 47040000 bytes of data, found 1573)"
        );
        assert_eq!(
            error_of(&idx3([2, 3, 4], 24)[..10]),
            "truncated idx header (fewer than 3 dimensions)"
        );
        assert_eq!(
            error_of(&[0, 0, 8, 1]),
            "idx magic 0x00000801, expected 0x00000803"
        );
    }
}
