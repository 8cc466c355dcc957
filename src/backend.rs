//! Which burn backend runs a command: `--device cpu` (burn's NdArray backend), `--device cuda[:N]`
//! (burn's CUDA backend, behind the `cuda` cargo feature) or `--device wgpu` (burn's wgpu backend
//! on the default Vulkan adapter, behind the `wgpu` feature: the same cubecl kernels as CUDA, which
//! CI runs on lavapipe, Mesa's Vulkan on the CPU). Commands are written once, generic over
//! `B: AutodiffBackend`, and [`with_backend!`](crate::with_backend) picks the concrete type.

use std::fmt;
use std::str::FromStr;

use burn::prelude::Backend;
use burn_store::ModuleSnapshot;

/// The CPU backend. NdArray measured faster than Flex for Swin on 2 cores (docs/speed.md).
pub type Cpu = burn::backend::NdArray;
/// Flex, kept behind the `flex` feature so `eesmm bench encoder` can compare it.
#[cfg(feature = "flex")]
pub type CpuFlex = burn::backend::Flex;
#[cfg(feature = "cuda")]
pub type Cuda = burn::backend::Cuda;
#[cfg(feature = "wgpu")]
pub type Wgpu = burn::backend::Wgpu;

/// `model` (built on its device) with the weights `host` builds on the CPU right after seeding the
/// CPU's generator with `seed`: one seed gives the same initial weights on every backend, as in
/// PyTorch, where modules are built on the CPU and then moved. (Each backend has its own random
/// generator; wgpu's and CUDA's draw other numbers than NdArray's from the same seed.) On the CPU
/// the result is the plain build's.
pub fn initialised_on_cpu<B: Backend, M: ModuleSnapshot<B>, H: ModuleSnapshot<Cpu>>(
    seed: u64,
    host: impl FnOnce(&burn::tensor::Device<Cpu>) -> H,
    mut model: M,
) -> anyhow::Result<M> {
    let device = Default::default();
    Cpu::seed(&device, seed);
    let weights = host(&device).collect(None, None, false);
    let result = model.apply(weights, None, None, false);
    anyhow::ensure!(
        result.errors.is_empty() && result.missing.is_empty() && result.unused.is_empty(),
        "moving the initial weights from the CPU to the device: {:?}",
        result
    );
    Ok(model)
}

/// A device named on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceSpec {
    Cpu,
    Cuda(usize),
    /// The default wgpu adapter (one device: wgpu runs no data-parallel replicas here).
    Wgpu,
}

impl FromStr for DeviceSpec {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "cpu" => Ok(Self::Cpu),
            "cuda" => Ok(Self::Cuda(0)),
            "wgpu" => Ok(Self::Wgpu),
            _ => s
                .strip_prefix("cuda:")
                .and_then(|n| n.parse().ok())
                .map(Self::Cuda)
                .ok_or_else(|| format!("unknown device '{s}': expected cpu, cuda, cuda:N or wgpu")),
        }
    }
}

impl fmt::Display for DeviceSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Cpu => write!(f, "cpu"),
            Self::Cuda(n) => write!(f, "cuda:{n}"),
            Self::Wgpu => write!(f, "wgpu"),
        }
    }
}

/// The devices of a training stage's `device:`: one name, or a comma-separated list of one kind
/// for data-parallel training (`cuda:0,cuda:1`). `cpu,cpu` runs two replicas on the CPU: it checks
/// data parallelism, it is not faster.
pub fn parse_devices(s: &str) -> Result<Vec<DeviceSpec>, String> {
    let devices = s
        .split(',')
        .map(|name| name.trim().parse())
        .collect::<Result<Vec<DeviceSpec>, String>>()?;
    let kind = |d: &DeviceSpec| std::mem::discriminant(d);
    if devices.iter().any(|d| kind(d) != kind(&devices[0])) {
        return Err(format!(
            "'{s}' mixes device kinds: the replicas of one run share a backend"
        ));
    }
    if devices.len() > 1 && devices[0] == DeviceSpec::Wgpu {
        return Err(format!(
            "'{s}': wgpu runs on one device (data-parallel replicas need cpu or cuda)"
        ));
    }
    let gpus: Vec<usize> = devices
        .iter()
        .filter_map(|d| match d {
            DeviceSpec::Cuda(n) => Some(*n),
            _ => None,
        })
        .collect();
    if let Some(n) = gpus
        .iter()
        .find(|n| gpus.iter().filter(|m| m == n).count() > 1)
    {
        return Err(format!("'{s}' lists cuda:{n} twice"));
    }
    Ok(devices)
}

/// What `--device wgpu` says in a build without the `wgpu` feature.
pub const NO_WGPU_IN_THIS_BUILD: &str = "this eesmm was built without wgpu, so --device wgpu \
     cannot run: rebuild it with `cargo build --release --features wgpu`";

/// What `--device cuda` says in a build without the `cuda` feature.
pub const NO_CUDA_IN_THIS_BUILD: &str = "this eesmm was built without CUDA, so --device cuda \
     cannot run: rebuild it with `cargo build --release --features cuda` (the build needs no GPU; \
     the CUDA driver and NVRTC are loaded when it runs)";

