//! What the runner needs of a stage kind ([`Stage`]) and how it reads one ([`Kind`]). The kinds
//! themselves live above the runner, in `crate::stages`, which hands their list to it.

use std::path::{Path, PathBuf};

use anyhow::Result;
use serde::de::{self, DeserializeOwned, Deserializer, Visitor};
use serde::{Deserialize, Serialize};

/// A file or folder a stage reads: hashed to decide whether the stage is up to date, and checked
/// to exist (unless an earlier stage writes it) before anything runs.
#[derive(Debug, Clone, PartialEq)]
pub struct Input {
    /// The key path it comes from (`weights`, `data.root`, `images[0]`), for error messages.
    pub key: String,
    pub path: PathBuf,
}

impl Input {
    pub fn new(key: impl Into<String>, path: &Path) -> Self {
        Self {
            key: key.into(),
            path: path.to_path_buf(),
        }
    }
}

/// Named files a stage writes (`("encoder", "runs/q/pretrain/encoder.safetensors")`).
pub type Outputs = Vec<(&'static str, PathBuf)>;

/// A stage's key figure, e.g. `top-1 87.3 %` or `images 10`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Metric {
    pub name: String,
    pub value: f64,
    #[serde(default)]
    pub unit: Unit,
}

/// How a metric reads: a plain number, a fraction shown as %, or a count.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Unit {
    #[default]
    Value,
    Percent,
    Count,
}

impl Metric {
    pub fn value(name: &str, value: f64) -> Self {
        Self {
            name: name.into(),
            value,
            unit: Unit::Value,
        }
    }

    /// A fraction in [0, 1], shown as a percentage.
    pub fn percent(name: &str, fraction: f64) -> Self {
        Self {
            unit: Unit::Percent,
            ..Self::value(name, fraction)
        }
    }

    pub fn count(name: &str, count: usize) -> Self {
        Self {
            unit: Unit::Count,
            ..Self::value(name, count as f64)
        }
    }
}

/// What a finished stage reports: its key metric (e.g. `loss 0.41`) and the files it wrote.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StageResult {
    pub metric: Option<Metric>,
    pub artifacts: Vec<PathBuf>,
}

/// A stage kind's resolved configuration. Each kind is a serde struct (`deny_unknown_fields`,
/// with an `out_dir` field the runner fills) that implements this.
pub trait Stage {
    /// The folder the stage writes into (`<run_dir>/<stage name>` unless the pipeline says).
    fn out_dir(&self) -> &Path;

    /// Named files the stage will write, known before it runs; later stages refer to them as
    /// `${stage_name.output_name}`.
    fn outputs(&self) -> Outputs;

    /// Files and folders the stage reads.
    fn inputs(&self) -> Vec<Input>;

    /// Checks the configuration before anything runs, without demanding that inputs exist (the
    /// runner checks those, knowing which ones earlier stages write). Messages start with the key
    /// path they are about (`objective.mask_patch_size: ...`), so they can be located in the file.
    fn validate(&self) -> Result<()>;

    /// Runs the stage. `resume`: an interrupted run of this same configuration may have left
    /// state in `out_dir` (checkpoints) to continue from; otherwise such state is stale and the
    /// stage starts afresh.
    fn run(&self, resume: bool) -> Result<StageResult>;
}

/// A stage kind: its `kind:` name, its top-level keys and how to read its configuration.
pub struct Kind {
    pub name: &'static str,
    /// Top-level keys of the schema: the `defaults:` keys a stage of this kind takes.
    pub keys: &'static [&'static str],
    parse: fn(&str) -> Result<Resolved, serde_saphyr::Error>,
}

/// Reads one stage file (as `eesmm finetune --config` etc. do): its kind's schema, its
/// validation, and every file it reads must exist. Errors name the file.
pub fn read_stage_file<T: Stage + DeserializeOwned>(path: &Path) -> Result<T> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| anyhow::anyhow!("{}: cannot read: {e}", path.display()))?;
    let stage: T =
        crate::yaml::from_str(&text).map_err(|e| anyhow::anyhow!("{}: {e:#}", path.display()))?;
    let check = || -> Result<()> {
        stage.validate()?;
        for input in stage.inputs() {
            anyhow::ensure!(
                input.path.exists(),
                "{}: {} does not exist",
                input.key,
                input.path.display()
            );
        }
        Ok(())
    };
    check().map_err(|e| anyhow::anyhow!("{}: {e:#}", path.display()))?;
    Ok(stage)
}

/// A stage read from the pipeline, with its configuration as JSON (hashed into its record and
/// printed by `--dry-run`).
pub struct Resolved {
    pub stage: Box<dyn Stage>,
    pub config: serde_json::Value,
}

/// The kind called `name` in `kinds`.
pub fn find_kind<'a>(kinds: &'a [Kind], name: &str) -> Option<&'a Kind> {
    kinds.iter().find(|k| k.name == name)
}

impl Kind {
    /// The kind `name` with configuration struct `T`. `T`'s top-level keys are read from its
    /// `Deserialize` derive, so `T` must be a plain struct (no `#[serde(flatten)]` at its top).
    pub fn of<T: Stage + Serialize + DeserializeOwned + 'static>(name: &'static str) -> Self {
        Self {
            name,
            keys: field_names::<T>(),
            parse: parse_as::<T>,
        }
    }

    /// Reads a stage of this kind from YAML text (its keys, without `name` and `kind`).
    pub fn parse(&self, yaml: &str) -> Result<Resolved, serde_saphyr::Error> {
        (self.parse)(yaml)
    }
}

fn parse_as<T: Stage + Serialize + DeserializeOwned + 'static>(
    yaml: &str,
) -> Result<Resolved, serde_saphyr::Error> {
    let options = serde_saphyr::Options {
        with_snippet: false,
        ..Default::default()
    };
    let stage: T = serde_saphyr::from_str_with_options(yaml, options)?;
    let config = serde_json::to_value(&stage).expect("stage configurations serialize to JSON");
    Ok(Resolved {
        stage: Box::new(stage),
        config,
    })
}

/// The field names of a `#[derive(Deserialize)]` struct, as serde's derive passes them to
/// `deserialize_struct` (so the list of keys a kind takes never drifts from its struct).
fn field_names<T: DeserializeOwned>() -> &'static [&'static str] {
    struct Fields<'a>(&'a mut &'static [&'static str]);

    impl<'de> Deserializer<'de> for Fields<'_> {
        type Error = de::value::Error;

        fn deserialize_struct<V: Visitor<'de>>(
            self,
            _name: &'static str,
            fields: &'static [&'static str],
            _visitor: V,
        ) -> Result<V::Value, Self::Error> {
            *self.0 = fields;
            Err(de::Error::custom("only the field names were wanted"))
        }

        fn deserialize_any<V: Visitor<'de>>(self, _visitor: V) -> Result<V::Value, Self::Error> {
            Err(de::Error::custom("not a struct"))
        }

        serde::forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
            option unit unit_struct newtype_struct seq tuple tuple_struct map enum identifier
            ignored_any
        }
    }

    let mut fields: &'static [&'static str] = &[];
    let _ = T::deserialize(Fields(&mut fields));
    fields
}
