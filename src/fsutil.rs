//! File-system helpers shared by everything that writes results or lists folders.

use std::collections::HashSet;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

/// Creates `dir` and its parents; the error names it.
pub fn create_dir(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("{}: cannot create", dir.display()))
}

/// Walks folders at any depth: regular files are kept; links are followed, but never into a
/// folder already visited (a link cycle ends there); anything else (FIFOs, sockets, devices,
/// broken links) is left out and reported.
#[derive(Default)]
pub struct Walk {
    /// Canonical paths of the folders listed so far.
    visited: HashSet<PathBuf>,
    /// Entries left out, with the reason.
    pub left_out: Vec<(PathBuf, String)>,
}

impl Walk {
    /// Every regular file below `dir`, sorted.
    pub fn files_below(&mut self, dir: &Path) -> Result<Vec<PathBuf>> {
        let mut files = Vec::new();
        let mut pending = vec![dir.to_path_buf()];
        while let Some(dir) = pending.pop() {
            let canonical = dir
                .canonicalize()
                .with_context(|| format!("{}: cannot resolve", dir.display()))?;
            if !self.visited.insert(canonical) {
                self.left_out
                    .push((dir, "a link to a folder already listed".into()));
                continue;
            }
            for entry in std::fs::read_dir(&dir)
                .with_context(|| format!("{}: cannot list", dir.display()))?
            {
                let path = entry
                    .with_context(|| format!("{}: cannot list", dir.display()))?
                    .path();
                // Follows links: what matters is what they point to.
                match std::fs::metadata(&path) {
                    Ok(meta) if meta.is_dir() => pending.push(path),
                    Ok(meta) if meta.is_file() => files.push(path),
                    Ok(_) => self.left_out.push((path, "not a regular file".into())),
                    Err(e) => self.left_out.push((path, format!("cannot read: {e}"))),
                }
            }
        }
        files.sort();
        Ok(files)
    }

    /// Warns about what was left out.
    pub fn report(&self) {
        if let Some((first, why)) = self.left_out.first() {
            tracing::warn!(
                "left out {} entries (not regular files, or links to folders already listed), e.g. {} ({why})",
                self.left_out.len(),
                first.display()
            );
        }
    }
}

/// Writes `bytes` to `path` through a temporary file in the same folder and a rename, so a reader
/// never sees a half-written file and a crash leaves any previous version intact.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path.file_name().context("output path has no file name")?;
    let tmp = dir.join(format!(
        ".{}.tmp{}",
        name.to_string_lossy(),
        std::process::id()
    ));
    let write = || -> std::io::Result<()> {
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()
    };
    if let Err(e) = write() {
        let _ = std::fs::remove_file(&tmp);
        return Err(e).with_context(|| format!("{}: cannot write", path.display()));
    }
    std::fs::rename(&tmp, path).with_context(|| format!("{}: cannot write", path.display()))?;
    sync_dir(dir).with_context(|| format!("{}: cannot sync", dir.display()))
}

/// fsyncs a directory, so the renames and creations in it survive a power cut.
pub fn sync_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}
