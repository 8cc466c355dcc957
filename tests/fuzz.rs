//! The fuzz harness: every reader eesmm has for files a user hands it, fed seeded random
//! mutations of real files (the fixtures, and small seed files written here). Each input must give
//! an error or a valid value: no panic (caught and counted as a failure), and bounded memory (the
//! allocator below refuses any single allocation past [`MAX_ALLOCATION`], which aborts the run,
//! and the peak of live bytes while one input is read must stay under [`MAX_PEAK`]).
//!
//! `cargo test --test fuzz` runs [`DEFAULT_ITERS`] inputs per reader (a few seconds each).
//! `EESMM_FUZZ_ITERS=N` sets the inputs per reader, or else `EESMM_FUZZ_SECONDS=S` runs each
//! reader for S seconds, `EESMM_FUZZ_SEED` changes the seed (`scripts/dev/fuzz.sh`). A failing input is
//! written to `target/fuzz-failures/` and named in the report.

use std::alloc::{GlobalAlloc, Layout, System};
use std::collections::HashMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::time::{Duration, Instant};

use anyhow::Result;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use eesmm::data::preprocess::{self, Resize};
use eesmm::data::{cifar, fashion_mnist, Split};
use eesmm::model::{weights, SwinConfig};
use eesmm::onnx::{default_card, ModelCard, Outputs};

/// The largest single allocation any reader may ask for: the image decoder's own limit
/// (`eesmm::limits::MAX_DECODER_BYTES`, 256 MiB) is the largest bound in the readers.
const MAX_ALLOCATION: usize = 1 << 28;
/// The most live heap a reader may add while it reads one input.
const MAX_PEAK: usize = 1 << 29;

const DEFAULT_ITERS: u64 = 2000;
const DEFAULT_SEED: u64 = 14;

/// `System`, counting live and peak bytes, and refusing oversized allocations.
struct Tracking;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Tracking {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if layout.size() > MAX_ALLOCATION {
            return std::ptr::null_mut(); // Rust aborts, printing the size asked for.
        }
        let ptr = unsafe { System.alloc(layout) };
        if !ptr.is_null() {
            let live = LIVE.fetch_add(layout.size(), Relaxed) + layout.size();
            PEAK.fetch_max(live, Relaxed);
        }
        ptr
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        LIVE.fetch_sub(layout.size(), Relaxed);
    }
}

#[global_allocator]
static ALLOCATOR: Tracking = Tracking;

/// Seeded mutations: bit flips, bytes and 32-bit fields overwritten with boundary values (half of
/// them in the first 64 bytes, where headers are), truncation, insertion, deletion, duplication.
fn mutate(rng: &mut StdRng, seed: &[u8]) -> Vec<u8> {
    const BYTES: [u8; 6] = [0x00, 0xFF, 0x7F, 0x80, 0x01, 0x20];
    const WORDS: [u32; 6] = [0, u32::MAX, 0x7FFF_FFFF, 0x8000_0000, 1, 0xFFFF];
    let mut data = seed.to_vec();
    for _ in 0..rng.random_range(1..=4) {
        if data.is_empty() {
            data.push(rng.random());
        }
        let len = data.len();
        let at = if rng.random_bool(0.5) {
            rng.random_range(0..len.min(64))
        } else {
            rng.random_range(0..len)
        };
        match rng.random_range(0..8) {
            0 => data[at] ^= 1 << rng.random_range(0..8),
            1 => data[at] = BYTES[rng.random_range(0..BYTES.len())],
            2 => data[at] = rng.random(),
            3 => {
                let word = WORDS[rng.random_range(0..WORDS.len())].to_le_bytes();
                let word = if rng.random_bool(0.5) {
                    word
                } else {
                    u32::from_le_bytes(word).to_be_bytes()
                };
                for (i, b) in word.iter().enumerate() {
                    if let Some(d) = data.get_mut(at + i) {
                        *d = *b;
                    }
                }
            }
            4 => data.truncate(rng.random_range(0..len)),
            5 => {
                let extra: Vec<u8> = (0..rng.random_range(1..=16))
                    .map(|_| rng.random())
                    .collect();
                data.splice(at..at, extra);
            }
            6 => {
                let end = (at + rng.random_range(1..=64)).min(len);
                data.drain(at..end);
            }
            _ => {
                let end = (at + rng.random_range(1..=64)).min(len);
                let chunk = data[at..end].to_vec();
                data.splice(at..at, chunk);
            }
        }
    }
    data
}

