//! Dataset readers on real data: Fashion-MNIST from Debian's package, the CIFAR fixtures.

use std::io::Write;
use std::path::Path;

use eesmm::data::image_folder::{self, BadImagePolicy};
use eesmm::data::preprocess::{self, Resize};
use eesmm::data::{cifar, fashion_mnist, Split};

use super::common::TempDir;

fn fixtures() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/cifar")
}

fn fmnist_root() -> &'static Path {
    Path::new(fashion_mnist::DEFAULT_ROOT)
}

/// Fashion-MNIST has 60,000 / 10,000 images of 28x28, exactly 6,000 / 1,000 per class.
#[test]
fn fashion_mnist_has_its_published_counts() {
    for (split, total, per_class) in [(Split::Train, 60_000, 6_000), (Split::Test, 10_000, 1_000)] {
        let data = fashion_mnist::load(fmnist_root(), split).unwrap();
        assert_eq!(data.len(), total);
        assert!((0..data.len()).all(|i| {
            let image = data.image(i).unwrap();
            (image.height, image.width, image.channels) == (28, 28, 1)
        }));
        let mut counts = [0usize; 10];
        for &l in &data.labels {
            counts[l] += 1;
        }
        assert_eq!(counts, [per_class; 10], "{split:?}");
        assert_eq!(data.class_names[9], "Ankle boot");
    }
}

#[test]
fn fashion_mnist_reads_plain_idx_and_names_truncated_files() {
    let dir = TempDir::new("fmnist");
    let gz = std::fs::read(fmnist_root().join("t10k-images-idx3-ubyte.gz")).unwrap();
    let mut raw = Vec::new();
    std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&gz[..]), &mut raw).unwrap();
    // Plain (uncompressed) files are read too.
    std::fs::write(dir.0.join("t10k-images-idx3-ubyte"), &raw).unwrap();
    std::fs::copy(
        fmnist_root().join("t10k-labels-idx1-ubyte.gz"),
        dir.0.join("t10k-labels-idx1-ubyte.gz"),
    )
    .unwrap();
    let plain = fashion_mnist::load(&dir.0, Split::Test).unwrap();
    let packaged = fashion_mnist::load(fmnist_root(), Split::Test).unwrap();
    assert_eq!(plain.image(1234).unwrap(), packaged.image(1234).unwrap());
    // Cut the file in the middle of record 5000.
    let cut = 16 + 5000 * 784 + 100;
    std::fs::File::create(dir.0.join("t10k-images-idx3-ubyte"))
        .unwrap()
        .write_all(&raw[..cut])
        .unwrap();
    let message = format!(
        "{:#}",
        fashion_mnist::load(&dir.0, Split::Test).unwrap_err()
    );
    assert!(
        message.contains("t10k-images-idx3-ubyte: truncated at record 5000 of 10000"),
        "{message}"
    );
}

/// The binary CIFAR-10 fixture against the Python pickle version of the same test images.
#[test]
fn cifar10_binary_matches_the_pickle_version() {
    let data = cifar::load_cifar10(&fixtures().join("cifar-10-batches-bin"), Split::Test).unwrap();
    assert_eq!(data.len(), 20);
    assert_eq!(
        data.labels,
        vec![3, 8, 8, 0, 6, 6, 1, 6, 3, 1, 0, 9, 5, 7, 9, 8, 5, 7, 8, 6]
    );
    assert_eq!(data.class_names[3], "cat");
    let first = data.image(0).unwrap();
    let pixel = |y: usize, x: usize| &first.pixels[(y * 32 + x) * 3..(y * 32 + x) * 3 + 3];
    assert_eq!(pixel(0, 0), [158, 112, 49]);
    assert_eq!(pixel(31, 31), [21, 67, 110]);
    assert_eq!(pixel(10, 20), [175, 165, 154]);
    let sum: u64 = (0..data.len())
        .flat_map(|i| data.image(i).unwrap().pixels.clone())
        .map(|p| p as u64)
        .sum();
    assert_eq!(sum, 7_387_458);
}

