//! YAML reading for presets and pipelines (serde-saphyr), with the line and column of every
//! error, including the unknown keys that serde reports without a position.

use serde::de::DeserializeOwned;

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

/// 1-based line and column of the first `key:` in `text`.
fn find_key(text: &str, key: &str) -> Option<(usize, usize)> {
    text.lines().enumerate().find_map(|(i, line)| {
        let indent = line.len() - line.trim_start().len();
        let rest = line.trim_start().trim_start_matches("- ");
        let offset = line.trim_start().len() - rest.len();
        rest.strip_prefix(key)
            .filter(|after| after.trim_start().starts_with(':'))
            .map(|_| (i + 1, indent + offset + 1))
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
    fn type_errors_keep_serde_saphyrs_position() {
        let error = from_str::<Stage>("name: a\nepochs: many\n").unwrap_err();
        assert!(error.to_string().contains("line 2 column 9"), "{error}");
    }
}
