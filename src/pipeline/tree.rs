//! The pipeline file as a tree of YAML nodes that remember where they came from, so that every
//! error found after merging defaults, applying `--set` and substituting references can still
//! point at a line and column (or at the `--set` argument that gave a value). serde-saphyr parses it (anchors, aliases and `<<` merge keys
//! included) and its `Spanned` wrapper gives each node its position.

use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_saphyr::Spanned;

/// Where a node's text is: a position in the pipeline file, or a value given outside it.
#[derive(Debug, Clone, PartialEq)]
pub enum Origin {
    /// 1-based line and column.
    File { line: u64, column: u64 },
    /// What gave the value: `--set pretrain.seed=1`, `$EESMM_FMNIST`.
    Given(String),
}

impl Origin {
    fn of<T>(spanned: &Spanned<T>) -> Self {
        // `defined` is where the text is: for an alias or a `<<` merge, the anchored original.
        Origin::File {
            line: spanned.defined.line(),
            column: spanned.defined.column(),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub value: Value,
    pub origin: Origin,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Bool(bool),
    Int(i128),
    Float(f64),
    Str(String),
    Seq(Vec<Node>),
    Map(Vec<Entry>),
}

/// A mapping entry; keys keep their own position (errors about a key point at the key).
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub key: String,
    pub key_origin: Origin,
    pub value: Node,
}

impl Node {
    /// Parses YAML text (one document).
    pub fn parse(text: &str) -> Result<Node, serde_saphyr::Error> {
        let root: Spanned<Value> = serde_saphyr::from_str(text)?;
        Ok(Node::from(root))
    }

    pub fn new(value: Value, origin: Origin) -> Self {
        Self { value, origin }
    }

    pub fn as_map(&self) -> Option<&[Entry]> {
        match &self.value {
            Value::Map(entries) => Some(entries),
            _ => None,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match &self.value {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }

    /// The entry `key` of a mapping.
    pub fn entry(&self, key: &str) -> Option<&Entry> {
        self.as_map()?.iter().find(|e| e.key == key)
    }

    pub fn get(&self, key: &str) -> Option<&Node> {
        self.entry(key).map(|e| &e.value)
    }

    pub fn get_mut(&mut self, key: &str) -> Option<&mut Node> {
        match &mut self.value {
            Value::Map(entries) => entries
                .iter_mut()
                .find(|e| e.key == key)
                .map(|e| &mut e.value),
            _ => None,
        }
    }

    /// Sets `key` of a mapping, keeping the position of the key when it was already there.
    pub fn insert(&mut self, key: &str, value: Node, key_origin: Origin) {
        let Value::Map(entries) = &mut self.value else {
            panic!("insert into a node that is not a mapping");
        };
        match entries.iter_mut().find(|e| e.key == key) {
            Some(entry) => entry.value = value,
            None => entries.push(Entry {
                key: key.into(),
                key_origin,
                value,
            }),
        }
    }

    /// A short description of the node's type, for "expected a mapping, got ..." errors.
    pub fn type_name(&self) -> &'static str {
        match self.value {
            Value::Null => "null",
            Value::Bool(_) => "a boolean",
            Value::Int(_) => "an integer",
            Value::Float(_) => "a number",
            Value::Str(_) => "a string",
            Value::Seq(_) => "a list",
            Value::Map(_) => "a mapping",
        }
    }
}

impl From<Spanned<Value>> for Node {
    fn from(spanned: Spanned<Value>) -> Self {
        let origin = Origin::of(&spanned);
        Node::new(spanned.value, origin)
    }
}

impl<'de> Deserialize<'de> for Value {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(ValueVisitor)
    }
}

struct ValueVisitor;

impl<'de> Visitor<'de> for ValueVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any YAML value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Int(v.into()))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::Int(v.into()))
    }

    fn visit_i128<E>(self, v: i128) -> Result<Value, E> {
        Ok(Value::Int(v))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(Value::Float(v))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::Str(v.into()))
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::Str(v))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        Value::deserialize(deserializer)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element::<Spanned<Value>>()? {
            items.push(Node::from(item));
        }
        Ok(Value::Seq(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut entries: Vec<Entry> = Vec::new();
        while let Some(key) = map.next_key::<Spanned<String>>()? {
            let value = Node::from(map.next_value::<Spanned<Value>>()?);
            if entries.iter().any(|e| e.key == key.value) {
                return Err(de::Error::custom(format!("duplicate key `{}`", key.value)));
            }
            entries.push(Entry {
                key_origin: Origin::of(&key),
                key: key.value,
                value,
            });
        }
        Ok(Value::Map(entries))
    }
}

/// The tree as block YAML text, one scalar per line, with the position and key path of each line,
/// so that a serde error about line N of this text can be reported at the original position.
pub struct Rendered {
    pub text: String,
    /// Per line of `text`: the dotted key path (`data.root`, `images[0]`) and where it came from.
    pub lines: Vec<(String, Origin)>,
}

