//! Minimal NumPy `.npy` (format 1.0/2.0) reading and writing for float32 C-order arrays,
//! the interchange format of `eesmm features` and of the timm reference fixtures.

use std::path::Path;

use anyhow::{bail, ensure, Context, Result};

/// A float32 array and its shape.
#[derive(Debug, Clone, PartialEq)]
pub struct NpyArray {
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
}

const MAGIC: &[u8] = b"\x93NUMPY";

/// Reads a little-endian C-order array of float32, or of float64 / int32 / int64 converted to
/// float32 (exact for the small integers of index buffers).
pub fn read(path: &Path) -> Result<NpyArray> {
    let bytes = std::fs::read(path).with_context(|| format!("{}: cannot read", path.display()))?;
    parse(&bytes).with_context(|| format!("{}: not a usable .npy file", path.display()))
}

fn parse(bytes: &[u8]) -> Result<NpyArray> {
    let rest = bytes
        .strip_prefix(MAGIC)
        .context("missing the \\x93NUMPY magic")?;
    let (header_len, rest) = match rest {
        [1, _, a, b, rest @ ..] => (u16::from_le_bytes([*a, *b]) as usize, rest),
        [2 | 3, _, a, b, c, d, rest @ ..] => (u32::from_le_bytes([*a, *b, *c, *d]) as usize, rest),
        [v, ..] if !(1..=3).contains(v) => bail!("unsupported .npy version {v}"),
        _ => bail!("truncated header"),
    };
    let (header, body) = rest
        .split_at_checked(header_len)
        .with_context(|| format!("truncated header ({header_len} bytes announced)"))?;
    let header = std::str::from_utf8(header).context("the header is not UTF-8")?;
    let descr = header_field(header, "descr")?;
    let dtype = descr.get(1..4).unwrap_or_default();
    let width = match dtype {
        "<f4" | "<i4" => 4,
        "<f8" | "<i8" => 8,
        _ => bail!(
            "dtype {} is not little-endian float32/float64/int32/int64",
            descr.split(',').next().unwrap_or_default()
        ),
    };
    ensure!(
        header_field(header, "fortran_order")?.starts_with("False"),
        "Fortran-order arrays are not supported"
    );
    let shape = parse_shape(header_field(header, "shape")?)?;
    let count = crate::limits::element_count(&shape, crate::limits::MAX_ELEMENTS, "shape")?;
    let needed = count * width;
    ensure!(
        body.len() == needed,
        "shape {shape:?} needs {needed} data bytes, the file has {}",
        body.len()
    );
    let data = match dtype {
        "<f4" => body
            .as_chunks()
            .0
            .iter()
            .map(|b| f32::from_le_bytes(*b))
            .collect(),
        "<i4" => body
            .as_chunks()
            .0
            .iter()
            .map(|b| i32::from_le_bytes(*b) as f32)
            .collect(),
        "<f8" => body
            .as_chunks()
            .0
            .iter()
            .map(|b| f64::from_le_bytes(*b) as f32)
            .collect(),
        _ => body
            .as_chunks()
            .0
            .iter()
            .map(|b| i64::from_le_bytes(*b) as f32)
            .collect(),
    };
    Ok(NpyArray { shape, data })
}

/// The text after `'name':` in a header dict.
fn header_field<'a>(header: &'a str, name: &str) -> Result<&'a str> {
    let key = format!("'{name}'");
    let (_, after) = header
        .split_once(&key)
        .with_context(|| format!("header has no '{name}'"))?;
    let value = after
        .trim_start()
        .strip_prefix(':')
        .with_context(|| format!("header: no ':' after '{name}'"))?;
    Ok(value.trim_start())
}

/// `(2, 3, 4)` or `(5,)` or `()`.
fn parse_shape(text: &str) -> Result<Vec<usize>> {
    let inner = text
        .strip_prefix('(')
        .and_then(|t| t.split_once(')'))
        .map(|(inner, _)| inner)
        .with_context(|| format!("header: malformed shape {text:?}"))?;
    inner
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| s.parse::<usize>())
        .collect::<Result<_, _>>()
        .with_context(|| format!("header: malformed shape ({inner})"))
}

