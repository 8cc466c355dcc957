//! Checks, before burn's CUDA backend starts, that what it loads at run time is there: the CUDA
//! driver (`libcuda`), NVRTC (`libnvrtc`, which compiles cubecl's kernels), a GPU the driver can
//! initialise, and the device index asked for. burn's backend (cudarc, then cubecl-cuda) would
//! otherwise panic on a worker thread ("Unable to dynamically load the cuda shared library").
//! Compiled in every build, so the probe is tested on machines without a GPU.

use std::ffi::{c_char, c_int, c_uint, CStr};
use std::fmt;

/// A shared library cudarc loads with `dlopen`, and the names it tries on Linux.
pub struct SharedLibrary {
    /// What it is, for the error message.
    pub role: &'static str,
    /// File names in the order they are tried; `dlopen` searches `LD_LIBRARY_PATH`, the
    /// `ldconfig` cache and `/lib`, `/usr/lib`.
    pub candidates: &'static [&'static str],
    /// Where it usually lives, for the error message.
    pub where_to_find: &'static str,
    /// A folder to show in the LD_LIBRARY_PATH example.
    pub example_dir: &'static str,
}

/// The CUDA driver. cudarc 0.19 tries `libcuda.so`, then `.so.<major>` for the CUDA its build
/// chose (13) and 12, 11, 10, 9, then `.so.1` (the driver's own soname).
pub const DRIVER: SharedLibrary = SharedLibrary {
    role: "the CUDA driver",
    candidates: &[
        "libcuda.so",
        "libcuda.so.13",
        "libcuda.so.12",
        "libcuda.so.11",
        "libcuda.so.10",
        "libcuda.so.9",
        "libcuda.so.1",
    ],
    where_to_find: "It comes with the NVIDIA driver (/usr/lib/x86_64-linux-gnu, /usr/lib64, or \
                    /usr/local/nvidia/lib64 in containers started with the NVIDIA runtime)",
    example_dir: "/usr/local/nvidia/lib64",
};

/// NVRTC, the run-time CUDA compiler; cudarc tries the same pattern of names as for the driver.
pub const NVRTC: SharedLibrary = SharedLibrary {
    role: "NVRTC, the CUDA run-time compiler",
    candidates: &[
        "libnvrtc.so",
        "libnvrtc.so.13",
        "libnvrtc.so.12",
        "libnvrtc.so.11",
        "libnvrtc.so.10",
        "libnvrtc.so.9",
        "libnvrtc.so.1",
    ],
    where_to_find: "It comes with the CUDA toolkit (/usr/local/cuda/lib64) and with PyTorch's \
                    CUDA wheels (site-packages/nvidia/cu13/lib, or nvidia/cuda_nvrtc/lib)",
    example_dir: "/usr/local/cuda/lib64",
};

/// Why `--device cuda` cannot run here.
#[derive(Debug, thiserror::Error)]
pub enum CudaUnavailable {
    #[error(
        "{role} could not be loaded: tried {tried}{failures}. {where_to_find}; put the folder that \
         holds it on LD_LIBRARY_PATH (e.g. `LD_LIBRARY_PATH={example_dir} eesmm ...`), which is \
         where the CUDA backend looks",
        tried = .candidates.join(", "),
        failures = failures_note(.failures)
    )]
    MissingLibrary {
        role: &'static str,
        candidates: &'static [&'static str],
        where_to_find: &'static str,
        example_dir: &'static str,
        /// `dlopen` errors of files that exist but did not load (wrong architecture, a missing
        /// dependency): the usual "cannot open shared object file" is left out.
        failures: Vec<String>,
    },
    #[error("{library} has no symbol {symbol}: is it a CUDA driver? ({reason})")]
    MissingSymbol {
        library: String,
        symbol: &'static str,
        reason: String,
    },
    #[error(
        "the CUDA driver ({library}) could not start: {call} returned {code} ({name}). Is an NVIDIA \
         GPU visible to this process (`nvidia-smi`; in a container, `--gpus all`)?"
    )]
    DriverCall {
        library: String,
        call: &'static str,
        code: c_int,
        name: String,
    },
    #[error("cuda:{asked} was asked for, but the driver ({library}) sees {count} GPU(s): cuda:0 to cuda:{last}", last = .count.saturating_sub(1))]
    NoSuchDevice {
        library: String,
        asked: usize,
        count: usize,
    },
}

fn failures_note(failures: &[String]) -> String {
    if failures.is_empty() {
        String::new()
    } else {
        format!(" (found but not loadable: {})", failures.join("; "))
    }
}

/// A library that loaded, and the name it loaded under.
pub struct Loaded {
    pub name: &'static str,
    pub library: libloading::Library,
}

