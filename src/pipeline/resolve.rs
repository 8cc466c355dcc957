//! Reading a pipeline file into a [`Pipeline`]: parse (anchors and `<<` merges included), apply
//! `EESMM_<NAME>` variables and `--set`, merge `defaults`, fill each `out_dir`, substitute
//! `${...}` references, read each stage into its kind's struct and check it. Every error is
//! collected, with its position, before anything runs.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::defaults::merge_defaults;
use super::diagnostics::Diagnostics;
use super::overrides::{apply_env, Set};
use super::references::{substitute, substitute_node, Scope};
use super::stage::{find_kind, Kind, Outputs, Stage};
use super::tree::{Entry, Node, Origin, Rendered, Value};

/// A checked pipeline, ready to run.
pub struct Pipeline {
    pub file: PathBuf,
    pub name: String,
    pub run_dir: PathBuf,
    pub stages: Vec<PlannedStage>,
}

/// One stage with everything resolved.
pub struct PlannedStage {
    pub name: String,
    pub kind: &'static str,
    pub stage: Box<dyn Stage>,
    /// The resolved configuration: hashed into the stage's record, printed by `--dry-run`.
    pub config: serde_json::Value,
    /// Earlier stages whose outputs this stage reads.
    pub upstream: Vec<String>,
}

/// The top-level keys of a pipeline file (docs/config.md, "Pipeline file").
pub const TOP_KEYS: [&str; 5] = ["name", "run_dir", "vars", "defaults", "stages"];
/// Names that would be ambiguous in `${vars.x}` or `--set`.
const RESERVED_NAMES: [&str; 5] = ["vars", "defaults", "name", "run_dir", "stages"];

impl Pipeline {
    /// Reads and checks `file` with the `--set` arguments `sets`; its stages may be of `kinds`.
    pub fn load(file: &Path, sets: &[String], kinds: &[Kind]) -> Result<Pipeline, Diagnostics> {
        let mut diagnostics = Diagnostics::new(file.to_path_buf());
        let start = Origin::File { line: 1, column: 1 };
        let text = match std::fs::read_to_string(file) {
            Ok(text) => text,
            Err(error) => {
                diagnostics.push(&start, None, "", format!("cannot read: {error}"));
                return Err(diagnostics);
            }
        };
        let mut root = match Node::parse(&text) {
            Ok(root) => root,
            Err(error) => {
                let origin = error.location().map_or(start, |at| Origin::File {
                    line: at.line(),
                    column: at.column(),
                });
                diagnostics.push(&origin, None, "", without_location(&error.to_string()));
                return Err(diagnostics);
            }
        };
        let pipeline =
            Resolver::new(&mut root, sets, kinds, &mut diagnostics).map(|r| r.resolve(file));
        match pipeline {
            Some(pipeline) if diagnostics.is_empty() => Ok(pipeline),
            _ => Err(diagnostics),
        }
    }
}

/// The pipeline-wide parts, read once, and the stages resolved so far.
struct Resolver<'a> {
    diagnostics: &'a mut Diagnostics,
    kinds: &'a [Kind],
    name: String,
    run_dir: PathBuf,
    vars: BTreeMap<String, String>,
    defaults: Vec<Entry>,
    stages: Vec<Node>,
    /// Every stage's name in file order ("" where it has none).
    names: Vec<String>,
}