/// Writes a float32 C-order array, atomically (temp file + rename).
pub fn write(path: &Path, shape: &[usize], data: &[f32]) -> Result<()> {
    assert_eq!(
        shape.iter().product::<usize>(),
        data.len(),
        "shape does not match data"
    );
    let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
    let trailing = if shape.len() == 1 { "," } else { "" };
    let mut header = format!(
        "{{'descr': '<f4', 'fortran_order': False, 'shape': ({}{trailing}), }}",
        dims.join(", ")
    );
    // Pad so that magic + version + length + header is a multiple of 64, ending in '\n'.
    let unpadded = MAGIC.len() + 2 + 2 + header.len() + 1;
    header.push_str(&" ".repeat((64 - unpadded % 64) % 64));
    header.push('\n');
    let mut bytes = Vec::with_capacity(10 + header.len() + data.len() * 4);
    bytes.extend_from_slice(MAGIC);
    bytes.extend_from_slice(&[1, 0]);
    bytes.extend_from_slice(&(header.len() as u16).to_le_bytes());
    bytes.extend_from_slice(header.as_bytes());
    for v in data {
        bytes.extend_from_slice(&v.to_le_bytes());
    }
    crate::fsutil::write_atomic(path, &bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_matches_numpy_layout() {
        let dir = std::env::temp_dir().join(format!("eesmm-npy-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("a.npy");
        let data: Vec<f32> = (0..24).map(|v| v as f32 * 0.5).collect();
        write(&path, &[2, 3, 4], &data).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(
            (bytes.len() - data.len() * 4) % 64,
            0,
            "header is 64-byte aligned"
        );
        assert_eq!(
            read(&path).unwrap(),
            NpyArray {
                shape: vec![2, 3, 4],
                data
            }
        );
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn reads_the_timm_fixture_input() {
        let input = read(Path::new("tests/fixtures/timm-swin-tiny/input.npy")).unwrap();
        assert_eq!(input.shape, vec![2, 3, 32, 32]);
        assert_eq!(input.data.len(), 2 * 3 * 32 * 32);
    }

    #[test]
    fn rejects_wrong_dtype_and_truncation() {
        let mut bytes = Vec::from(MAGIC);
        bytes.extend_from_slice(&[1, 0]);
        let header = "{'descr': '>f4', 'fortran_order': False, 'shape': (2,), }\n";
        bytes.extend_from_slice(&(header.len() as u16).to_le_bytes());
        bytes.extend_from_slice(header.as_bytes());
        assert!(format!("{:#}", parse(&bytes).unwrap_err()).contains("'>f4'"));
        let header = header.replace(">f4", "<f4");
        let mut truncated = Vec::from(MAGIC);
        truncated.extend_from_slice(&[1, 0]);
        truncated.extend_from_slice(&(header.len() as u16).to_le_bytes());
        truncated.extend_from_slice(header.as_bytes());
        truncated.extend_from_slice(&[0; 4]);
        assert!(format!("{:#}", parse(&truncated).unwrap_err()).contains("needs 8 data bytes"));
    }

    fn with_header(header: &str) -> Vec<u8> {
        let mut bytes = Vec::from(MAGIC);
        bytes.extend_from_slice(&[1, 0]);
        bytes.extend_from_slice(&(header.len() as u16).to_le_bytes());
        bytes.extend_from_slice(header.as_bytes());
        bytes
    }

    fn error_of(bytes: &[u8]) -> String {
        format!("{:#}", parse(bytes).unwrap_err())
    }

    /// Headers that used to panic (slicing, a wrapped element count) are errors naming the field.
    #[test]
    fn malformed_headers_are_errors() {
        let huge = "{'descr': '<f4', 'fortran_order': False, 'shape': (4294967296, 4294967296), }";
        assert_eq!(
            error_of(&with_header(huge)),
            "shape: the dimensions [4294967296, 4294967296] overflow"
        );
        let empty_shape = "{'descr': '<f4', 'fortran_order': False, 'shape': )(, }";
        assert!(error_of(&with_header(empty_shape)).starts_with("header: malformed shape"));
        assert_eq!(
            error_of(&with_header("{'descr'")),
            "header: no ':' after 'descr'"
        );
        assert_eq!(error_of(&MAGIC[..4]), "missing the \\x93NUMPY magic");
        assert_eq!(
            error_of(&[MAGIC, &[1, 0, 200]].concat()),
            "truncated header"
        );
        assert_eq!(
            error_of(&[MAGIC, &[1, 0, 200, 0]].concat()),
            "truncated header (200 bytes announced)"
        );
        assert_eq!(
            error_of(&[MAGIC, &[9, 0]].concat()),
            "unsupported .npy version 9"
        );
    }
}
