//! The floating-point type of an exported graph's weights and compute: `fp32`, or `fp16` with
//! float32 inputs and outputs (a Cast after `images` and before every output).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::proto::tensor_proto::DataType;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    #[default]
    Fp32,
    Fp16,
}

impl Precision {
    /// The ONNX element type of the initializers and of every tensor between the input and
    /// output Casts.
    pub fn data_type(self) -> DataType {
        match self {
            Self::Fp32 => DataType::Float,
            Self::Fp16 => DataType::Float16,
        }
    }

    pub fn is_fp32(&self) -> bool {
        *self == Self::Fp32
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Fp32 => "fp32",
            Self::Fp16 => "fp16",
        }
    }
}

impl fmt::Display for Precision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Precision {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "fp32" => Ok(Self::Fp32),
            "fp16" => Ok(Self::Fp16),
            _ => Err(format!("unknown precision '{s}': expected fp32 or fp16")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_its_names() {
        assert_eq!("fp16".parse(), Ok(Precision::Fp16));
        assert_eq!(Precision::Fp32.to_string().parse(), Ok(Precision::Fp32));
        assert_eq!(
            "bf16".parse::<Precision>(),
            Err("unknown precision 'bf16': expected fp32 or fp16".to_string())
        );
    }
}
