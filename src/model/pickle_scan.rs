//! A bound on what a `.pth` pickle may build, checked before burn-store reads it. burn-store
//! runs no pickle code, but it builds every object the opcodes describe: a deeply nested pickle
//! overflowed the stack and a few KB of memo references (each one a full copy) asked for
//! gigabytes. This scan follows the opcodes without building anything: for each value on the
//! pickle stack and in the memo it keeps only its nesting depth and its object count (memo
//! copies counted in full, as burn-store copies them), and refuses a pickle whose depth exceeds
//! [`MAX_PICKLE_DEPTH`] or whose live objects exceed [`MAX_PICKLE_OBJECTS`].

use std::collections::HashMap;
use std::io::Read;
use std::path::Path;

use anyhow::{bail, ensure, Context, Result};

use crate::limits::{MAX_PICKLE_BYTES, MAX_PICKLE_DEPTH, MAX_PICKLE_OBJECTS};

/// Pickles at the start of a legacy (pre-1.6, not zip) checkpoint: magic number, protocol,
/// system info, the object, the storage keys.
const LEGACY_PICKLES: usize = 5;

/// Checks the pickles of a PyTorch checkpoint: `data.pkl` in a zip, or the leading pickles of a
/// legacy file.
pub fn check_pytorch_file(path: &Path) -> Result<()> {
    let bytes = std::fs::read(path).context("cannot read")?;
    if bytes.starts_with(b"PK\x03\x04") {
        let mut archive = zip::ZipArchive::new(std::io::Cursor::new(&bytes[..]))
            .context("not a readable zip archive")?;
        check_entries_stored(&mut archive)?;
        check(&zipped_pickle(&mut archive)?).context("data.pkl")?;
        Ok(())
    } else {
        let mut rest = &bytes[..];
        for _ in 0..LEGACY_PICKLES {
            if rest.is_empty() {
                break;
            }
            let used = check(rest)?;
            rest = rest.get(used..).unwrap_or_default();
        }
        Ok(())
    }
}

type Archive<'a> = zip::ZipArchive<std::io::Cursor<&'a [u8]>>;

/// PyTorch stores every entry of its zip uncompressed, so an entry's size is its bytes in the
/// file. A compressed tensor entry could expand without bound (a deflate bomb) when burn-store
/// reads it, so only `data.pkl` (bounded by [`zipped_pickle`]) may be compressed.
fn check_entries_stored(archive: &mut Archive<'_>) -> Result<()> {
    for index in 0..archive.len() {
        let entry = archive
            .by_index_raw(index)
            .context("not a readable zip archive")?;
        let name = entry.name().to_string();
        let method = entry.compression();
        ensure!(
            method == zip::CompressionMethod::Stored || name.ends_with("data.pkl"),
            "{name}: compressed ({method:?}); PyTorch stores tensor data uncompressed, and a \
             compressed entry could expand without bound"
        );
    }
    Ok(())
}

/// The `data.pkl` (at any folder depth, as burn-store looks for it) of a zip, its expansion
/// bounded by [`MAX_PICKLE_BYTES`].
fn zipped_pickle(archive: &mut Archive<'_>) -> Result<Vec<u8>> {
    let name = archive
        .file_names()
        .find(|n| *n == "data.pkl" || n.ends_with("/data.pkl"))
        .map(str::to_string)
        .context("no data.pkl in the zip archive")?;
    let mut pickle = Vec::new();
    archive
        .by_name(&name)
        .with_context(|| format!("{name}: cannot read"))?
        .take(MAX_PICKLE_BYTES + 1)
        .read_to_end(&mut pickle)
        .with_context(|| format!("{name}: cannot read"))?;
    ensure!(
        pickle.len() as u64 <= MAX_PICKLE_BYTES,
        "{name}: expands to more than {MAX_PICKLE_BYTES} bytes"
    );
    Ok(pickle)
}

/// What the scan keeps of a value: how deeply it nests and how many objects it holds.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Slot {
    Value { depth: usize, objects: usize },
    Mark,
}

/// The abstract pickle machine: stack, memo, and the objects both hold.
#[derive(Default)]
struct Machine {
    stack: Vec<Slot>,
    memo: HashMap<u64, (usize, usize)>,
    /// Objects on the stack and in the memo.
    live: usize,
    marks: usize,
}

impl Machine {
    fn push(&mut self, depth: usize, objects: usize) -> Result<()> {
        ensure!(
            depth <= MAX_PICKLE_DEPTH,
            "objects nested more than {MAX_PICKLE_DEPTH} deep"
        );
        self.add_live(objects)?;
        self.stack.push(Slot::Value { depth, objects });
        Ok(())
    }

