//! The most an input file may make eesmm allocate or do, whatever its header says. Every reader
//! checks a file's sizes against these before it allocates; the fuzz harness (`tests/fuzz.rs`)
//! holds the readers to them.

use anyhow::{Context, Result};

/// Elements of one array read from a file (`.npy`, idx payload, one weights tensor): 2^30,
/// 4 GiB of float32 — far above any dataset or checkpoint eesmm reads, far below a wrapped size.
pub const MAX_ELEMENTS: usize = 1 << 30;

/// Bytes a gzip-compressed idx file may expand to (Fashion-MNIST's largest is 47 MB).
pub const MAX_DECOMPRESSED_BYTES: u64 = 1 << 30;

/// Pixels of an image before resizing (width x height), checked from its header before decoding:
/// 2^25, e.g. 8192 x 4096. Resizing works in 16-byte RGBA floats, so this bounds a resize's
/// scratch to 512 MiB.
pub const MAX_IMAGE_PIXELS: u64 = 1 << 25;

/// Bytes the image decoder may allocate for one image (the image crate's own limit).
pub const MAX_DECODER_BYTES: u64 = 1 << 28;

/// Pixels of an image after the shorter side is resized (the longer side keeps the aspect ratio):
/// 2^22, a 248 px shorter side with an aspect ratio up to 68:1.
pub const MAX_RESIZED_PIXELS: u64 = 1 << 22;

/// Bytes of a `.pth` file's pickle (`data.pkl`) once decompressed; a Swin-B state dict's is
/// about 100 KB.
pub const MAX_PICKLE_BYTES: u64 = 1 << 26;

/// Nesting depth of the objects in a `.pth` pickle (a state dict needs about 6, a full training
/// checkpoint about 10).
pub const MAX_PICKLE_DEPTH: usize = 64;

/// Objects a `.pth` pickle may hold at once, memoised copies counted in full (a Swin-B state dict
/// needs about 5,000).
pub const MAX_PICKLE_OBJECTS: usize = 1 << 22;

/// The product of `dims`, or an error naming `what` when it overflows or exceeds `limit`.
pub fn element_count(dims: &[usize], limit: usize, what: &str) -> Result<usize> {
    let count = dims
        .iter()
        .try_fold(1usize, |n, &d| n.checked_mul(d))
        .with_context(|| format!("{what}: the dimensions {dims:?} overflow"))?;
    anyhow::ensure!(
        count <= limit,
        "{what}: the dimensions {dims:?} make {count} elements, more than the {limit} allowed"
    );
    Ok(count)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn element_count_refuses_overflow_and_excess() {
        assert_eq!(element_count(&[2, 3, 4], 24, "shape").unwrap(), 24);
        assert_eq!(element_count(&[], 1, "shape").unwrap(), 1);
        let overflow = element_count(&[usize::MAX, 2], MAX_ELEMENTS, "shape").unwrap_err();
        assert!(overflow.to_string().contains("overflow"), "{overflow}");
        let excess = element_count(&[5, 5], 24, "shape").unwrap_err();
        assert_eq!(
            excess.to_string(),
            "shape: the dimensions [5, 5] make 25 elements, more than the 24 allowed"
        );
    }
}