impl Rendered {
    /// Renders the entries of a mapping (skipping the keys in `skip`).
    pub fn mapping(entries: &[Entry], skip: &[&str]) -> Self {
        let mut out = Rendered {
            text: String::new(),
            lines: Vec::new(),
        };
        for entry in entries.iter().filter(|e| !skip.contains(&e.key.as_str())) {
            out.entry(entry, "", 0);
        }
        out
    }

    fn push(&mut self, line: String, path: String, origin: Origin) {
        self.text.push_str(&line);
        self.text.push('\n');
        self.lines.push((path, origin));
    }

    fn entry(&mut self, entry: &Entry, parent: &str, indent: usize) {
        let path = join_key(parent, &entry.key);
        let key = format!("{:indent$}{}:", "", yaml_key(&entry.key));
        match inline(&entry.value) {
            Some(scalar) => self.push(format!("{key} {scalar}"), path, entry.key_origin.clone()),
            None => {
                self.push(key, path.clone(), entry.key_origin.clone());
                self.children(&entry.value, &path, indent + 2);
            }
        }
    }

    fn children(&mut self, node: &Node, path: &str, indent: usize) {
        match &node.value {
            Value::Map(entries) => {
                for entry in entries {
                    self.entry(entry, path, indent);
                }
            }
            Value::Seq(items) => {
                for (i, item) in items.iter().enumerate() {
                    let item_path = format!("{path}[{i}]");
                    match inline(item) {
                        Some(scalar) => self.push(
                            format!("{:indent$}- {scalar}", ""),
                            item_path,
                            item.origin.clone(),
                        ),
                        None => {
                            self.push(
                                format!("{:indent$}-", ""),
                                item_path.clone(),
                                item.origin.clone(),
                            );
                            self.children(item, &item_path, indent + 2);
                        }
                    }
                }
            }
            _ => unreachable!("only collections have children"),
        }
    }
}

pub fn join_key(parent: &str, key: &str) -> String {
    if parent.is_empty() {
        key.to_string()
    } else {
        format!("{parent}.{key}")
    }
}

/// A value that fits on its key's line: scalars and empty collections.
fn inline(node: &Node) -> Option<String> {
    Some(match &node.value {
        Value::Null => "null".into(),
        Value::Bool(b) => b.to_string(),
        Value::Int(i) => i.to_string(),
        Value::Float(f) if f.is_nan() => ".nan".into(),
        Value::Float(f) if f.is_infinite() => if *f > 0.0 { ".inf" } else { "-.inf" }.into(),
        Value::Float(f) => format!("{f:?}"),
        // A JSON string is a valid double-quoted YAML string: text stays text.
        Value::Str(s) => serde_json::to_string(s).expect("strings serialize"),
        Value::Seq(items) if items.is_empty() => "[]".into(),
        Value::Map(entries) if entries.is_empty() => "{}".into(),
        Value::Seq(_) | Value::Map(_) => return None,
    })
}

fn yaml_key(key: &str) -> String {
    let plain = !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if plain {
        key.into()
    } else {
        serde_json::to_string(key).expect("strings serialize")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nodes_keep_positions_through_anchors_and_merge_keys() {
        let text = "base: &base\n  lr: 0.5\n  epochs: 2\nstage:\n  <<: *base\n  epochs: 3\n";
        let root = Node::parse(text).unwrap();
        let stage = root.get("stage").unwrap();
        assert_eq!(stage.get("epochs").unwrap().value, Value::Int(3));
        assert_eq!(stage.get("lr").unwrap().value, Value::Float(0.5));
        // The merged `lr` points at its definition in `base`.
        assert_eq!(
            stage.get("lr").unwrap().origin,
            Origin::File { line: 2, column: 7 }
        );
        assert_eq!(
            stage.entry("epochs").unwrap().key_origin,
            Origin::File { line: 6, column: 3 }
        );
    }

    #[test]
    fn rendering_round_trips_and_maps_lines_to_key_paths() {
        let text = "a: {b: [1, {c: \"x: y\"}], d: []}\ne: 1.0e-3\n";
        let root = Node::parse(text).unwrap();
        let rendered = Rendered::mapping(root.as_map().unwrap(), &[]);
        let back = Node::parse(&rendered.text).unwrap();
        assert_eq!(
            Rendered::mapping(back.as_map().unwrap(), &[]).text,
            rendered.text
        );
        let paths: Vec<&str> = rendered.lines.iter().map(|(p, _)| p.as_str()).collect();
        assert_eq!(
            paths,
            ["a", "a.b", "a.b[0]", "a.b[1]", "a.b[1].c", "a.d", "e"]
        );
        assert_eq!(back.get("e").unwrap().value, Value::Float(1.0e-3));
    }
}