#[test]
fn cifar100_reads_fine_labels_and_names_truncated_files() {
    let root = fixtures().join("cifar-100-binary");
    let data = cifar::load_cifar100(&root, Split::Test).unwrap();
    assert_eq!(data.len(), 20);
    assert_eq!(&data.labels[..10], &[49, 33, 72, 51, 71, 92, 15, 14, 23, 0]);
    assert_eq!(data.class_names.len(), 100);

    let dir = TempDir::new("cifar100");
    let bytes = std::fs::read(root.join("test.bin")).unwrap();
    std::fs::write(dir.0.join("test.bin"), &bytes[..3074 * 7 + 10]).unwrap();
    let message = format!(
        "{:#}",
        cifar::load_cifar100(&dir.0, Split::Test).unwrap_err()
    );
    assert!(
        message.contains("test.bin: truncated at record 7"),
        "{message}"
    );
}

fn imagefolder() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/imagefolder/train")
}

/// The 20 ImageNet validation JPEGs in 19 class folders: labels from the sorted folder names.
#[test]
fn image_folder_labels_come_from_sorted_class_folders() {
    let listing =
        image_folder::scan_labelled(&imagefolder(), BadImagePolicy::Fail, &Resize::timm_eval(64))
            .unwrap();
    assert_eq!(listing.files.len(), 20);
    assert_eq!(listing.class_names.len(), 19);
    assert_eq!(listing.class_names[0], "n01614925");
    let mut sorted = listing.class_names.clone();
    sorted.sort();
    assert_eq!(sorted, listing.class_names);
    for (file, &label) in listing.files.iter().zip(&listing.labels) {
        assert!(file.starts_with(imagefolder().join(&listing.class_names[label])));
    }
    let image = preprocess::load(&listing.files[0], &Resize::timm_eval(64)).unwrap();
    assert_eq!(
        (
            image.height,
            image.width,
            image.channels,
            image.pixels.len()
        ),
        (64, 64, 3, 64 * 64 * 3)
    );
}

/// A PNG named `.JPEG` and a grayscale JPEG decode by content (to RGB); a corrupt file fails
/// naming it, or is skipped and reported under `on_bad_image: skip`.
#[test]
fn image_folders_decode_by_content_and_apply_the_bad_image_policy() {
    let dir = TempDir::new("imagefolder");
    let class = dir.0.join("cls");
    std::fs::create_dir_all(class.join("deeper")).unwrap();
    let gray = image::GrayImage::from_fn(40, 30, |x, y| image::Luma([(x * 6 + y) as u8]));
    gray.save_with_format(class.join("gray.JPEG"), image::ImageFormat::Jpeg)
        .unwrap();
    let rgb = image::RgbImage::from_fn(30, 40, |x, y| image::Rgb([x as u8 * 8, y as u8 * 6, 200]));
    rgb.save_with_format(class.join("deeper/png_named.JPEG"), image::ImageFormat::Png)
        .unwrap();
    std::fs::write(class.join("broken.JPEG"), b"\xff\xd8 not really a jpeg").unwrap();

    let message = format!(
        "{:#}",
        image_folder::scan_labelled(&dir.0, BadImagePolicy::Fail, &Resize::timm_eval(16))
            .unwrap_err()
    );
    assert!(
        message.contains("broken.JPEG: not a readable image"),
        "{message}"
    );

    let listing =
        image_folder::scan_labelled(&dir.0, BadImagePolicy::Skip, &Resize::timm_eval(16)).unwrap();
    assert_eq!(listing.files.len(), 2);
    assert_eq!(listing.skipped.len(), 1);
    assert!(listing.skipped[0].0.ends_with("broken.JPEG"));
    for file in &listing.files {
        let image = preprocess::load(file, &Resize::timm_eval(16)).unwrap();
        assert_eq!((image.height, image.width, image.channels), (16, 16, 3));
    }
    let unlabelled =
        image_folder::scan_unlabelled(&dir.0, BadImagePolicy::Skip, &Resize::timm_eval(16))
            .unwrap();
    assert_eq!(unlabelled.files.len(), 2, "images at any depth");
}

