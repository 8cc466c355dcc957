//! `defaults:`: keys shared by the stages, merged into each stage whose kind takes the key.

use super::tree::{Entry, Node, Value};

/// Merges `defaults` into `stage` (a mapping), for the top-level keys in `accepted`: a key the
/// stage lacks is added; where both are mappings they merge key by key, recursively; otherwise
/// the stage's own value wins.
pub fn merge_defaults(stage: &mut Node, defaults: &[Entry], accepted: &[&str]) {
    for default in defaults
        .iter()
        .filter(|d| accepted.contains(&d.key.as_str()))
    {
        merge_entry(stage, default);
    }
}

fn merge_entry(target: &mut Node, default: &Entry) {
    match target.get_mut(&default.key) {
        None => target.insert(
            &default.key,
            default.value.clone(),
            default.key_origin.clone(),
        ),
        Some(own) => {
            if let (Value::Map(_), Value::Map(entries)) = (&own.value, &default.value.value) {
                for entry in entries {
                    merge_entry(own, entry);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_fill_missing_keys_and_deep_merge_mappings() {
        let defaults = Node::parse(
            "device: cpu\nseed: 1\ntrain: {epochs: 5, batch_size: 8}\nimages: [a.png]\n",
        )
        .unwrap();
        let mut stage = Node::parse("seed: 7\ntrain: {epochs: 2}\n").unwrap();
        merge_defaults(
            &mut stage,
            defaults.as_map().unwrap(),
            &["device", "seed", "train", "out_dir"],
        );
        assert_eq!(stage.get("device").unwrap().as_str(), Some("cpu"));
        assert_eq!(stage.get("seed").unwrap().value, Value::Int(7));
        let train = stage.get("train").unwrap();
        assert_eq!(train.get("epochs").unwrap().value, Value::Int(2));
        assert_eq!(train.get("batch_size").unwrap().value, Value::Int(8));
        assert!(stage.get("images").is_none(), "not a key of this kind");
    }
}