/// Reads one input (its bytes, also written to the file given): an error or a valid value.
type Read = Box<dyn Fn(&[u8], &Path) -> Result<()>>;

/// One reader under test: seed files, and what reading mutated bytes means.
struct Target {
    name: &'static str,
    seeds: Vec<Vec<u8>>,
    read: Read,
}

#[derive(Default)]
struct Counts {
    inputs: u64,
    errors: u64,
    valid: u64,
    peak: usize,
    failures: Vec<String>,
}

fn run(target: &Target, budget: Budget, seed: u64, dir: &Path) -> Counts {
    let mut rng = StdRng::seed_from_u64(seed ^ fxhash(target.name));
    let file = dir.join(format!("input-{}", target.name));
    let mut counts = Counts::default();
    let started = Instant::now();
    while budget.continues(counts.inputs, started.elapsed()) {
        let seed_file = &target.seeds[rng.random_range(0..target.seeds.len())];
        let input = mutate(&mut rng, seed_file);
        std::fs::write(&file, &input).unwrap();
        let before = LIVE.load(Relaxed);
        PEAK.store(before, Relaxed);
        let outcome = catch_unwind(AssertUnwindSafe(|| (target.read)(&input, &file)));
        let added = PEAK.load(Relaxed).saturating_sub(before);
        counts.peak = counts.peak.max(added);
        let failure = match outcome {
            Ok(Ok(())) => {
                counts.valid += 1;
                None
            }
            Ok(Err(_)) => {
                counts.errors += 1;
                None
            }
            Err(_) => Some("panicked"),
        };
        let failure = failure.or((added > MAX_PEAK).then_some("went past the memory bound"));
        if let Some(what) = failure {
            let kept = save_failure(target.name, counts.inputs, &input);
            counts.failures.push(format!(
                "input {} {what}: {}",
                counts.inputs,
                kept.display()
            ));
        }
        counts.inputs += 1;
    }
    counts
}

#[derive(Clone, Copy)]
enum Budget {
    Inputs(u64),
    Time(Duration),
}

impl Budget {
    fn from_env() -> Self {
        let var = |name| std::env::var(name).ok().and_then(|v| v.parse::<u64>().ok());
        match (var("EESMM_FUZZ_ITERS"), var("EESMM_FUZZ_SECONDS")) {
            (Some(iters), _) => Self::Inputs(iters),
            (None, Some(seconds)) => Self::Time(Duration::from_secs(seconds)),
            (None, None) => Self::Inputs(DEFAULT_ITERS),
        }
    }

    fn continues(self, inputs: u64, elapsed: Duration) -> bool {
        match self {
            Self::Inputs(n) => inputs < n,
            Self::Time(limit) => elapsed < limit,
        }
    }
}

fn fxhash(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    })
}

fn save_failure(reader: &str, index: u64, input: &[u8]) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("../fuzz-failures");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(format!("{reader}-{index}"));
    std::fs::write(&path, input).unwrap();
    path
}

fn fixture(path: &str) -> Vec<u8> {
    std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join(path)).unwrap()
}

/// A small idx3 file: `count` 8x6 images.
fn idx_seed(count: u32) -> Vec<u8> {
    let mut bytes = 0x0803u32.to_be_bytes().to_vec();
    for d in [count, 8, 6] {
        bytes.extend_from_slice(&d.to_be_bytes());
    }
    bytes.extend((0..count * 48).map(|i| (i * 7) as u8));
    bytes
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(bytes).unwrap();
    encoder.finish().unwrap()
}

/// Small PNG and JPEG seeds (RGB and grayscale), plus one real photo.
fn image_seeds() -> Vec<Vec<u8>> {
    let encode = |image: image::DynamicImage, format| {
        let mut bytes = std::io::Cursor::new(Vec::new());
        image.write_to(&mut bytes, format).unwrap();
        bytes.into_inner()
    };
    let rgb = image::RgbImage::from_fn(40, 30, |x, y| image::Rgb([x as u8 * 6, y as u8 * 8, 90]));
    let gray = image::GrayImage::from_fn(24, 36, |x, y| image::Luma([(x * 5 + y) as u8]));
    vec![
        encode(rgb.clone().into(), image::ImageFormat::Png),
        encode(rgb.into(), image::ImageFormat::Jpeg),
        encode(gray.clone().into(), image::ImageFormat::Png),
        encode(gray.into(), image::ImageFormat::Jpeg),
        fixture("tests/fixtures/photos/chelsea.jpg"),
    ]
}