impl<'a> Resolver<'a> {
    /// Reads the top level (after `EESMM_*` and `--set`); `None` when it is too broken to go on.
    fn new(
        root: &mut Node,
        sets: &[String],
        kinds: &'a [Kind],
        diagnostics: &'a mut Diagnostics,
    ) -> Option<Self> {
        let Some(entries) = root.as_map() else {
            diagnostics.push(
                &root.origin,
                None,
                "",
                format!("expected a mapping with keys {}", TOP_KEYS.join(", ")),
            );
            return None;
        };
        // `x-...` keys hold anchors for the stages to use (`x-train: &train {...}`).
        let unknown = |e: &&Entry| !TOP_KEYS.contains(&e.key.as_str()) && !e.key.starts_with("x-");
        for entry in entries.iter().filter(unknown) {
            diagnostics.push(
                &entry.key_origin,
                None,
                &entry.key,
                format!(
                    "unknown key; expected one of {} (or x-NAME for anchors)",
                    TOP_KEYS.join(", ")
                ),
            );
        }
        apply_env(root);
        for arg in sets {
            if let Err(message) = Set::parse(arg).and_then(|set| set.apply(root)) {
                diagnostics.push(&Origin::Given(format!("--set {arg}")), None, "", message);
            }
        }
        let mut resolver = Resolver {
            name: String::new(),
            run_dir: PathBuf::new(),
            vars: BTreeMap::new(),
            defaults: Vec::new(),
            stages: Vec::new(),
            names: Vec::new(),
            kinds,
            diagnostics,
        };
        resolver.read_vars(root);
        resolver.name = resolver.string(root, "name").unwrap_or_default();
        if root.get("name").is_none() {
            let message = "missing: the pipeline's name";
            resolver
                .diagnostics
                .push(&root.origin, None, "name", message);
        }
        resolver.run_dir = match resolver.string(root, "run_dir") {
            Some(dir) => PathBuf::from(dir),
            None => Path::new("runs").join(&resolver.name),
        };
        resolver.read_defaults(root);
        resolver.read_stages(root)?;
        Some(resolver)
    }

    /// Resolves every stage, in order (a stage's references need the outputs of those before).
    fn resolve(mut self, file: &Path) -> Pipeline {
        let mut planned = Vec::new();
        let mut outputs: Vec<Option<Outputs>> = Vec::new();
        for index in 0..self.stages.len() {
            let (stage, known) = self.resolve_stage(index, &outputs);
            outputs.push(known);
            planned.extend(stage);
        }
        Pipeline {
            file: file.to_path_buf(),
            name: self.name,
            run_dir: self.run_dir,
            stages: planned,
        }
    }

    /// The stage, when it has no errors, and its outputs, when its configuration could be read.
    fn resolve_stage(
        &mut self,
        index: usize,
        earlier: &[Option<Outputs>],
    ) -> (Option<PlannedStage>, Option<Outputs>) {
        let mut node = self.stages[index].clone();
        let name = self.names[index].clone();
        let at = (index, name.as_str());
        let stage_origin = node
            .entry("name")
            .map_or(node.origin.clone(), |e| e.key_origin.clone());
        let kind_name = node.get("kind").and_then(Node::as_str).unwrap_or_default();
        let (Some(kind), false) = (find_kind(self.kinds, kind_name), name.is_empty()) else {
            return (None, None); // reported by `read_stages`
        };
        let errors_before = self.diagnostics.list.len();

        merge_defaults(&mut node, &self.defaults, kind.keys);
        if node.get("out_dir").is_none() {
            let dir = self.run_dir.join(&name).display().to_string();
            node.insert(
                "out_dir",
                Node::new(Value::Str(dir), stage_origin.clone()),
                stage_origin.clone(),
            );
        }
        let mut bad_references = Vec::new();
        let scope = Scope {
            vars: &self.vars,
            names: &self.names,
            outputs: earlier,
        };
        substitute_node(&mut node, "", &scope, &mut bad_references);
        for bad in &bad_references {
            self.diagnostics
                .push(&bad.origin, Some(at), &bad.key, bad.message.clone());
        }

        let rendered = Rendered::mapping(
            node.as_map().expect("a stage is a mapping"),
            &["name", "kind"],
        );
        let resolved = match kind.parse(&rendered.text) {
            Ok(resolved) => resolved,
            Err(error) => {
                let (origin, key, message) = locate_parse_error(&error, &rendered, &stage_origin);
                self.diagnostics.push(&origin, Some(at), &key, message);
                return (None, None);
            }
        };
        let outputs = resolved.stage.outputs();
        if !bad_references.is_empty() {
            return (None, Some(outputs));
        }

        let mut upstream = Vec::new();
        let mut missing = false;
        for input in resolved.stage.inputs() {
            match producer(&input.path, &self.names, earlier) {
                Some(stage) if !upstream.contains(&stage) => upstream.push(stage),
                Some(_) => {}
                None if !input.path.exists() => {
                    missing = true;
                    let origin = origin_of(&rendered, &input.key).unwrap_or(&stage_origin);
                    self.diagnostics.push(
                        origin,
                        Some(at),
                        &input.key,
                        format!(
                            "{} does not exist (and no earlier stage writes it)",
                            input.path.display()
                        ),
                    );
                }
                None => {}
            }
        }
        if !missing {
            if let Err(error) = resolved.stage.validate() {
                let message = format!("{error:#}");
                let (origin, key, message) = locate_message(&message, &rendered, &stage_origin);
                self.diagnostics.push(&origin, Some(at), &key, message);
            }
        }
        let stage = (self.diagnostics.list.len() == errors_before).then(|| PlannedStage {
            name,
            kind: kind.name,
            stage: resolved.stage,
            config: resolved.config,
            upstream,
        });
        (stage, Some(outputs))
    }

