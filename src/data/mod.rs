//! Datasets as sources of decoded images, and the loader that turns them into batches.
//!
//! Every reader yields 8-bit HWC images of a fixed channel count plus an optional label, so the
//! loader (resize, channel conversion, normalisation, augmentation) is written once.

pub mod cifar;
pub mod fashion_mnist;
pub mod image_folder;
pub mod loader;
pub mod preprocess;

use std::borrow::Cow;
use std::path::PathBuf;

use anyhow::Context;
use image_folder::BadImagePolicy;
use preprocess::Resize;
use serde::{Deserialize, Serialize};

/// One decoded image: `height x width x channels` bytes, row-major, channels last.
#[derive(Debug, Clone, PartialEq)]
pub struct RawImage {
    pub height: usize,
    pub width: usize,
    pub channels: usize,
    pub pixels: Vec<u8>,
}

/// Where a dataset's images are: decoded in memory (Fashion-MNIST and CIFAR are small enough) or
/// files decoded when a batch needs them (image folders).
#[derive(Debug, Clone)]
pub enum Images {
    Decoded(Vec<RawImage>),
    /// Decoded, resized and center-cropped on read ([`preprocess::load`]).
    Files {
        paths: Vec<PathBuf>,
        resize: Resize,
    },
}

/// A labelled set of images.
#[derive(Debug, Clone)]
pub struct Dataset {
    pub images: Images,
    pub labels: Vec<usize>,
    pub class_names: Vec<String>,
    /// Per-channel mean and std of the pixels scaled to [0, 1], used for normalisation.
    pub normalization: Normalization,
}

impl Dataset {
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// Image `index`, decoded.
    pub fn image(&self, index: usize) -> anyhow::Result<Cow<'_, RawImage>> {
        match &self.images {
            Images::Decoded(images) => Ok(Cow::Borrowed(&images[index])),
            Images::Files { paths, resize } => {
                let path = &paths[index];
                let image = preprocess::load(path, resize)
                    .with_context(|| format!("{}: cannot decode", path.display()))?;
                Ok(Cow::Owned(image))
            }
        }
    }

    /// How an image file becomes input of a `image_size` px model, as this dataset does it:
    /// recorded with the models trained on it, so that `eesmm infer` does the same.
    pub fn resize(&self, image_size: usize) -> Resize {
        match &self.images {
            Images::Files { resize, .. } => *resize,
            Images::Decoded(_) => Resize::native(image_size),
        }
    }

    /// The images at `indices` (ascending), in that order.
    fn select(mut self, indices: &[usize]) -> Self {
        fn pick<T: Clone>(items: &[T], indices: &[usize]) -> Vec<T> {
            indices.iter().map(|&i| items[i].clone()).collect()
        }
        self.images = match self.images {
            Images::Decoded(images) => Images::Decoded(pick(&images, indices)),
            Images::Files { paths, resize } => Images::Files {
                paths: pick(&paths, indices),
                resize,
            },
        };
        self.labels = pick(&self.labels, indices);
        self
    }

    /// A class-balanced random subset (`subset:`): `images / classes` of every class (the
    /// remainder one more each for the first classes), drawn with `seed`, kept in dataset order.
    pub fn balanced_subset(self, subset: &Subset) -> anyhow::Result<Self> {
        use rand::seq::SliceRandom;
        use rand::SeedableRng;
        let classes = self.labels.iter().max().map_or(0, |&m| m + 1);
        anyhow::ensure!(
            classes > 0,
            "subset.images: {} asked of a dataset with no images",
            subset.images
        );
        let mut by_class: Vec<Vec<usize>> = vec![Vec::new(); classes];
        for (index, &label) in self.labels.iter().enumerate() {
            by_class[label].push(index);
        }
        let mut rng = rand::rngs::StdRng::seed_from_u64(subset.seed);
        let mut chosen = Vec::with_capacity(subset.images);
        for (class, members) in by_class.iter_mut().enumerate() {
            let wanted = subset.images / classes + usize::from(class < subset.images % classes);
            anyhow::ensure!(
                wanted <= members.len(),
                "subset.images: {} asks for {wanted} images of class {class}, which has {}",
                subset.images,
                members.len()
            );
            members.shuffle(&mut rng);
            chosen.extend_from_slice(&members[..wanted]);
        }
        chosen.sort_unstable();
        Ok(self.select(&chosen))
    }

    /// The first `limit` images (all when `None`).
    pub fn truncated(mut self, limit: Option<usize>) -> Self {
        if let Some(limit) = limit {
            match &mut self.images {
                Images::Decoded(images) => images.truncate(limit),
                Images::Files { paths, .. } => paths.truncate(limit),
            }
            self.labels.truncate(limit);
        }
        self
    }
}

