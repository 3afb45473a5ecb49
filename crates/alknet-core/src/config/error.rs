//! Why a configuration file cannot be used.

use std::path::PathBuf;

/// A configuration file that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not valid TOML or does not match the schema; the message
    /// names the line, the key and what was expected.
    #[error("{path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// toml's description, with line, column and key.
        message: String,
    },
    /// A value is out of range.
    #[error("{path}: key `{key}`: expected {expected}")]
    Invalid {
        /// The file (or `<defaults>`).
        path: PathBuf,
        /// The dotted key.
        key: String,
        /// What a valid value looks like.
        expected: String,
    },
}

/// A value that parses but is out of range, or a combination of values that
/// cannot work together: what a validation rule reports. The loader adds the
/// file's name, so that a rule need not know where its values came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InvalidKey {
    /// The dotted key, e.g. `http.decoy_root` or `upstreams[0].pin`.
    pub key: String,
    /// What a valid value looks like.
    pub expected: String,
}

impl InvalidKey {
    /// `key` holds a value other than `expected`.
    pub fn new(key: impl Into<String>, expected: impl Into<String>) -> Self {
        Self {
            key: key.into(),
            expected: expected.into(),
        }
    }

    /// The error naming `origin`, the file the value came from.
    pub fn in_file(self, origin: &std::path::Path) -> ConfigError {
        ConfigError::Invalid {
            path: origin.to_owned(),
            key: self.key,
            expected: self.expected,
        }
    }
}
