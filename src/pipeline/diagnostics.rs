//! Errors found in a pipeline before anything runs, each with where it is:
//! `FILE:LINE:COL: stages[2] (export) weights: message`.

use std::fmt;
use std::path::PathBuf;

use super::tree::Origin;

#[derive(Debug, Clone, PartialEq)]
pub struct Diagnostic {
    pub origin: Origin,
    /// Index and name of the stage it is about (none for `name`, `run_dir`, `vars`, ...).
    pub stage: Option<(usize, String)>,
    /// Dotted key path inside the stage (or the file), empty when about the whole stage.
    pub key: String,
    pub message: String,
}

/// Every error of one pipeline file.
#[derive(Debug, Clone, PartialEq)]
pub struct Diagnostics {
    pub file: PathBuf,
    pub list: Vec<Diagnostic>,
}

impl Diagnostics {
    pub fn new(file: PathBuf) -> Self {
        Self {
            file,
            list: Vec::new(),
        }
    }

    pub fn push(
        &mut self,
        origin: &Origin,
        stage: Option<(usize, &str)>,
        key: &str,
        message: impl Into<String>,
    ) {
        self.list.push(Diagnostic {
            origin: origin.clone(),
            stage: stage.map(|(i, name)| (i, name.to_string())),
            key: key.to_string(),
            message: message.into(),
        });
    }

    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }
}

impl fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for d in &self.list {
            let mut place = match &d.origin {
                Origin::File { line, column } => {
                    format!("{}:{line}:{column}:", self.file.display())
                }
                Origin::Given(by) => format!("{} ({by}):", self.file.display()),
            };
            if let Some((index, name)) = &d.stage {
                place.push_str(&format!(" stages[{index}] ({name})"));
            }
            if !d.key.is_empty() {
                place.push_str(&format!(" {}", d.key));
            }
            // A position alone ends in ':' already.
            writeln!(f, "{}: {}", place.trim_end_matches(':'), d.message)?;
        }
        let n = self.list.len();
        write!(
            f,
            "{n} error{} in {}; nothing was run",
            if n == 1 { "" } else { "s" },
            self.file.display()
        )
    }
}

impl std::error::Error for Diagnostics {}
