//! What makes a stage up to date: `<run_dir>/.eesmm/<stage>.done.json`, written when the stage
//! succeeds, holds the SHA-256 of its resolved configuration and of each input. A stage whose
//! configuration and inputs hash the same, and whose artifacts are all there, is skipped.
//! `<stage>.started.json` holds the same hashes while a stage runs: an interrupted stage resumes
//! only when they still match (otherwise its checkpoints are stale).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use super::stage::{Input, Metric};
use crate::fsutil::Walk;
use crate::hash::sha256_hex;

/// The hashes of a stage's configuration and inputs (input path → hash).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Fingerprint {
    pub config_sha256: String,
    pub inputs: BTreeMap<String, String>,
}

/// The record of a stage that finished.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Done {
    pub stage: String,
    pub kind: String,
    #[serde(flatten)]
    pub fingerprint: Fingerprint,
    pub metric: Option<Metric>,
    pub artifacts: Vec<PathBuf>,
    pub wall_s: f64,
}

impl Fingerprint {
    /// Hashes `config` (as canonical JSON: sorted keys, no spaces) and every input.
    pub fn of(config: &serde_json::Value, inputs: &[Input]) -> Result<Self> {
        let config = serde_json::to_vec(&canonical(config)).expect("JSON values serialize");
        let inputs = inputs
            .iter()
            .map(|input| {
                let hash = hash_path(&input.path)
                    .with_context(|| format!("{}: {}", input.key, input.path.display()))?;
                Ok((input.path.display().to_string(), hash))
            })
            .collect::<Result<_>>()?;
        Ok(Self {
            config_sha256: sha256_hex(&config),
            inputs,
        })
    }

    /// Why a stage with this fingerprint must run again after `before`, if it must.
    pub fn change_from(&self, before: &Fingerprint) -> Option<String> {
        if self.config_sha256 != before.config_sha256 {
            return Some("configuration changed".into());
        }
        let changed = self
            .inputs
            .iter()
            .find(|(path, hash)| before.inputs.get(*path) != Some(hash))
            .map(|(path, _)| path);
        match changed {
            Some(path) => Some(format!("input {path} changed")),
            None if self.inputs.len() != before.inputs.len() => Some("inputs changed".into()),
            None => None,
        }
    }
}

fn records_dir(run_dir: &Path) -> PathBuf {
    run_dir.join(".eesmm")
}

fn done_path(run_dir: &Path, stage: &str) -> PathBuf {
    records_dir(run_dir).join(format!("{stage}.done.json"))
}

fn started_path(run_dir: &Path, stage: &str) -> PathBuf {
    records_dir(run_dir).join(format!("{stage}.started.json"))
}

/// The stage's record, if it finished once (an unreadable record counts as none).
pub fn read_done(run_dir: &Path, stage: &str) -> Option<Done> {
    read_json(&done_path(run_dir, stage))
}

pub fn write_done(run_dir: &Path, done: &Done) -> Result<()> {
    write_json(&done_path(run_dir, &done.stage), done)?;
    let _ = std::fs::remove_file(started_path(run_dir, &done.stage));
    Ok(())
}

/// Whether the stage was started with exactly this fingerprint and did not finish.
pub fn was_started_with(run_dir: &Path, stage: &str, fingerprint: &Fingerprint) -> bool {
    read_json::<Fingerprint>(&started_path(run_dir, stage)).as_ref() == Some(fingerprint)
}