impl Loaded {
    fn new((name, library): (&'static str, libloading::Library)) -> Self {
        Self { name, library }
    }
}

/// Loads the first of `lib`'s candidates that `dlopen` accepts.
pub fn load_first(lib: &SharedLibrary) -> Result<Loaded, CudaUnavailable> {
    open_first(lib.candidates)
        .map(Loaded::new)
        .map_err(|failures| CudaUnavailable::MissingLibrary {
            role: lib.role,
            candidates: lib.candidates,
            where_to_find: lib.where_to_find,
            example_dir: lib.example_dir,
            failures,
        })
}

/// The first of `candidates` that loads, or the `dlopen` errors of the files that exist but did
/// not load (the usual "cannot open shared object file" of an absent one is left out).
fn open_first<'a>(candidates: &[&'a str]) -> Result<(&'a str, libloading::Library), Vec<String>> {
    let mut failures = Vec::new();
    for &name in candidates {
        // SAFETY: loading runs the library's initialisers; the CUDA driver and NVRTC are the
        // libraries burn's backend would load next in this process anyway.
        match unsafe { libloading::Library::new(name) } {
            Ok(library) => return Ok((name, library)),
            Err(e) => {
                let reason = dl_reason(&e);
                if !reason.contains("cannot open shared object file") {
                    failures.push(reason);
                }
            }
        }
    }
    Err(failures)
}

/// The `dlerror` text of a failed `dlopen`/`dlsym` (libloading's own message is only "dlopen
/// failed", the text is its source), e.g. "libcuda.so.1: cannot open shared object file: No such
/// file or directory".
fn dl_reason(error: &libloading::Error) -> String {
    match std::error::Error::source(error) {
        Some(source) => source.to_string(),
        None => error.to_string(),
    }
}

/// What the driver reports once the probe passed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CudaDriver {
    /// e.g. `libcuda.so.1`
    pub driver_library: &'static str,
    /// e.g. `libnvrtc.so.12`
    pub nvrtc_library: &'static str,
    /// `cuDriverGetVersion`: 12040 is CUDA 12.4.
    pub driver_version: i32,
    pub device_count: usize,
}

impl fmt::Display for CudaDriver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} (CUDA {}.{}), {}, {} GPU(s)",
            self.driver_library,
            self.driver_version / 1000,
            self.driver_version % 1000 / 10,
            self.nvrtc_library,
            self.device_count
        )
    }
}

/// Checks that the driver and NVRTC load, that the driver initialises, and that every index in
/// `devices` (the N of `cuda:N`) names one of its GPUs.
pub fn probe(devices: &[usize]) -> Result<CudaDriver, CudaUnavailable> {
    // Never unloaded: the backend opens the same two libraries next, and unloading a driver
    // whose cuInit has started its threads is not safe.
    let driver: &'static Loaded = Box::leak(Box::new(load_first(&DRIVER)?));
    let nvrtc: &'static Loaded = Box::leak(Box::new(load_first(&NVRTC)?));
    let calls = DriverCalls::new(driver)?;
    calls.check("cuInit", unsafe { (calls.init)(0) })?;
    let mut version: c_int = 0;
    calls.check("cuDriverGetVersion", unsafe {
        (calls.driver_get_version)(&mut version)
    })?;
    let mut count: c_int = 0;
    calls.check("cuDeviceGetCount", unsafe {
        (calls.device_get_count)(&mut count)
    })?;
    let count = usize::try_from(count).unwrap_or(0);
    if let Some(&asked) = devices.iter().find(|&&n| n >= count) {
        return Err(CudaUnavailable::NoSuchDevice {
            library: driver.name.to_string(),
            asked,
            count,
        });
    }
    Ok(CudaDriver {
        driver_library: driver.name,
        nvrtc_library: nvrtc.name,
        driver_version: version,
        device_count: count,
    })
}

type CuResult = c_int;

/// The four driver entry points the probe calls (CUDA driver API, stable since CUDA 2).
struct DriverCalls<'lib> {
    name: &'static str,
    init: libloading::Symbol<'lib, unsafe extern "C" fn(c_uint) -> CuResult>,
    driver_get_version: libloading::Symbol<'lib, unsafe extern "C" fn(*mut c_int) -> CuResult>,
    device_get_count: libloading::Symbol<'lib, unsafe extern "C" fn(*mut c_int) -> CuResult>,
    get_error_name:
        libloading::Symbol<'lib, unsafe extern "C" fn(CuResult, *mut *const c_char) -> CuResult>,
}