/// ImageNet's per-channel mean and std, used for image folders.
pub const IMAGENET_NORMALIZATION: ([f32; 3], [f32; 3]) =
    ([0.485, 0.456, 0.406], [0.229, 0.224, 0.225]);

/// Class names from a text file, one per line (blank lines ignored).
pub fn read_class_names(path: &std::path::Path) -> anyhow::Result<Vec<String>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("{}: cannot read", path.display()))?;
    Ok(text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(String::from)
        .collect())
}

/// Mean and std per channel of pixels in [0, 1]; stored with every model trained on the data.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Normalization {
    pub mean: Vec<f32>,
    pub std: Vec<f32>,
}

impl Normalization {
    /// Adapts a per-channel normalisation to `channels` (gray → RGB repeats, RGB → gray averages).
    pub fn for_channels(&self, channels: usize) -> Self {
        let average = |v: &[f32]| v.iter().sum::<f32>() / v.len() as f32;
        match (self.mean.len(), channels) {
            (a, b) if a == b => self.clone(),
            (1, n) => Self {
                mean: vec![self.mean[0]; n],
                std: vec![self.std[0]; n],
            },
            (_, 1) => Self {
                mean: vec![average(&self.mean)],
                std: vec![average(&self.std)],
            },
            _ => self.clone(),
        }
    }
}

/// Which dataset a stage reads, as written in a stage YAML (`data:`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataConfig {
    /// `fashion_mnist`, `cifar10`, `cifar100`, `image_folder` (`root/<class>/<image>`) or
    /// `unlabelled_folder` (images at any depth, no labels). Required.
    pub dataset: DatasetKind,
    /// Folder holding the dataset's files. Required.
    pub root: PathBuf,
    /// `train` or `test` (the datasets' own splits; image folders have one). Default: `train`.
    #[serde(default)]
    pub split: Split,
    /// Use only the first N images (quick runs and tests). Default: none (all).
    #[serde(default)]
    pub limit: Option<usize>,
    /// Use a class-balanced random subset instead of `limit` (label-efficiency runs).
    /// Default: none (all).
    #[serde(default)]
    pub subset: Option<Subset>,
    /// Image folders: `fail` on a file that is not a readable image, or `skip` it and report
    /// it. Default: `fail`.
    #[serde(default)]
    pub on_bad_image: BadImagePolicy,
    /// Random resized crop + flip before anything else. Default: none (off).
    #[serde(default)]
    pub augment: Option<loader::CropAugment>,
}

