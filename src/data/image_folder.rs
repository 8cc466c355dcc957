//! ImageNet-style folders: `root/<class>/<image>` (labels from the sorted class-folder names) and
//! unlabelled folders of images at any depth (for pretraining). Images are decoded by content,
//! not extension (ImageNet has PNGs named `.JPEG`, CMYK and grayscale JPEGs), converted to RGB,
//! resized and center-cropped when read (`preprocess.rs`).

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::preprocess::{self, Resize};
use crate::fsutil::Walk;

/// What to do with a file that is not a readable image (bad header, too large, truncated, or
/// failing to decode).
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

/// The files below `dir` that may be images: regular files (see [`Walk`]), hidden ones left out.
fn images_below(walk: &mut Walk, dir: &Path) -> Result<impl Iterator<Item = PathBuf>> {
    Ok(walk.files_below(dir)?.into_iter().filter(|path| {
        !path
            .file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with('.'))
    }))
}

/// Whether `path` is an image eesmm can use: under [`BadImagePolicy::Fail`] its header is read
/// (size limits included) and decoding errors come when it is read, naming it; under
/// [`BadImagePolicy::Skip`] it is decoded and resized now, so that training never meets a bad one.
fn check(path: &Path, policy: BadImagePolicy, resize: &Resize) -> Result<()> {
    match policy {
        BadImagePolicy::Fail => preprocess::probe(path, resize),
        BadImagePolicy::Skip => preprocess::load(path, resize).map(|_| ()),
    }
}

/// The files that pass [`check`] (in parallel), with their labels; the others fail the listing
/// or, under [`BadImagePolicy::Skip`], are counted, reported and left out.
fn listing(
    files: Vec<(PathBuf, usize)>,
    class_names: Vec<String>,
    policy: BadImagePolicy,
    resize: &Resize,
) -> Result<FolderListing> {
    let checked: Vec<_> = files
        .into_par_iter()
        .map(|(path, label)| {
            let result = check(&path, policy, resize);
            (path, label, result)
        })
        .collect();
    let mut listing = FolderListing {
        files: Vec::with_capacity(checked.len()),
        labels: Vec::with_capacity(checked.len()),
        class_names,
        skipped: Vec::new(),
    };
    for (path, label, result) in checked {
        match result {
            Ok(()) => {
                listing.files.push(path);
                listing.labels.push(label);
            }
            Err(e) if policy == BadImagePolicy::Skip => {
                listing.skipped.push((path, format!("{e:#}")))
            }
            Err(e) => bail!("{}: not a readable image ({e:#}); set data.on_bad_image: skip to leave such files out", path.display()),
        }
    }
    if let Some((first, why)) = listing.skipped.first() {
        tracing::warn!(
            "skipped {} unreadable files, e.g. {} ({why})",
            listing.skipped.len(),
            first.display()
        );
    }
    Ok(listing)
}

/// `root/<class>/...`: one class per sub-folder, in sorted order (torchvision's ImageFolder).
/// Images are checked for reading with `resize` (see [`BadImagePolicy`]).
pub fn scan_labelled(
    root: &Path,
    policy: BadImagePolicy,
    resize: &Resize,
) -> Result<FolderListing> {
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
    let mut walk = Walk::default();
    let mut files = Vec::new();
    for (label, class) in classes.iter().enumerate() {
        files.extend(images_below(&mut walk, class)?.map(|f| (f, label)));
    }
    walk.report();
    let names = classes
        .iter()
        .map(|c| {
            c.file_name()
                .unwrap_or_default()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    listing(files, names, policy, resize)
}

/// Every image below `root`, at any depth, without labels.
pub fn scan_unlabelled(
    root: &Path,
    policy: BadImagePolicy,
    resize: &Resize,
) -> Result<FolderListing> {
    let mut walk = Walk::default();
    let files = images_below(&mut walk, root)?.map(|f| (f, 0)).collect();
    walk.report();
    listing(files, vec!["image".into()], policy, resize)
}