/// Notes that the stage is starting: a record of it finishing is removed first, so that an
/// interrupted stage is never taken for done.
pub fn mark_started(run_dir: &Path, stage: &str, fingerprint: &Fingerprint) -> Result<()> {
    let done = done_path(run_dir, stage);
    if done.exists() {
        std::fs::remove_file(&done)
            .with_context(|| format!("{}: cannot remove", done.display()))?;
    }
    write_json(&started_path(run_dir, stage), fingerprint)
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Option<T> {
    serde_json::from_slice(&std::fs::read(path).ok()?).ok()
}

fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<()> {
    let dir = path.parent().expect("records live in a folder");
    crate::fsutil::create_dir(dir)?;
    crate::fsutil::write_atomic(path, &serde_json::to_vec_pretty(value)?)
}

/// A file: the SHA-256 of its content. A folder: the SHA-256 of its listing (relative paths and
/// sizes of every regular file below it, sorted; see [`Walk`]), so a dataset folder is not read
/// in full. Anything but a regular file or a folder (a FIFO would block) is an error.
pub fn hash_path(path: &Path) -> Result<String> {
    let meta =
        std::fs::metadata(path).with_context(|| format!("{}: cannot read", path.display()))?;
    if meta.is_dir() {
        let mut walk = Walk::default();
        let mut text = String::new();
        for file in walk.files_below(path)? {
            let size = std::fs::metadata(&file)
                .with_context(|| format!("{}: cannot read", file.display()))?
                .len();
            let name = file.strip_prefix(path).unwrap_or(&file);
            text.push_str(&format!("{}\t{size}\n", name.display()));
        }
        walk.report();
        return Ok(sha256_hex(text.as_bytes()));
    }
    anyhow::ensure!(
        meta.is_file(),
        "{}: not a regular file or a folder",
        path.display()
    );
    crate::hash::sha256_file(path)
}

/// `value` with every object's keys sorted, so equal configurations hash equally.
fn canonical(value: &serde_json::Value) -> serde_json::Value {
    use serde_json::Value;
    match value {
        Value::Object(map) => {
            let sorted: BTreeMap<&String, Value> =
                map.iter().map(|(k, v)| (k, canonical(v))).collect();
            Value::Object(sorted.into_iter().map(|(k, v)| (k.clone(), v)).collect())
        }
        Value::Array(items) => Value::Array(items.iter().map(canonical).collect()),
        other => other.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_change_with_config_and_inputs_but_not_key_order() {
        let dir = std::env::temp_dir().join(format!("eesmm-record-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("data")).unwrap();
        let file = dir.join("data/a.bin");
        std::fs::write(&file, b"one").unwrap();
        let inputs = [
            Input::new("weights", &file),
            Input::new("data.root", &dir.join("data")),
        ];
        let a = Fingerprint::of(&serde_json::json!({"x": 1, "y": 2}), &inputs).unwrap();
        let b = Fingerprint::of(&serde_json::json!({"y": 2, "x": 1}), &inputs).unwrap();
        assert_eq!(a, b);
        let c = Fingerprint::of(&serde_json::json!({"x": 1, "y": 3}), &inputs).unwrap();
        assert_eq!(c.change_from(&a).unwrap(), "configuration changed");
        std::fs::write(&file, b"two").unwrap();
        let d = Fingerprint::of(&serde_json::json!({"x": 1, "y": 2}), &inputs).unwrap();
        assert!(d.change_from(&a).unwrap().contains("a.bin changed"));
        // Same size, so the folder's listing is unchanged.
        assert_eq!(
            d.inputs[&dir.join("data").display().to_string()],
            a.inputs[&dir.join("data").display().to_string()]
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// A link cycle and a FIFO inside a data folder (which hung `--dry-run`) leave its hash as
    /// if they were not there; a FIFO given as an input is an error, not a blocked read.
    #[test]
    fn folder_hashes_end_on_link_cycles_and_fifos() {
        let dir = std::env::temp_dir().join(format!("eesmm-hash-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("data/sub")).unwrap();
        std::fs::write(dir.join("data/sub/a.bin"), b"one").unwrap();
        let plain = hash_path(&dir.join("data")).unwrap();
        std::os::unix::fs::symlink(dir.join("data"), dir.join("data/sub/loop")).unwrap();
        let fifo = dir.join("data/fifo.png");
        let made = std::process::Command::new("mkfifo").arg(&fifo).status();
        assert!(made.unwrap().success());
        assert_eq!(hash_path(&dir.join("data")).unwrap(), plain);
        assert_eq!(
            format!("{:#}", hash_path(&fifo).unwrap_err()),
            format!("{}: not a regular file or a folder", fifo.display())
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_started_stage_is_not_done_and_resumes_only_with_the_same_fingerprint() {
        let run_dir = std::env::temp_dir().join(format!("eesmm-started-{}", std::process::id()));
        let fingerprint = |config: &str| Fingerprint {
            config_sha256: config.into(),
            inputs: BTreeMap::new(),
        };
        let done = Done {
            stage: "pretrain".into(),
            kind: "pretrain".into(),
            fingerprint: fingerprint("a"),
            metric: None,
            artifacts: Vec::new(),
            wall_s: 1.0,
        };
        write_done(&run_dir, &done).unwrap();
        assert_eq!(read_done(&run_dir, "pretrain"), Some(done.clone()));

        mark_started(&run_dir, "pretrain", &fingerprint("b")).unwrap();
        assert_eq!(
            read_done(&run_dir, "pretrain"),
            None,
            "interrupted is not done"
        );
        assert!(was_started_with(&run_dir, "pretrain", &fingerprint("b")));
        assert!(!was_started_with(&run_dir, "pretrain", &fingerprint("c")));

        write_done(&run_dir, &done).unwrap();
        assert!(!was_started_with(&run_dir, "pretrain", &fingerprint("b")));
        std::fs::remove_dir_all(&run_dir).unwrap();
    }
}