/// `subset:`: how many images, drawn class-balanced with which seed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Subset {
    /// Images in the subset, ≥ 1, spread evenly over the classes. Required.
    pub images: usize,
    /// Seeds which images are drawn. Default: 0.
    #[serde(default)]
    pub seed: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DatasetKind {
    FashionMnist,
    Cifar10,
    Cifar100,
    /// `root/<class>/<image>`, labels from the sorted class folders.
    ImageFolder,
    /// Images at any depth below `root`, no labels (pretraining).
    UnlabelledFolder,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Split {
    #[default]
    Train,
    Test,
}

impl DataConfig {
    /// The settings that can be checked without reading the data; `key` is where this config
    /// is in the YAML (`data`, `eval_data`).
    pub fn validate(&self, key: &str) -> anyhow::Result<()> {
        if let Some(subset) = &self.subset {
            anyhow::ensure!(
                self.limit.is_none(),
                "{key}.subset: cannot be combined with {key}.limit (use one of them)"
            );
            anyhow::ensure!(
                subset.images > 0,
                "{key}.subset.images: 0 leaves nothing to train on (at least 1)"
            );
        }
        match &self.augment {
            Some(augment) => augment.validate(&format!("{key}.augment")),
            None => Ok(()),
        }
    }

    /// Loads the dataset; folder images will be read with `resize`.
    pub fn load(&self, resize: Resize) -> anyhow::Result<Dataset> {
        let folder = |listing: image_folder::FolderListing| Dataset {
            images: Images::Files {
                paths: listing.files,
                resize,
            },
            labels: listing.labels,
            class_names: listing.class_names,
            normalization: Normalization {
                mean: IMAGENET_NORMALIZATION.0.to_vec(),
                std: IMAGENET_NORMALIZATION.1.to_vec(),
            },
        };
        let dataset = match self.dataset {
            DatasetKind::FashionMnist => fashion_mnist::load(&self.root, self.split)?,
            DatasetKind::Cifar10 => cifar::load_cifar10(&self.root, self.split)?,
            DatasetKind::Cifar100 => cifar::load_cifar100(&self.root, self.split)?,
            DatasetKind::ImageFolder => folder(image_folder::scan_labelled(
                &self.root,
                self.on_bad_image,
                &resize,
            )?),
            DatasetKind::UnlabelledFolder => folder(image_folder::scan_unlabelled(
                &self.root,
                self.on_bad_image,
                &resize,
            )?),
        };
        match &self.subset {
            Some(subset) => dataset.balanced_subset(subset),
            None => Ok(dataset.truncated(self.limit)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 30 one-pixel images, labels 0, 1, 2 repeating; pixel value = the image's index.
    fn dataset() -> Dataset {
        let images = (0..30u8)
            .map(|i| RawImage {
                height: 1,
                width: 1,
                channels: 1,
                pixels: vec![i],
            })
            .collect();
        Dataset {
            images: Images::Decoded(images),
            labels: (0..30).map(|i| i % 3).collect(),
            class_names: vec!["a".into(), "b".into(), "c".into()],
            normalization: Normalization {
                mean: vec![0.0],
                std: vec![1.0],
            },
        }
    }

    fn indices(dataset: &Dataset) -> Vec<u8> {
        match &dataset.images {
            Images::Decoded(images) => images.iter().map(|i| i.pixels[0]).collect(),
            Images::Files { .. } => unreachable!(),
        }
    }

    /// 7 of 3 classes: 3, 2, 2 images, labels kept with their images, in dataset order; another
    /// seed draws other images; a class too small for its share is an error naming it.
    #[test]
    fn a_balanced_subset_takes_an_equal_share_of_every_class() {
        let subset = |images, seed| dataset().balanced_subset(&Subset { images, seed });
        let chosen = subset(7, 0).unwrap();
        let picked = indices(&chosen);
        assert_eq!(chosen.len(), 7);
        assert!(picked.windows(2).all(|w| w[0] < w[1]), "{picked:?}");
        for (index, label) in picked.iter().zip(&chosen.labels) {
            assert_eq!(*index as usize % 3, *label);
        }
        let per_class: Vec<usize> = (0..3)
            .map(|c| chosen.labels.iter().filter(|&&l| l == c).count())
            .collect();
        assert_eq!(per_class, vec![3, 2, 2]);
        assert_eq!(indices(&subset(7, 0).unwrap()), picked);
        assert_ne!(indices(&subset(7, 1).unwrap()), picked);
        let message = subset(33, 0).unwrap_err().to_string();
        assert!(
            message.contains("11 images of class 0, which has 10"),
            "{message}"
        );
    }
}