/// A small safetensors file: float32, float16 and integer tensors.
fn safetensors_seed() -> Vec<u8> {
    use safetensors::tensor::TensorView;
    use safetensors::Dtype;
    let f32s: Vec<u8> = (0..24)
        .flat_map(|i| (i as f32 * 0.25).to_le_bytes())
        .collect();
    let f16s: Vec<u8> = (0..8u16).flat_map(|i| (0x3c00 + i).to_le_bytes()).collect();
    let i64s: Vec<u8> = (0..6i64).flat_map(|i| i.to_le_bytes()).collect();
    let views = vec![
        (
            "a.weight",
            TensorView::new(Dtype::F32, vec![4, 6], &f32s).unwrap(),
        ),
        (
            "b.bias",
            TensorView::new(Dtype::F16, vec![8], &f16s).unwrap(),
        ),
        (
            "c.index",
            TensorView::new(Dtype::I64, vec![2, 3], &i64s).unwrap(),
        ),
    ];
    safetensors::serialize(views, None).unwrap()
}

/// The `.pth` fixture's entries; inputs for the `.pth` reader are its `data.pkl` mutated and
/// zipped back with the other entries (stored), so that mutations reach the pickle.
fn pth_entries() -> Vec<(String, Vec<u8>)> {
    use std::io::Read;
    let bytes = fixture("tests/fixtures/timm-swin-tiny/old_layout_0.6.13.pt");
    let mut archive = zip::ZipArchive::new(std::io::Cursor::new(bytes)).unwrap();
    (0..archive.len())
        .map(|i| {
            let mut entry = archive.by_index(i).unwrap();
            let mut data = Vec::new();
            entry.read_to_end(&mut data).unwrap();
            (entry.name().to_string(), data)
        })
        .collect()
}

fn zip_with_pickle(entries: &[(String, Vec<u8>)], pickle: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut out = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let stored =
        zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    for (name, data) in entries {
        out.start_file(name.as_str(), stored).unwrap();
        let data = if name.ends_with("data.pkl") {
            pickle
        } else {
            data
        };
        out.write_all(data).unwrap();
    }
    out.finish().unwrap().into_inner()
}

