//! The run-directory lock: one process at a time trains in (or runs a pipeline into) a folder.
//!
//! `<dir>/.eesmm.lock` holds an advisory lock (`flock`) while its holder runs, and the holder's
//! pid, host and start time for the message a second process gets. The kernel drops the lock
//! when its holder dies (even by `kill -9`), so a stale lock file is simply taken over.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, Write};
use std::path::Path;

use anyhow::{bail, Context, Result};

/// Held while a run writes into its directory; released on drop (and by the kernel on exit).
#[derive(Debug)]
pub struct RunLock {
    _file: File,
}

impl RunLock {
    /// Locks `dir` (created if needed), or fails at once naming the process that holds it.
    pub fn acquire(dir: &Path) -> Result<Self> {
        crate::fsutil::create_dir(dir)?;
        let path = dir.join(".eesmm.lock");
        let cannot = || format!("{}: cannot open the run lock", path.display());
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .with_context(cannot)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let mut holder = String::new();
                let _ = file.read_to_string(&mut holder);
                bail!(
                    "{}: in use by another eesmm process ({}); wait for it to finish or stop it \
                     (its lock goes with it)",
                    dir.display(),
                    holder_description(&holder)
                );
            }
            Err(TryLockError::Error(error)) => return Err(error).with_context(cannot),
        }
        let holder = format!(
            "pid {} on host {}, since unix time {}",
            std::process::id(),
            hostname(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs())
        );
        file.set_len(0).with_context(cannot)?;
        file.rewind().with_context(cannot)?;
        file.write_all(holder.as_bytes()).with_context(cannot)?;
        Ok(Self { _file: file })
    }
}

/// What the lock file says about its holder, bounded (it is just text in a file).
fn holder_description(text: &str) -> String {
    let text: String = text.chars().take(200).collect();
    match text.trim() {
        "" => "holder unknown".into(),
        holder => holder.into(),
    }
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "unknown".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_on_the_same_directory_fails_naming_the_holder() {
        let dir = std::env::temp_dir().join(format!("eesmm-lock-{}", std::process::id()));
        let first = RunLock::acquire(&dir).unwrap();
        let error = RunLock::acquire(&dir).unwrap_err().to_string();
        assert!(error.contains("in use by another eesmm process"), "{error}");
        assert!(
            error.contains(&format!("pid {}", std::process::id())),
            "{error}"
        );
        drop(first);
        // Released: the next run takes the directory over.
        let again = RunLock::acquire(&dir).unwrap();
        let holder = std::fs::read_to_string(dir.join(".eesmm.lock")).unwrap();
        assert!(
            holder.starts_with(&format!("pid {} on host ", std::process::id())),
            "{holder}"
        );
        drop(again);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
