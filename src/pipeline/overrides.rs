//! Values given outside the pipeline file: `--set PATH=VALUE` arguments and `EESMM_<NAME>`
//! environment variables for `vars`. They are applied to the parsed tree before anything else,
//! so they are merged, substituted and checked like values written in the file.

use super::tree::{Node, Origin, Value};

/// One `--set` argument: `stage.key.sub=value`, `vars.name=value`, `defaults.key=value`,
/// `run_dir=value`. The value is YAML (`1`, `true`, `[1, 2]`, `text`).
#[derive(Debug, Clone, PartialEq)]
pub struct Set {
    pub path: Vec<String>,
    pub value: Node,
    /// The argument as given, for error messages.
    pub arg: String,
}

impl Set {
    pub fn parse(arg: &str) -> Result<Self, String> {
        let (path, value) = arg
            .split_once('=')
            .ok_or_else(|| "expected PATH=VALUE, e.g. pretrain.seed=1".to_string())?;
        let path: Vec<String> = path.split('.').map(str::to_string).collect();
        if path.iter().any(String::is_empty) {
            return Err(format!("`{}` is not a dotted key path", path.join(".")));
        }
        let origin = Origin::Given(format!("--set {arg}"));
        let parsed = Node::parse(value).map_err(|e| format!("the value is not YAML: {e}"))?;
        // An empty value parses as null; `--set x=` means the empty string.
        let value = match parsed.value {
            Value::Null if value.trim().is_empty() => Value::Str(String::new()),
            other => other,
        };
        Ok(Self {
            path,
            value: with_origin(Node::new(value, origin.clone()), &origin),
            arg: arg.to_string(),
        })
    }

    /// Writes the value into `root` (the whole pipeline file); `stages.<name>` is found by name.
    pub fn apply(&self, root: &mut Node) -> Result<(), String> {
        let (first, rest) = self.path.split_first().expect("paths are not empty");
        let origin = Origin::Given(format!("--set {}", self.arg));
        let target = match first.as_str() {
            "name" | "run_dir" | "vars" | "defaults" => root,
            stage => find_stage(root, stage).ok_or_else(|| {
                format!(
                    "no stage named `{stage}` (the first key is a stage name, `vars`, \
                     `defaults`, `name` or `run_dir`)"
                )
            })?,
        };
        let keys = if matches!(first.as_str(), "name" | "run_dir" | "vars" | "defaults") {
            &self.path[..]
        } else {
            rest
        };
        if keys.is_empty() {
            return Err("name a key of the stage, e.g. pretrain.seed=1".into());
        }
        set_path(target, keys, self.value.clone(), &origin)
            .map_err(|at| format!("`{at}` is not a mapping"))
    }
}

/// Sets `EESMM_<NAME>` (upper case) over `vars.<name>`: dataset roots differ between machines.
pub fn apply_env(root: &mut Node) {
    let Some(Value::Map(entries)) = root.get_mut("vars").map(|n| &mut n.value) else {
        return;
    };
    for entry in entries {
        let variable = format!("EESMM_{}", entry.key.to_uppercase());
        if let Ok(value) = std::env::var(&variable) {
            entry.value = Node::new(Value::Str(value), Origin::Given(format!("${variable}")));
        }
    }
}

fn find_stage<'a>(root: &'a mut Node, name: &str) -> Option<&'a mut Node> {
    let Value::Seq(stages) = &mut root.get_mut("stages")?.value else {
        return None;
    };
    stages
        .iter_mut()
        .find(|s| s.get("name").and_then(Node::as_str) == Some(name))
}

/// Sets `keys` below `node`, creating mappings on the way; on failure, the key that is not a
/// mapping.
fn set_path(node: &mut Node, keys: &[String], value: Node, origin: &Origin) -> Result<(), String> {
    let (key, rest) = keys.split_first().expect("keys are not empty");
    if !matches!(node.value, Value::Map(_)) {
        return Err(key.clone());
    }
    if rest.is_empty() {
        node.insert(key, value, origin.clone());
        return Ok(());
    }
    if node.get(key).is_none() {
        node.insert(
            key,
            Node::new(Value::Map(Vec::new()), origin.clone()),
            origin.clone(),
        );
    }
    let child = node.get_mut(key).expect("just inserted");
    if !matches!(child.value, Value::Map(_)) {
        return Err(key.clone());
    }
    set_path(child, rest, value, origin).map_err(|at| format!("{key}.{at}"))
}

/// Gives every node below `node` the same origin (a `--set` value has no file position).
fn with_origin(mut node: Node, origin: &Origin) -> Node {
    node.origin = origin.clone();
    node.value = match node.value {
        Value::Seq(items) => {
            Value::Seq(items.into_iter().map(|n| with_origin(n, origin)).collect())
        }
        Value::Map(entries) => Value::Map(
            entries
                .into_iter()
                .map(|mut e| {
                    e.key_origin = origin.clone();
                    e.value = with_origin(e.value, origin);
                    e
                })
                .collect(),
        ),
        scalar => scalar,
    };
    node
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pipeline() -> Node {
        Node::parse("vars: {root: /data}\nstages:\n  - name: pretrain\n    train: {epochs: 1}\n")
            .unwrap()
    }

    #[test]
    fn set_writes_into_the_named_stage_and_creates_mappings() {
        let mut root = pipeline();
        Set::parse("pretrain.train.epochs=3")
            .unwrap()
            .apply(&mut root)
            .unwrap();
        Set::parse("pretrain.optimizer.base_lr=1e-3")
            .unwrap()
            .apply(&mut root)
            .unwrap();
        Set::parse("vars.root=/other")
            .unwrap()
            .apply(&mut root)
            .unwrap();
        let stage = &match &root.get("stages").unwrap().value {
            Value::Seq(s) => s.clone(),
            _ => unreachable!(),
        }[0];
        let train = stage.get("train").unwrap();
        assert_eq!(train.get("epochs").unwrap().value, Value::Int(3));
        assert_eq!(
            train.get("epochs").unwrap().origin,
            Origin::Given("--set pretrain.train.epochs=3".into())
        );
        let lr = stage.get("optimizer").unwrap().get("base_lr").unwrap();
        assert_eq!(lr.value, Value::Float(1e-3));
        let root_var = root.get("vars").unwrap().get("root").unwrap();
        assert_eq!(root_var.value, Value::Str("/other".into()));
    }

    #[test]
    fn set_reports_unknown_stages_and_non_mappings() {
        let mut root = pipeline();
        let error = Set::parse("finetune.seed=1")
            .unwrap()
            .apply(&mut root)
            .unwrap_err();
        assert!(error.contains("no stage named `finetune`"), "{error}");
        let error = Set::parse("pretrain.train.epochs.x=1")
            .unwrap()
            .apply(&mut root)
            .unwrap_err();
        assert!(error.contains("`train.epochs` is not a mapping"), "{error}");
        assert!(Set::parse("pretrain.seed").is_err());
    }
}
