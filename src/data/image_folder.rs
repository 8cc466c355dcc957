//! ImageNet-style folders: `root/<class>/<image>` (labels from the sorted class-folder names) and
//! unlabelled folders of images at any depth (for pretraining). Images are decoded by content,
//! not extension (ImageNet has PNGs named `.JPEG`, CMYK and grayscale JPEGs), converted to RGB,
//! resized and center-cropped when read (`preprocess.rs`).

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use image::ImageReader;
use serde::{Deserialize, Serialize};

/// What to do with a file that is not a readable image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BadImagePolicy {
    /// Stop with an error naming the file.
    #[default]
    Fail,
    /// Leave it out, count it and report it.
    Skip,
}

/// The image files of a folder, with their labels (all 0 when unlabelled).
#[derive(Debug, Clone)]
pub struct FolderListing {
    pub files: Vec<PathBuf>,
    pub labels: Vec<usize>,
    pub class_names: Vec<String>,
    /// Files left out under [`BadImagePolicy::Skip`], with the reason.
    pub skipped: Vec<(PathBuf, String)>,
}

/// Every file below `dir`, sorted, at any depth.
fn files_below(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in
            std::fs::read_dir(&dir).with_context(|| format!("{}: cannot list", dir.display()))?
        {
            let path = entry?.path();
            if path.is_dir() {
                pending.push(path);
            } else if !path
                .file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with('.'))
            {
                out.push(path);
            }
        }
    }
    out.sort();
    Ok(out)
}

/// Reads the header of an image, telling the format by content.
fn probe(path: &Path) -> Result<()> {
    ImageReader::open(path)?
        .with_guessed_format()?
        .into_dimensions()?;
    Ok(())
}

fn keep_readable(
    files: Vec<(PathBuf, usize)>,
    policy: BadImagePolicy,
    skipped: &mut Vec<(PathBuf, String)>,
) -> Result<Vec<(PathBuf, usize)>> {
    let mut kept = Vec::with_capacity(files.len());
    for (path, label) in files {
        match probe(&path) {
            Ok(()) => kept.push((path, label)),
            Err(e) if policy == BadImagePolicy::Skip => skipped.push((path, format!("{e:#}"))),
            Err(e) => bail!("{}: not a readable image ({e:#}); set data.on_bad_image: skip to leave such files out", path.display()),
        }
    }
    if !skipped.is_empty() {
        tracing::warn!(
            "skipped {} unreadable files, e.g. {}",
            skipped.len(),
            skipped[0].0.display()
        );
    }
    Ok(kept)
}

fn listing(
    files: Vec<(PathBuf, usize)>,
    class_names: Vec<String>,
    policy: BadImagePolicy,
) -> Result<FolderListing> {
    let mut skipped = Vec::new();
    let (files, labels) = keep_readable(files, policy, &mut skipped)?
        .into_iter()
        .unzip();
    Ok(FolderListing {
        files,
        labels,
        class_names,
        skipped,
    })
}

/// `root/<class>/...`: one class per sub-folder, in sorted order (torchvision's ImageFolder).
pub fn scan_labelled(root: &Path, policy: BadImagePolicy) -> Result<FolderListing> {
    let mut classes: Vec<PathBuf> = std::fs::read_dir(root)
        .with_context(|| {
            format!(
                "{}: cannot list (expected one folder per class)",
                root.display()
            )
        })?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_dir())
        .collect();
    classes.sort();
    if classes.is_empty() {
        bail!(
            "{}: no class folders (expected root/<class>/<image>)",
            root.display()
        );
    }
    let mut files = Vec::new();
    for (label, class) in classes.iter().enumerate() {
        files.extend(files_below(class)?.into_iter().map(|f| (f, label)));
    }
    let names = classes
        .iter()
        .map(|c| {
            c.file_name()
                .unwrap_or_default()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    listing(files, names, policy)
}

/// Every image below `root`, at any depth, without labels.
pub fn scan_unlabelled(root: &Path, policy: BadImagePolicy) -> Result<FolderListing> {
    let files = files_below(root)?.into_iter().map(|f| (f, 0)).collect();
    listing(files, vec!["image".into()], policy)
}
