//! Which burn backend runs a command: `--device cpu` (burn's NdArray backend) or `--device cuda[:N]`
//! (burn's CUDA backend, behind the `cuda` cargo feature). Commands are written once, generic
//! over `B: AutodiffBackend`, and [`with_backend!`](crate::with_backend) picks the concrete type.

use std::fmt;
use std::str::FromStr;

/// The CPU backend. NdArray measured faster than Flex for Swin on 2 cores (README, "Speed").
pub type Cpu = burn::backend::NdArray;
/// Flex, kept behind the `flex` feature so `eesmm bench encoder` can compare it.
#[cfg(feature = "flex")]
pub type CpuFlex = burn::backend::Flex;
#[cfg(feature = "cuda")]
pub type Cuda = burn::backend::Cuda;

/// A device named on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceSpec {
    Cpu,
    Cuda(usize),
}

impl FromStr for DeviceSpec {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "cpu" => Ok(Self::Cpu),
            "cuda" => Ok(Self::Cuda(0)),
            _ => s
                .strip_prefix("cuda:")
                .and_then(|n| n.parse().ok())
                .map(Self::Cuda)
                .ok_or_else(|| format!("unknown device '{s}': expected cpu, cuda or cuda:N")),
        }
    }
}

impl fmt::Display for DeviceSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Cpu => write!(f, "cpu"),
            Self::Cuda(n) => write!(f, "cuda:{n}"),
        }
    }
}

/// Runs `$body` with `$B` bound to the autodiff backend of `$spec` and `$device` to its device:
///
/// ```ignore
/// with_backend!(spec, |B, device| run::<B>(&device))
/// ```
#[macro_export]
macro_rules! with_backend {
    ($spec:expr, |$B:ident, $device:ident| $body:expr) => {{
        match $spec {
            $crate::backend::DeviceSpec::Cpu => {
                type $B = burn::backend::Autodiff<$crate::backend::Cpu>;
                let $device = Default::default();
                $body
            }
            #[cfg(feature = "cuda")]
            $crate::backend::DeviceSpec::Cuda(index) => {
                type $B = burn::backend::Autodiff<$crate::backend::Cuda>;
                let $device = burn::backend::cuda::CudaDevice::new(index);
                $body
            }
            #[cfg(not(feature = "cuda"))]
            $crate::backend::DeviceSpec::Cuda(_) => Err(anyhow::anyhow!(
                "this eesmm was built without CUDA: rebuild with `cargo build --release --features cuda`"
            )),
        }
    }};
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
            .contains("expected cpu, cuda or cuda:N"));
    }
}
