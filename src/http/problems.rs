//! The problems found in a web config file, collected so that one check names them all.

use std::fmt;

/// One problem with a web config file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WebConfigProblem {
    /// The key at fault, as `tls_server_config.min_version`; empty for the file as a whole.
    pub key: String,
    /// What is wrong, in words the operator can act on. Never holds a key or a hash.
    pub problem: String,
}

/// Every problem found in a web config file. Displays one per line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WebConfigErrors(pub Vec<WebConfigProblem>);

impl fmt::Display for WebConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (index, problem) in self.0.iter().enumerate() {
            if index > 0 {
                f.write_str("\n")?;
            }
            if problem.key.is_empty() {
                f.write_str(&problem.problem)?;
            } else {
                write!(f, "{}: {}", problem.key, problem.problem)?;
            }
        }
        Ok(())
    }
}

impl std::error::Error for WebConfigErrors {}

/// Collects problems so that one check names them all.
#[derive(Default)]
pub(super) struct Problems(pub(super) Vec<WebConfigProblem>);

impl Problems {
    pub(super) fn add(&mut self, key: impl Into<String>, problem: impl Into<String>) {
        self.0.push(WebConfigProblem {
            key: key.into(),
            problem: problem.into(),
        });
    }

    pub(super) fn len(&self) -> usize {
        self.0.len()
    }
}
