//! YAML reading for presets and pipelines (serde-saphyr), with the line and column of every
//! error, including the unknown keys that serde reports without a position.

use serde::de::DeserializeOwned;

/// `#[serde(default = "crate::yaml::default_true")]`: a flag that is on unless the file says
/// otherwise.
pub fn default_true() -> bool {
    true
}

/// Parses `text`; errors carry `line L column C` where the position is known.
pub fn from_str<T: DeserializeOwned>(text: &str) -> anyhow::Result<T> {
    serde_saphyr::from_str(text).map_err(|error| {
        let message = error.to_string();
        let unknown = message
            .strip_prefix("unknown field `")
            .and_then(|rest| rest.split('`').next());
        match unknown
            .filter(|_| error.location().is_none())
            .and_then(|key| find_key(text, key))
        {
            Some((line, column)) => anyhow::anyhow!("line {line} column {column}: {message}"),
            None => anyhow::anyhow!(message),
        }
    })
}

/// 1-based line and column of the first `key:` in `text`, in block or flow style.
fn find_key(text: &str, key: &str) -> Option<(usize, usize)> {
    text.lines().enumerate().find_map(|(i, line)| {
        line.match_indices(key).find_map(|(at, _)| {
            let before = line[..at].chars().next_back();
            let after = line[at + key.len()..].trim_start();
            let starts_token = before.is_none_or(|c| matches!(c, ' ' | '{' | ',' | '-'));
            (starts_token && after.starts_with(':')).then_some((i + 1, at + 1))
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Stage {
        name: String,
        epochs: usize,
    }

    #[test]
    fn unknown_keys_get_their_position() {
        let error =
            from_str::<Vec<Stage>>("- name: a\n  epochs: 1\n- name: b\n  epoch: 2\n").unwrap_err();
        assert!(
            error
                .to_string()
                .starts_with("line 4 column 3: unknown field `epoch`"),
            "{error}"
        );
    }

    #[test]
    fn unknown_keys_in_flow_mappings_get_their_position() {
        let error =
            from_str::<Vec<Stage>>("- {name: a, epochs: 1}\n- {name: b, epoch: 2}\n").unwrap_err();
        assert!(
            error
                .to_string()
                .starts_with("line 2 column 13: unknown field `epoch`"),
            "{error}"
        );
    }

    #[test]
    fn type_errors_keep_serde_saphyrs_position() {
        let error = from_str::<Stage>("name: a\nepochs: many\n").unwrap_err();
        assert!(error.to_string().contains("line 2 column 9"), "{error}");
    }
}