    /// A string at the top level, with `${vars.*}` substituted (`None` if absent or wrong).
    fn string(&mut self, root: &Node, key: &str) -> Option<String> {
        let node = root.get(key)?;
        let Some(text) = node.as_str() else {
            self.diagnostics.push(
                &node.origin,
                None,
                key,
                format!("expected a string, got {}", node.type_name()),
            );
            return None;
        };
        let scope = Scope {
            vars: &self.vars,
            names: &[],
            outputs: &[],
        };
        match substitute(text, &scope) {
            Ok(text) => Some(text),
            Err(message) => {
                self.diagnostics.push(&node.origin, None, key, message);
                None
            }
        }
    }

    /// `vars:` must map names to scalars; numbers and booleans are used as their text.
    fn read_vars(&mut self, root: &Node) {
        let Some(vars) = root.get("vars") else {
            return;
        };
        let Some(entries) = vars.as_map() else {
            self.diagnostics.push(
                &vars.origin,
                None,
                "vars",
                format!(
                    "expected a mapping of names to strings, got {}",
                    vars.type_name()
                ),
            );
            return;
        };
        for entry in entries {
            let text = match &entry.value.value {
                Value::Str(s) => s.clone(),
                Value::Int(i) => i.to_string(),
                Value::Float(f) => f.to_string(),
                Value::Bool(b) => b.to_string(),
                _ => {
                    self.diagnostics.push(
                        &entry.value.origin,
                        None,
                        &format!("vars.{}", entry.key),
                        format!("expected a string, got {}", entry.value.type_name()),
                    );
                    continue;
                }
            };
            self.vars.insert(entry.key.clone(), text);
        }
    }

    fn read_defaults(&mut self, root: &Node) {
        let Some(defaults) = root.get("defaults") else {
            return;
        };
        match defaults.as_map() {
            Some(entries) => self.defaults = entries.to_vec(),
            None => self.diagnostics.push(
                &defaults.origin,
                None,
                "defaults",
                format!("expected a mapping, got {}", defaults.type_name()),
            ),
        }
    }

    /// Reads `stages:` and checks each stage's `name` and `kind`.
    fn read_stages(&mut self, root: &Node) -> Option<()> {
        let Some(stages) = root.get("stages") else {
            self.diagnostics
                .push(&root.origin, None, "stages", "missing: the list of stages");
            return None;
        };
        let Value::Seq(items) = &stages.value else {
            self.diagnostics.push(
                &stages.origin,
                None,
                "stages",
                format!("expected a list of stages, got {}", stages.type_name()),
            );
            return None;
        };
        for (index, stage) in items.iter().enumerate() {
            let name = self.read_stage_name(index, stage);
            self.check_kind(index, &name, stage);
            self.names.push(name);
        }
        self.stages = items.clone();
        Some(())
    }

