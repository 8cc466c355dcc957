//! `${vars.NAME}` and `${stage.output}` in string values. A stage may only name outputs of
//! stages before it, so the order of the file is an order to run them in, and no reference
//! cycle can exist.

use std::collections::BTreeMap;

use super::stage::Outputs;
use super::tree::{join_key, Node, Origin, Value};

/// What references can name while one stage is resolved.
pub struct Scope<'a> {
    pub vars: &'a BTreeMap<String, String>,
    /// Every stage name, in file order.
    pub names: &'a [String],
    /// Outputs of the stages before the current one (`None`: that stage has errors).
    pub outputs: &'a [Option<Outputs>],
}

/// A reference that cannot be substituted: where it is and why.
#[derive(Debug, Clone, PartialEq)]
pub struct BadReference {
    pub key: String,
    pub origin: Origin,
    pub message: String,
}

/// Substitutes every string value below `node` (whose key path is `path`).
pub fn substitute_node(node: &mut Node, path: &str, scope: &Scope, errors: &mut Vec<BadReference>) {
    match &mut node.value {
        Value::Str(text) => match substitute(text, scope) {
            Ok(done) => *text = done,
            Err(message) => errors.push(BadReference {
                key: path.to_string(),
                origin: node.origin.clone(),
                message,
            }),
        },
        Value::Seq(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                substitute_node(item, &format!("{path}[{i}]"), scope, errors);
            }
        }
        Value::Map(entries) => {
            for entry in entries {
                substitute_node(&mut entry.value, &join_key(path, &entry.key), scope, errors);
            }
        }
        Value::Null | Value::Bool(_) | Value::Int(_) | Value::Float(_) => {}
    }
}

/// `text` with each `${...}` replaced.
pub fn substitute(text: &str, scope: &Scope) -> Result<String, String> {
    let mut out = String::new();
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after
            .find('}')
            .ok_or_else(|| format!("`{text}`: `${{` without a closing `}}`"))?;
        out.push_str(&lookup(&after[..end], scope)?);
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

fn lookup(reference: &str, scope: &Scope) -> Result<String, String> {
    let Some((first, second)) = reference.split_once('.') else {
        return Err(format!(
            "`${{{reference}}}`: expected `${{vars.NAME}}` or `${{STAGE.OUTPUT}}`"
        ));
    };
    if first == "vars" {
        return scope.vars.get(second).cloned().ok_or_else(|| {
            format!(
                "`${{{reference}}}`: no variable `{second}` in vars (defined: {})",
                list(scope.vars.keys().map(String::as_str))
            )
        });
    }
    let current = scope.outputs.len();
    let Some(index) = scope.names.iter().position(|n| n == first) else {
        return Err(format!(
            "`${{{reference}}}`: no stage named `{first}` (stages: {})",
            list(scope.names.iter().map(String::as_str))
        ));
    };
    if index >= current {
        let which = if index == current {
            "this stage itself".to_string()
        } else {
            format!("a later stage (stages[{index}])")
        };
        return Err(format!(
            "`${{{reference}}}`: `{first}` is {which}; a stage can only use outputs of stages \
             before it (which also rules out reference cycles)"
        ));
    }
    let Some(outputs) = &scope.outputs[index] else {
        return Err(format!(
            "`${{{reference}}}`: stage `{first}` has errors (reported above), so its outputs \
             are unknown"
        ));
    };
    outputs
        .iter()
        .find(|(name, _)| *name == second)
        .map(|(_, path)| path.display().to_string())
        .ok_or_else(|| {
            format!(
                "`${{{reference}}}`: stage `{first}` has no output `{second}` (outputs: {})",
                list(outputs.iter().map(|(name, _)| *name))
            )
        })
}

fn list<'a>(names: impl Iterator<Item = &'a str>) -> String {
    let names: Vec<&str> = names.collect();
    if names.is_empty() {
        "none".into()
    } else {
        names.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    fn check(text: &str) -> Result<String, String> {
        let vars = BTreeMap::from([("data".to_string(), "/datasets".to_string())]);
        let names = ["pretrain", "export", "verify", "infer"].map(String::from);
        let outputs = [
            Some(vec![(
                "encoder",
                PathBuf::from("runs/q/pretrain/encoder.safetensors"),
            )]),
            None,
        ];
        substitute(
            text,
            &Scope {
                vars: &vars,
                names: &names,
                outputs: &outputs,
            },
        )
    }

    #[test]
    fn vars_and_earlier_outputs_are_substituted() {
        assert_eq!(check("${vars.data}/fmnist").unwrap(), "/datasets/fmnist");
        assert_eq!(
            check("${pretrain.encoder}").unwrap(),
            "runs/q/pretrain/encoder.safetensors"
        );
        assert_eq!(check("no references").unwrap(), "no references");
    }

    #[test]
    fn bad_references_say_what_is_wrong() {
        let error = |text| check(text).unwrap_err();
        assert!(error("${infer.predictions}").contains("a later stage (stages[3])"));
        assert!(error("${infer.predictions}").contains("rules out reference cycles"));
        assert!(error("${verify.report}").contains("this stage itself"));
        assert!(error("${export.onnx}").contains("has errors"));
        assert!(error("${finetune.x}").contains("no stage named `finetune`"));
        assert!(error("${pretrain.onnx}").contains("no output `onnx` (outputs: encoder)"));
        assert!(error("${vars.nope}").contains("no variable `nope` in vars (defined: data)"));
        assert!(error("${vars.data").contains("without a closing"));
        assert!(error("${data}").contains("expected `${vars.NAME}`"));
    }
}