    fn add_live(&mut self, objects: usize) -> Result<()> {
        self.live = self.live.saturating_add(objects);
        ensure!(
            self.live <= MAX_PICKLE_OBJECTS,
            "more than {MAX_PICKLE_OBJECTS} objects (memoised copies counted in full)"
        );
        Ok(())
    }

    fn pop(&mut self) -> Result<(usize, usize)> {
        match self.stack.pop() {
            Some(Slot::Value { depth, objects }) => {
                self.live -= objects;
                Ok((depth, objects))
            }
            Some(Slot::Mark) => bail!("a value expected on the stack, found a mark"),
            None => bail!("pops an empty stack"),
        }
    }

    /// Pops `n` values into one container (or call result): one level deeper than its deepest.
    fn combine(&mut self, n: usize) -> Result<()> {
        let (mut depth, mut objects) = (0, 1);
        for _ in 0..n {
            let (d, o) = self.pop()?;
            depth = depth.max(d);
            objects += o;
        }
        self.push(depth + 1, objects)
    }

    /// Pops the values above the topmost mark and the mark; their depth and object total.
    fn pop_to_mark(&mut self) -> Result<(usize, usize)> {
        let (mut depth, mut objects) = (0, 0);
        loop {
            match self.stack.last() {
                Some(Slot::Mark) => {
                    self.stack.pop();
                    self.marks -= 1;
                    return Ok((depth, objects));
                }
                Some(Slot::Value { .. }) => {
                    let (d, o) = self.pop()?;
                    depth = depth.max(d);
                    objects += o;
                }
                None => bail!("no mark on the stack"),
            }
        }
    }

    /// Adds items of `(depth, objects)` to the container on top of the stack.
    fn extend_top(&mut self, (depth, objects): (usize, usize)) -> Result<()> {
        let (d, o) = self.pop()?;
        self.push(d.max(depth + 1), o + objects)
    }

    fn memo_put(&mut self, index: u64) -> Result<()> {
        let Some(&Slot::Value { depth, objects }) = self.stack.last() else {
            bail!("memoises an empty stack or a mark");
        };
        self.add_live(objects)?;
        if let Some((_, old)) = self.memo.insert(index, (depth, objects)) {
            self.live -= old;
        }
        Ok(())
    }

    fn memo_get(&mut self, index: u64) -> Result<()> {
        let &(depth, objects) = self
            .memo
            .get(&index)
            .with_context(|| format!("memo entry {index} is read before it is written"))?;
        self.push(depth, objects)
    }
}

/// Reads opcode arguments from the pickle bytes.
struct Cursor<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: u64) -> Result<&'a [u8]> {
        let rest = self.bytes.get(self.at..).unwrap_or_default();
        let n = usize::try_from(n)
            .ok()
            .filter(|&n| n <= rest.len())
            .with_context(|| format!("truncated: {n} bytes announced, {} left", rest.len()))?;
        self.at += n;
        Ok(&rest[..n])
    }

    fn uint(&mut self, width: u64) -> Result<u64> {
        let bytes = self.take(width)?;
        Ok(bytes
            .iter()
            .rev()
            .fold(0u64, |v, &b| (v << 8) | u64::from(b)))
    }

    fn line(&mut self) -> Result<&'a [u8]> {
        let rest = self.bytes.get(self.at..).unwrap_or_default();
        let end = rest
            .iter()
            .position(|&b| b == b'\n')
            .context("truncated: a line argument without its newline")?;
        self.at += end + 1;
        Ok(&rest[..end])
    }

    /// A decimal memo index (protocol 0's GET and PUT).
    fn line_index(&mut self) -> Result<u64> {
        let line = self.line()?;
        std::str::from_utf8(line)
            .ok()
            .and_then(|t| t.trim().parse().ok())
            .with_context(|| {
                format!(
                    "memo index {:?} is not a number",
                    String::from_utf8_lossy(line)
                )
            })
    }
}

/// Scans one pickle (up to its STOP); returns the bytes it took.
pub fn check(bytes: &[u8]) -> Result<usize> {
    let mut input = Cursor { bytes, at: 0 };
    let mut machine = Machine::default();
    loop {
        let at = input.at;
        let op = input.uint(1)? as u8;
        step(&mut machine, &mut input, op)
            .with_context(|| format!("pickle opcode {op:#04x} at byte {at}"))?;
        if op == b'.' {
            return Ok(input.at);
        }
    }
}