    /// The stage's name, if it is a valid, unique one ("" otherwise, reported).
    fn read_stage_name(&mut self, index: usize, stage: &Node) -> String {
        if stage.as_map().is_none() {
            self.diagnostics.push(
                &stage.origin,
                None,
                &format!("stages[{index}]"),
                format!(
                    "expected a mapping with name and kind, got {}",
                    stage.type_name()
                ),
            );
            return String::new();
        }
        let Some(node) = stage.get("name") else {
            self.diagnostics.push(
                &stage.origin,
                None,
                &format!("stages[{index}].name"),
                "missing: every stage needs a name",
            );
            return String::new();
        };
        let name = node.as_str().unwrap_or_default();
        let valid = !name.is_empty()
            && name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-');
        let problem = if !valid {
            Some(format!(
                "`{name}` is not a stage name: use lower-case letters, digits, `_` and `-`"
            ))
        } else if RESERVED_NAMES.contains(&name) {
            Some(format!("`{name}` is reserved; choose another stage name"))
        } else {
            self.names
                .iter()
                .position(|n| n == name)
                .map(|first| format!("duplicate stage name `{name}` (also stages[{first}])"))
        };
        match problem {
            Some(message) => {
                self.diagnostics.push(
                    &node.origin,
                    None,
                    &format!("stages[{index}].name"),
                    message,
                );
                String::new()
            }
            None => name.to_string(),
        }
    }

    fn check_kind(&mut self, index: usize, name: &str, stage: &Node) {
        let Some(entries) = stage.as_map() else {
            return;
        };
        let expected = self
            .kinds
            .iter()
            .map(|k| k.name)
            .collect::<Vec<_>>()
            .join(", ");
        let at = Some((index, name));
        match entries.iter().find(|e| e.key == "kind") {
            None => self.diagnostics.push(
                &stage.origin,
                at,
                "kind",
                format!("missing: one of {expected}"),
            ),
            Some(entry) => {
                let given = entry.value.as_str().unwrap_or_default();
                if find_kind(self.kinds, given).is_none() {
                    self.diagnostics.push(
                        &entry.value.origin,
                        at,
                        "kind",
                        format!("unknown kind `{given}`; expected one of {expected}"),
                    );
                }
            }
        }
    }
}

/// The earlier stage whose outputs include `path` (or a folder holding it).
fn producer(path: &Path, names: &[String], earlier: &[Option<Outputs>]) -> Option<String> {
    earlier.iter().enumerate().find_map(|(index, outputs)| {
        outputs
            .iter()
            .flatten()
            .any(|(_, output)| path.starts_with(output))
            .then(|| names[index].clone())
    })
}

fn origin_of<'r>(rendered: &'r Rendered, key: &str) -> Option<&'r Origin> {
    rendered
        .lines
        .iter()
        .find(|(path, _)| path == key)
        .map(|(_, origin)| origin)
}

/// Where a serde error about the rendered stage is in the pipeline: origin, key path, message.
fn locate_parse_error(
    error: &serde_saphyr::Error,
    rendered: &Rendered,
    stage: &Origin,
) -> (Origin, String, String) {
    let message = without_location(&error.to_string());
    let line = error
        .location()
        .and_then(|at| (at.line() as usize).checked_sub(1))
        .and_then(|i| rendered.lines.get(i));
    if let Some((path, origin)) = line {
        // serde says what it expected ("invalid u64"); add what the file says.
        let index = error.location().map_or(0, |at| at.line() as usize - 1);
        let given = rendered
            .text
            .lines()
            .nth(index)
            .and_then(|l| l.split_once(": "));
        let message = match given {
            Some((_, value)) if message.starts_with("invalid") => {
                format!("{message}, got {value}")
            }
            _ => message,
        };
        return (origin.clone(), path.clone(), message);
    }
    // serde reports unknown keys without a position: find the key.
    let unknown = message
        .strip_prefix("unknown field `")
        .and_then(|rest| rest.split('`').next());
    let found = unknown.and_then(|key| {
        rendered
            .lines
            .iter()
            .find(|(path, _)| path.rsplit('.').next() == Some(key))
    });
    match found {
        Some((path, origin)) => (origin.clone(), path.clone(), message),
        None => (stage.clone(), String::new(), message),
    }
}

/// A validation message starts with the key path it is about (`data.root: ...`): locate it.
fn locate_message(message: &str, rendered: &Rendered, stage: &Origin) -> (Origin, String, String) {
    if let Some((key, rest)) = message.split_once(": ") {
        if let Some(origin) = origin_of(rendered, key) {
            return (origin.clone(), key.to_string(), rest.to_string());
        }
    }
    (stage.clone(), String::new(), message.to_string())
}

/// serde-saphyr's message without its ` at line L, column C` suffix (positions are given apart).
fn without_location(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(at) if message[at..].contains(", column ") => message[..at].to_string(),
        _ => message.to_string(),
    }
}