fn mkfifo(path: &Path) {
    let status = std::process::Command::new("mkfifo")
        .arg(path)
        .status()
        .unwrap();
    assert!(status.success());
}

/// A folder with a link cycle, a link to another class and a FIFO named `.png`: the listing ends
/// (each folder listed once, the FIFO never opened) and leaves them out; a truncated JPEG passes
/// the header check under `fail` (and fails when read, naming what is wrong) but is skipped under
/// `skip`, which decodes every image once.
#[test]
fn folder_listing_survives_cycles_fifos_and_truncated_images() {
    let dir = TempDir::new("hostile-folder");
    let (a, b) = (dir.0.join("a"), dir.0.join("b"));
    std::fs::create_dir_all(a.join("sub")).unwrap();
    std::fs::create_dir_all(&b).unwrap();
    let photo = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/photos/chelsea.jpg");
    std::fs::copy(&photo, a.join("sub/good.jpg")).unwrap();
    std::fs::copy(&photo, b.join("good.jpg")).unwrap();
    let bytes = std::fs::read(&photo).unwrap();
    std::fs::write(b.join("truncated.jpg"), &bytes[..bytes.len() / 2]).unwrap();
    std::os::unix::fs::symlink(&a, a.join("sub/loop")).unwrap();
    std::os::unix::fs::symlink(&a, b.join("link_to_a")).unwrap();
    mkfifo(&b.join("fifo.png"));

    let resize = Resize::timm_eval(32);
    let listing = image_folder::scan_labelled(&dir.0, BadImagePolicy::Fail, &resize).unwrap();
    let names: Vec<_> = listing
        .files
        .iter()
        .map(|f| f.strip_prefix(&dir.0).unwrap().display().to_string())
        .collect();
    assert_eq!(names, ["a/sub/good.jpg", "b/good.jpg", "b/truncated.jpg"]);
    let message = format!(
        "{:#}",
        preprocess::load(&b.join("truncated.jpg"), &resize).unwrap_err()
    );
    assert_eq!(
        message,
        "truncated JPEG (no end-of-image marker after its last scan)"
    );
    let message = format!(
        "{:#}",
        preprocess::load(&b.join("fifo.png"), &resize).unwrap_err()
    );
    assert_eq!(message, "not a regular file");

    let listing = image_folder::scan_labelled(&dir.0, BadImagePolicy::Skip, &resize).unwrap();
    assert_eq!(listing.files.len(), 2);
    assert_eq!(listing.skipped.len(), 1);
    assert!(listing.skipped[0].0.ends_with("b/truncated.jpg"));
    let unlabelled = image_folder::scan_unlabelled(&dir.0, BadImagePolicy::Skip, &resize).unwrap();
    assert_eq!(unlabelled.files.len(), 2);
}

/// A truncated PNG is an error, and so is a tiny image whose resize target is huge (1 x 5000 px:
/// 35 x 175,000 after resizing the shorter side to 35), before anything is resized.
#[test]
fn truncated_pngs_and_resize_bombs_are_errors() {
    let dir = TempDir::new("png-bombs");
    let rgb =
        image::RgbImage::from_fn(64, 48, |x, y| image::Rgb([(x * 4) as u8, (y * 5) as u8, 7]));
    let png = dir.0.join("full.png");
    rgb.save_with_format(&png, image::ImageFormat::Png).unwrap();
    let bytes = std::fs::read(&png).unwrap();
    let truncated = dir.0.join("truncated.png");
    std::fs::write(&truncated, &bytes[..bytes.len() - 20]).unwrap();
    let resize = Resize::timm_eval(32);
    assert!(preprocess::load(&png, &resize).is_ok());
    assert!(preprocess::load(&truncated, &resize).is_err());

    let tall = dir.0.join("tall.png");
    image::GrayImage::new(1, 5000).save(&tall).unwrap();
    let message = format!("{:#}", preprocess::probe(&tall, &resize).unwrap_err());
    assert_eq!(
        message,
        "a 1x5000 image resized to 35x175000 is more than the 4194304 pixels allowed"
    );
    assert_eq!(
        format!("{:#}", preprocess::load(&tall, &resize).unwrap_err()),
        message
    );
}