/// One opcode: reads its arguments and applies its effect on the abstract stack.
fn step(m: &mut Machine, input: &mut Cursor, op: u8) -> Result<()> {
    match op {
        b'.' => {}
        // PROTO, FRAME: no effect on the stack.
        0x80 => {
            input.take(1)?;
        }
        0x95 => {
            input.take(8)?;
        }
        // Scalars and strings: INT, LONG, FLOAT, STRING, UNICODE (line arguments).
        b'I' | b'L' | b'F' | b'S' | b'V' => {
            input.line()?;
            m.push(0, 1)?;
        }
        // BININT, BININT1, BININT2, BINFLOAT, EXT1/2/4.
        b'J' | 0x84 => push_after(m, input, 4)?,
        b'K' | 0x82 => push_after(m, input, 1)?,
        b'M' | 0x83 => push_after(m, input, 2)?,
        b'G' => push_after(m, input, 8)?,
        // Length-prefixed bytes: the prefix width, then that many bytes.
        b'U' | b'C' | 0x8c | 0x8a => push_sized(m, input, 1)?,
        b'T' | b'X' | b'B' | 0x8b => push_sized(m, input, 4)?,
        0x8d | 0x8e | 0x96 => push_sized(m, input, 8)?,
        // NONE, NEWTRUE, NEWFALSE, NEXT_BUFFER.
        b'N' | 0x88 | 0x89 | 0x97 => m.push(0, 1)?,
        // READONLY_BUFFER: no effect.
        0x98 => {}
        // GLOBAL: module and name lines.
        b'c' => {
            input.line()?;
            input.line()?;
            m.push(0, 1)?;
        }
        // STACK_GLOBAL: module and name from the stack.
        0x93 => {
            m.pop()?;
            m.pop()?;
            m.push(0, 1)?;
        }
        // PERSID (a line), BINPERSID (from the stack): a storage reference.
        b'P' => {
            input.line()?;
            m.push(0, 1)?;
        }
        b'Q' => m.combine(1)?,
        // EMPTY_LIST, EMPTY_DICT, EMPTY_TUPLE, EMPTY_SET.
        b']' | b'}' | b')' | 0x8f => m.push(1, 1)?,
        b'(' => {
            ensure!(
                m.marks < MAX_PICKLE_DEPTH,
                "marks nested more than {MAX_PICKLE_DEPTH} deep"
            );
            m.marks += 1;
            m.stack.push(Slot::Mark);
        }
        // TUPLE, LIST, DICT, FROZENSET, OBJ: a container (or object) of the items above the mark.
        b't' | b'l' | b'd' | 0x91 | b'o' => {
            let (depth, objects) = m.pop_to_mark()?;
            m.push(depth + 1, objects + 1)?;
        }
        // INST: class from two lines, arguments above the mark.
        b'i' => {
            input.line()?;
            input.line()?;
            let (depth, objects) = m.pop_to_mark()?;
            m.push(depth + 1, objects + 1)?;
        }
        // APPENDS, SETITEMS, ADDITEMS: the items above the mark into the container below it.
        b'e' | b'u' | 0x90 => {
            let items = m.pop_to_mark()?;
            m.extend_top(items)?;
        }
        // APPEND, BUILD: one value into the object below it; SETITEM: a key and a value.
        b'a' | b'b' => {
            let item = m.pop()?;
            m.extend_top(item)?;
        }
        b's' => {
            let (dv, ov) = m.pop()?;
            let (dk, ok) = m.pop()?;
            m.extend_top((dv.max(dk), ov + ok))?;
        }
        // TUPLE1/2/3.
        0x85 => m.combine(1)?,
        0x86 => m.combine(2)?,
        0x87 => m.combine(3)?,
        // REDUCE, NEWOBJ: a callable and its arguments; NEWOBJ_EX adds keyword arguments.
        b'R' | 0x81 => m.combine(2)?,
        0x92 => m.combine(3)?,
        // POP, POP_MARK, DUP.
        b'0' => match m.stack.last() {
            Some(Slot::Mark) => {
                m.stack.pop();
                m.marks -= 1;
            }
            _ => {
                m.pop()?;
            }
        },
        b'1' => {
            m.pop_to_mark()?;
        }
        b'2' => {
            let Some(&Slot::Value { depth, objects }) = m.stack.last() else {
                bail!("DUP of an empty stack or a mark");
            };
            m.push(depth, objects)?;
        }
        // PUT, BINPUT, LONG_BINPUT, MEMOIZE; GET, BINGET, LONG_BINGET.
        b'p' => {
            let index = input.line_index()?;
            m.memo_put(index)?;
        }
        b'q' => {
            let index = input.uint(1)?;
            m.memo_put(index)?;
        }
        b'r' => {
            let index = input.uint(4)?;
            m.memo_put(index)?;
        }
        0x94 => {
            let index = m.memo.len() as u64;
            m.memo_put(index)?;
        }
        b'g' => {
            let index = input.line_index()?;
            m.memo_get(index)?;
        }
        b'h' => {
            let index = input.uint(1)?;
            m.memo_get(index)?;
        }
        b'j' => {
            let index = input.uint(4)?;
            m.memo_get(index)?;
        }
        other => bail!("unknown pickle opcode {other:#04x}"),
    }
    Ok(())
}