impl<'lib> DriverCalls<'lib> {
    fn new(driver: &'lib Loaded) -> Result<Self, CudaUnavailable> {
        Ok(Self {
            name: driver.name,
            init: symbol(driver, "cuInit")?,
            driver_get_version: symbol(driver, "cuDriverGetVersion")?,
            device_get_count: symbol(driver, "cuDeviceGetCount")?,
            get_error_name: symbol(driver, "cuGetErrorName")?,
        })
    }

    /// `Ok` for CUDA_SUCCESS (0), else the error with the driver's name for the code.
    fn check(&self, call: &'static str, code: CuResult) -> Result<(), CudaUnavailable> {
        if code == 0 {
            return Ok(());
        }
        Err(CudaUnavailable::DriverCall {
            library: self.name.to_string(),
            call,
            code,
            name: self.error_name(code),
        })
    }

    fn error_name(&self, code: CuResult) -> String {
        let mut name: *const c_char = std::ptr::null();
        // SAFETY: cuGetErrorName writes a pointer to a static NUL-terminated string, or
        // returns an error and leaves it null.
        let found = unsafe { (self.get_error_name)(code, &mut name) } == 0 && !name.is_null();
        if found {
            unsafe { CStr::from_ptr(name) }
                .to_string_lossy()
                .into_owned()
        } else {
            "an unknown error code".to_string()
        }
    }
}

fn symbol<'lib, T>(
    driver: &'lib Loaded,
    symbol: &'static str,
) -> Result<libloading::Symbol<'lib, T>, CudaUnavailable> {
    // SAFETY: the signatures in `DriverCalls` are the CUDA driver API's (cuda.h).
    unsafe { driver.library.get(symbol.as_bytes()) }.map_err(|e| CudaUnavailable::MissingSymbol {
        library: driver.name.to_string(),
        symbol,
        reason: dl_reason(&e),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn driver_is_installed() -> bool {
        load_first(&DRIVER).is_ok()
    }

    #[test]
    fn a_missing_driver_is_named_with_where_to_point_eesmm() {
        if driver_is_installed() {
            eprintln!("skipped: this machine has a CUDA driver");
            return;
        }
        let message = probe(&[0]).unwrap_err().to_string();
        assert!(
            message.contains("the CUDA driver could not be loaded"),
            "{message}"
        );
        assert!(message.contains("libcuda.so.1"), "{message}");
        assert!(message.contains("LD_LIBRARY_PATH"), "{message}");
    }

    #[test]
    fn a_missing_library_lists_every_name_tried() {
        let absent = SharedLibrary {
            role: "a library that is not there",
            candidates: &["libeesmm-absent.so", "libeesmm-absent.so.1"],
            where_to_find: "Nowhere",
            example_dir: "/opt/absent",
        };
        let Err(error) = load_first(&absent) else {
            panic!("loaded a library that does not exist");
        };
        let message = error.to_string();
        assert!(
            message.starts_with(
                "a library that is not there could not be loaded: tried libeesmm-absent.so, \
             libeesmm-absent.so.1. Nowhere; put the folder that holds it on LD_LIBRARY_PATH \
             (e.g. `LD_LIBRARY_PATH=/opt/absent eesmm ...`)"
            ),
            "{message}"
        );
        assert!(!message.contains("found but not loadable"), "{message}");
    }

    #[test]
    fn the_first_loadable_candidate_is_taken() {
        let libc = SharedLibrary {
            role: "libc",
            candidates: &["libeesmm-absent.so", "libc.so.6", "libm.so.6"],
            where_to_find: "",
            example_dir: "",
        };
        assert_eq!(load_first(&libc).map(|l| l.name).ok(), Some("libc.so.6"));
    }

    #[test]
    fn a_file_that_is_not_a_library_is_reported_with_its_error() {
        let dir = std::env::temp_dir().join(format!("eesmm-probe-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let fake = dir.join("libcuda.so.1");
        std::fs::write(&fake, b"not an ELF file").unwrap();
        let path = fake.to_string_lossy().into_owned();
        let failures = open_first(&["libeesmm-absent.so", &path]).err().unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(failures.len(), 1, "{failures:?}");
        assert!(failures[0].contains(&path), "{failures:?}");
        assert!(
            failures_note(&failures).starts_with(" (found but not loadable: "),
            "{failures:?}"
        );
    }

    #[test]
    fn the_driver_version_reads_as_major_minor() {
        let driver = CudaDriver {
            driver_library: "libcuda.so.1",
            nvrtc_library: "libnvrtc.so.12",
            driver_version: 12040,
            device_count: 2,
        };
        assert_eq!(
            driver.to_string(),
            "libcuda.so.1 (CUDA 12.4), libnvrtc.so.12, 2 GPU(s)"
        );
    }
}