/// The CUDA devices of `specs` (all `cuda:N`, see [`parse_devices`]), once the probe has found
/// that the driver and NVRTC load, the driver initialises and has every GPU asked for; otherwise
/// an error naming what is missing, before burn's backend would panic on it
/// (see [`crate::cuda_probe`]).
#[cfg(feature = "cuda")]
pub fn cuda_devices(specs: &[DeviceSpec]) -> anyhow::Result<Vec<burn::backend::cuda::CudaDevice>> {
    let indices: Vec<usize> = specs
        .iter()
        .filter_map(|spec| match spec {
            DeviceSpec::Cuda(index) => Some(*index),
            _ => None,
        })
        .collect();
    anyhow::ensure!(
        indices.len() == specs.len(),
        "a device list mixes cpu and cuda"
    );
    let driver = crate::cuda_probe::probe(&indices)?;
    tracing::info!("CUDA: {driver}");
    Ok(indices
        .into_iter()
        .map(burn::backend::cuda::CudaDevice::new)
        .collect())
}

/// Runs `$body` with `$B` bound to the autodiff backend of `$spec` and `$device` to its device,
/// or (`each`) with `$devices` bound to the devices of a list from [`parse_devices`]:
///
/// ```ignore
/// with_backend!(spec, |B, device| run::<B>(&device))
/// with_backend!(each specs, |B, devices| train::<B>(&devices))
/// ```
#[macro_export]
macro_rules! with_backend {
    (each $specs:expr, |$B:ident, $devices:ident| $body:expr) => {{
        let specs: &[$crate::backend::DeviceSpec] = &$specs;
        match specs[0] {
            $crate::backend::DeviceSpec::Cpu => {
                type $B = burn::backend::Autodiff<$crate::backend::Cpu>;
                let $devices: Vec<burn::tensor::Device<$B>> =
                    specs.iter().map(|_| Default::default()).collect();
                $body
            }
            #[cfg(feature = "cuda")]
            $crate::backend::DeviceSpec::Cuda(_) => match $crate::backend::cuda_devices(specs) {
                Err(e) => Err(e),
                Ok($devices) => {
                    type $B = burn::backend::Autodiff<$crate::backend::Cuda>;
                    $body
                }
            },
            #[cfg(not(feature = "cuda"))]
            $crate::backend::DeviceSpec::Cuda(_) => Err(anyhow::anyhow!(
                "{}",
                $crate::backend::NO_CUDA_IN_THIS_BUILD
            )),
            #[cfg(feature = "wgpu")]
            $crate::backend::DeviceSpec::Wgpu => {
                type $B = burn::backend::Autodiff<$crate::backend::Wgpu>;
                let $devices: Vec<burn::tensor::Device<$B>> = vec![Default::default()];
                $body
            }
            #[cfg(not(feature = "wgpu"))]
            $crate::backend::DeviceSpec::Wgpu => Err(anyhow::anyhow!(
                "{}",
                $crate::backend::NO_WGPU_IN_THIS_BUILD
            )),
        }
    }};
    ($spec:expr, |$B:ident, $device:ident| $body:expr) => {
        $crate::with_backend!(each[$spec], |$B, devices| {
            let $device = devices.into_iter().next().expect("one device");
            $body
        })
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_device_names() {
        assert_eq!("cpu".parse(), Ok(DeviceSpec::Cpu));
        assert_eq!("cuda".parse(), Ok(DeviceSpec::Cuda(0)));
        assert_eq!("cuda:3".parse(), Ok(DeviceSpec::Cuda(3)));
        assert!("gpu"
            .parse::<DeviceSpec>()
            .unwrap_err()
            .contains("expected cpu, cuda, cuda:N or wgpu"));
        assert_eq!("wgpu".parse(), Ok(DeviceSpec::Wgpu));
    }

    #[test]
    fn parses_device_lists_of_one_kind() {
        assert_eq!(
            parse_devices("cuda:0, cuda:1"),
            Ok(vec![DeviceSpec::Cuda(0), DeviceSpec::Cuda(1)])
        );
        assert_eq!(parse_devices("cpu,cpu"), Ok(vec![DeviceSpec::Cpu; 2]));
        assert_eq!(parse_devices("cuda"), Ok(vec![DeviceSpec::Cuda(0)]));
        assert!(parse_devices("cpu,cuda:1")
            .unwrap_err()
            .contains("mixes device kinds"));
        assert!(parse_devices("wgpu,cpu")
            .unwrap_err()
            .contains("mixes device kinds"));
        assert!(parse_devices("wgpu,wgpu")
            .unwrap_err()
            .contains("wgpu runs on one device"));
        assert!(parse_devices("cuda:1,cuda:1")
            .unwrap_err()
            .contains("lists cuda:1 twice"));
        assert!(parse_devices("cuda:0,gpu")
            .unwrap_err()
            .contains("unknown device 'gpu'"));
    }
}
