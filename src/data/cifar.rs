//! CIFAR-10 and CIFAR-100 in their binary formats: 3073-byte records (label, 1024 R, 1024 G,
//! 1024 B) in `data_batch_{1..5}.bin` / `test_batch.bin` with `batches.meta.txt`, and
//! 3074-byte records (coarse label, fine label, pixels) in `train.bin` / `test.bin` with
//! `fine_label_names.txt`.

use std::path::Path;

use anyhow::{ensure, Context, Result};

use super::{Dataset, Images, Normalization, RawImage, Split};

/// Mean and std of the CIFAR-10 / CIFAR-100 training images (pixels in [0, 1]).
const CIFAR10_NORMALIZATION: ([f32; 3], [f32; 3]) =
    ([0.4914, 0.4822, 0.4465], [0.2470, 0.2435, 0.2616]);
const CIFAR100_NORMALIZATION: ([f32; 3], [f32; 3]) =
    ([0.5071, 0.4865, 0.4409], [0.2673, 0.2564, 0.2762]);

const CIFAR100_FINE_LABELS: usize = 100;

pub fn load_cifar10(root: &Path, split: Split) -> Result<Dataset> {
    let files: Vec<String> = match split {
        Split::Train => (1..=5).map(|i| format!("data_batch_{i}.bin")).collect(),
        Split::Test => vec!["test_batch.bin".into()],
    };
    let (mut images, mut labels) = (Vec::new(), Vec::new());
    for file in files {
        read_records(&root.join(file), 0, 10, &mut images, &mut labels)?;
    }
    let names = class_names(root, "batches.meta.txt", 10)?;
    Ok(dataset(names, CIFAR10_NORMALIZATION, images, labels))
}

pub fn load_cifar100(root: &Path, split: Split) -> Result<Dataset> {
    let file = match split {
        Split::Train => "train.bin",
        Split::Test => "test.bin",
    };
    let names = class_names(root, "fine_label_names.txt", CIFAR100_FINE_LABELS)?;
    let (mut images, mut labels) = (Vec::new(), Vec::new());
    read_records(
        &root.join(file),
        1,
        CIFAR100_FINE_LABELS,
        &mut images,
        &mut labels,
    )?;
    Ok(dataset(names, CIFAR100_NORMALIZATION, images, labels))
}

fn dataset(
    class_names: Vec<String>,
    normalization: ([f32; 3], [f32; 3]),
    images: Vec<RawImage>,
    labels: Vec<usize>,
) -> Dataset {
    Dataset {
        images: Images::Decoded(images),
        labels,
        class_names,
        normalization: Normalization {
            mean: normalization.0.to_vec(),
            std: normalization.1.to_vec(),
        },
    }
}

/// Class names, one per line, from the meta file; `class_N` when the file is absent.
fn class_names(root: &Path, meta: &str, count: usize) -> Result<Vec<String>> {
    let path = root.join(meta);
    if !path.exists() {
        return Ok((0..count).map(|i| format!("class_{i}")).collect());
    }
    let names = super::read_class_names(&path)?;
    ensure!(
        names.len() == count,
        "{}: {} class names, expected {count}",
        path.display(),
        names.len()
    );
    Ok(names)
}

/// Appends every record of one batch file. `label_offset` is the byte holding the label used
/// (0 for CIFAR-10, 1 = fine label for CIFAR-100).
fn read_records(
    path: &Path,
    label_offset: usize,
    classes: usize,
    images: &mut Vec<RawImage>,
    labels: &mut Vec<usize>,
) -> Result<()> {
    const PIXELS: usize = 32 * 32 * 3;
    let record = label_offset + 1 + PIXELS;
    let bytes = std::fs::read(path)
        .with_context(|| format!("{}: cannot read (CIFAR binary batch)", path.display()))?;
    ensure!(
        bytes.len() % record == 0 && !bytes.is_empty(),
        "{}: truncated at record {} ({} bytes is not a multiple of the {record}-byte record)",
        path.display(),
        bytes.len() / record,
        bytes.len()
    );
    for (i, chunk) in bytes.chunks_exact(record).enumerate() {
        let label = chunk[label_offset] as usize;
        ensure!(
            label < classes,
            "{}: record {i} has label {label}, expected < {classes}",
            path.display()
        );
        // Planar RGB → interleaved HWC.
        let planes = &chunk[label_offset + 1..];
        let pixels = (0..1024)
            .flat_map(|p| [planes[p], planes[1024 + p], planes[2048 + p]])
            .collect();
        images.push(RawImage {
            height: 32,
            width: 32,
            channels: 3,
            pixels,
        });
        labels.push(label);
    }
    Ok(())
}