/// An opcode with a fixed-width argument that pushes one scalar.
fn push_after(m: &mut Machine, input: &mut Cursor, width: u64) -> Result<()> {
    input.take(width)?;
    m.push(0, 1)
}

/// An opcode with a length prefix of `width` bytes, then that many bytes, that pushes one value.
fn push_sized(m: &mut Machine, input: &mut Cursor, width: u64) -> Result<()> {
    let len = input.uint(width)?;
    input.take(len)?;
    m.push(0, 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A protocol-2 pickle of `body`, ending in STOP.
    fn pickle(body: &[u8]) -> Vec<u8> {
        [&[0x80, 2][..], body, b"."].concat()
    }

    #[test]
    fn a_small_dict_passes() {
        // {'a': [1, 2]} as Python 3's pickle protocol 2 writes it.
        let bytes = pickle(b"}q\x00X\x01\x00\x00\x00aq\x01]q\x02(K\x01K\x02es");
        assert_eq!(check(&bytes).unwrap(), bytes.len());
    }

    /// The fixture with every zip entry marked deflated (compression method 8 in the local headers
    /// and the central directory): the first entry that is not `data.pkl` is refused by name.
    #[test]
    fn compressed_tensor_entries_are_refused() {
        let path = Path::new("tests/fixtures/timm-swin-tiny/old_layout_0.6.13.pt");
        let mut bytes = std::fs::read(path).unwrap();
        let mut marked = 0;
        for at in 0..bytes.len().saturating_sub(12) {
            let method = match &bytes[at..at + 4] {
                b"PK\x03\x04" => at + 8,
                b"PK\x01\x02" => at + 10,
                _ => continue,
            };
            bytes[method..method + 2].copy_from_slice(&8u16.to_le_bytes());
            marked += 1;
        }
        assert!(marked > 4, "{marked}");
        let patched =
            std::env::temp_dir().join(format!("eesmm-deflated-{}.pt", std::process::id()));
        std::fs::write(&patched, &bytes).unwrap();
        let message = format!("{:#}", check_pytorch_file(&patched).unwrap_err());
        std::fs::remove_file(&patched).unwrap();
        assert!(
            message.starts_with("old_layout_0.6.13/")
                && message.contains(": compressed (Deflated)"),
            "{message}"
        );
    }

    #[test]
    fn the_checkpoint_fixture_passes() {
        check_pytorch_file(Path::new(
            "tests/fixtures/timm-swin-tiny/old_layout_0.6.13.pt",
        ))
        .unwrap();
    }

    /// Nesting without marks: a list put into a new list, again and again (`[[[...]]]`).
    #[test]
    fn deep_nesting_is_refused() {
        let body = b"]".repeat(MAX_PICKLE_DEPTH + 2);
        let appends = b"a".repeat(MAX_PICKLE_DEPTH + 1);
        let message = format!(
            "{:#}",
            check(&pickle(&[body, appends].concat())).unwrap_err()
        );
        assert!(
            message.ends_with("objects nested more than 64 deep"),
            "{message}"
        );
        let marks = b"(".repeat(MAX_PICKLE_DEPTH + 1);
        let message = format!("{:#}", check(&pickle(&marks)).unwrap_err());
        assert!(
            message.ends_with("marks nested more than 64 deep"),
            "{message}"
        );
    }

    /// Each memo copy is a full copy: doubling a list 30 times would be 2^30 objects.
    #[test]
    fn memo_expansion_is_refused() {
        let mut body = b"]q\x00".to_vec();
        for _ in 0..30 {
            // [memo[0], memo[0]] replaces memo[0].
            body.extend_from_slice(b"(h\x00h\x00lq\x00");
        }
        let message = format!("{:#}", check(&pickle(&body)).unwrap_err());
        assert!(
            message.ends_with("more than 4194304 objects (memoised copies counted in full)"),
            "{message}"
        );
    }

    #[test]
    fn malformed_pickles_are_errors() {
        let error_of = |body: &[u8]| format!("{:#}", check(&pickle(body)).unwrap_err());
        assert!(error_of(b"h\x05").ends_with("memo entry 5 is read before it is written"));
        assert!(error_of(b"a").ends_with("pops an empty stack"));
        assert!(error_of(b"X\xff\xff\xff\x7fab").contains("truncated: 2147483647 bytes announced"));
        assert!(error_of(b"\xff").ends_with("unknown pickle opcode 0xff"));
        assert!(format!("{:#}", check(&[0x80, 2]).unwrap_err()).contains("truncated"));
    }
}