fn targets(dir: &Path) -> Vec<Target> {
    let cifar_dir = dir.join("cifar");
    std::fs::create_dir_all(&cifar_dir).unwrap();
    std::fs::write(
        cifar_dir.join("batches.meta.txt"),
        fixture("tests/fixtures/cifar/cifar-10-batches-bin/batches.meta.txt"),
    )
    .unwrap();
    let cifar100_dir = dir.join("cifar100");
    std::fs::create_dir_all(&cifar100_dir).unwrap();
    let yaml_file = dir.join("model.yaml");
    let card = default_card(
        &SwinConfig::load(Path::new("models/swin-micro-28.yaml")).unwrap(),
        Outputs {
            logits: true,
            feature_map: false,
        },
        10,
    );
    let card_text: Vec<u8> = card
        .to_metadata()
        .iter()
        .flat_map(|(k, v)| format!("{k}\t{v}\n").into_bytes())
        .collect();
    let card_image = dir.join("card-image.png");
    std::fs::write(&card_image, &image_seeds()[2]).unwrap();
    let pth = pth_entries();
    let pickle = pth
        .iter()
        .find(|(name, _)| name.ends_with("data.pkl"))
        .map(|(_, data)| data.clone())
        .unwrap();
    let pipeline_seed = fixture("pipelines/quickstart.yaml");
    let resize = Resize::timm_eval(32);
    vec![
        Target {
            name: "idx",
            seeds: vec![idx_seed(20), gzip(&idx_seed(20))],
            read: Box::new(|_, file| fashion_mnist::read_idx(file, 0x0803).map(|_| ())),
        },
        Target {
            name: "cifar10",
            seeds: vec![fixture(
                "tests/fixtures/cifar/cifar-10-batches-bin/test_batch.bin",
            )],
            read: Box::new(move |input, _| {
                std::fs::write(cifar_dir.join("test_batch.bin"), input)?;
                cifar::load_cifar10(&cifar_dir, Split::Test).map(|_| ())
            }),
        },
        Target {
            name: "cifar100",
            seeds: vec![fixture("tests/fixtures/cifar/cifar-100-binary/test.bin")],
            read: Box::new(move |input, _| {
                std::fs::write(cifar100_dir.join("test.bin"), input)?;
                cifar::load_cifar100(&cifar100_dir, Split::Test).map(|_| ())
            }),
        },
        Target {
            name: "image",
            seeds: image_seeds(),
            read: Box::new(move |_, file| {
                preprocess::probe(file, &resize)?;
                preprocess::load(file, &resize).map(|_| ())
            }),
        },
        Target {
            name: "npy",
            seeds: vec![
                fixture("tests/data/relpos_table_w4.npy"),
                fixture("tests/fixtures/timm-grad/labels.npy"),
                fixture("tests/fixtures/timm-swin-tiny/expected_logits.npy"),
            ],
            read: Box::new(|_, file| eesmm::npy::read(file).map(|_| ())),
        },
        Target {
            name: "safetensors",
            seeds: vec![safetensors_seed()],
            read: Box::new(|_, file| weights::read_state_dict(file).map(|_| ())),
        },
        Target {
            name: "pth",
            seeds: vec![pickle],
            read: Box::new(move |input, file| {
                std::fs::write(file, zip_with_pickle(&pth, input))?;
                weights::read_state_dict(file).map(|_| ())
            }),
        },
        Target {
            name: "model-yaml",
            seeds: vec![
                fixture("models/swin-micro-28.yaml"),
                fixture("models/swin-t.yaml"),
            ],
            read: Box::new(move |input, _| {
                std::fs::write(&yaml_file, input)?;
                SwinConfig::load(&yaml_file).map(|_| ())
            }),
        },
        Target {
            name: "pipeline-yaml",
            seeds: vec![pipeline_seed],
            read: Box::new(|_, file| {
                eesmm::pipeline::Pipeline::load(file, &[], &eesmm::stages::kinds())
                    .map(|_| ())
                    .map_err(|d| anyhow::anyhow!("{d}"))
            }),
        },
        Target {
            name: "model-card",
            seeds: vec![card_text],
            read: Box::new(move |input, _| {
                let props: HashMap<String, String> = String::from_utf8_lossy(input)
                    .lines()
                    .filter_map(|l| l.split_once('\t'))
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect();
                let card = ModelCard::from_metadata(&props)?;
                card.load_image(&card_image).map(|_| ())
            }),
        },
    ]
}

fn main() {
    let budget = Budget::from_env();
    let seed = std::env::var("EESMM_FUZZ_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(DEFAULT_SEED);
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("fuzz-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    println!(
        "fuzz (seed {seed}; single allocation ≤ {} MiB, peak per input ≤ {} MiB)",
        MAX_ALLOCATION >> 20,
        MAX_PEAK >> 20
    );
    println!(
        "{:<14} {:>8} {:>8} {:>8} {:>9} {:>10}",
        "reader", "inputs", "errors", "valid", "seconds", "peak MiB"
    );
    let mut failures = Vec::new();
    let started = Instant::now();
    for target in targets(&dir) {
        let start = Instant::now();
        let counts = run(&target, budget, seed, &dir);
        println!(
            "{:<14} {:>8} {:>8} {:>8} {:>9.1} {:>10.1}",
            target.name,
            counts.inputs,
            counts.errors,
            counts.valid,
            start.elapsed().as_secs_f64(),
            counts.peak as f64 / (1 << 20) as f64
        );
        failures.extend(
            counts
                .failures
                .into_iter()
                .map(|f| format!("{}: {f}", target.name)),
        );
    }
    println!("total {:.1} s", started.elapsed().as_secs_f64());
    std::fs::remove_dir_all(&dir).unwrap();
    if !failures.is_empty() {
        eprintln!(
            "{} failing inputs:\n  {}",
            failures.len(),
            failures.join("\n  ")
        );
        std::process::exit(1);
    }
}
