//! Configuration sections: the top-level tables of `alknet.toml` that a crate
//! other than this one owns.
//!
//! Core knows the node-wide keys ([`NodeConfig`]); every other top-level
//! table (`[http]`, `[import]`, `[[upstreams]]`, a new protocol's `[ssh]`) is
//! parsed, validated and documented by the crate it configures, so adding a
//! protocol never edits core. That crate implements [`ConfigSection`]; the
//! binary lists the sections it knows in a [`SectionRegistry`], one line each,
//! and loads the file once into a [`Config`]: the node-wide keys plus one
//! typed value per section. A top-level key that neither core nor a
//! registered section claims is an error naming the file and the key, like
//! an unknown key inside any table.
//!
//! ```
//! use std::path::Path;
//!
//! use alknet_core::config::{ConfigSection, InvalidKey, NodeConfig, SectionRegistry};
//! use serde::Deserialize;
//!
//! /// `[greeter]`: what a toy protocol says first.
//! #[derive(Debug, Deserialize)]
//! #[serde(deny_unknown_fields, default)]
//! struct Greeter {
//!     greeting: String,
//! }
//!
//! impl Default for Greeter {
//!     fn default() -> Self {
//!         Self { greeting: "hello".to_owned() }
//!     }
//! }
//!
//! impl ConfigSection for Greeter {
//!     const KEY: &'static str = "greeter";
//!     const TEMPLATE: &'static str = "[greeter]\n# Sent on every new stream.\ngreeting = \"hello\"\n";
//!
//!     fn validate(&self, _node: &NodeConfig) -> Result<(), InvalidKey> {
//!         if self.greeting.is_empty() {
//!             return Err(InvalidKey::new("greeter.greeting", "a non-empty text"));
//!         }
//!         Ok(())
//!     }
//! }
//!
//! let sections = SectionRegistry::new().with::<Greeter>();
//! let file = Path::new("alknet.toml");
//! let config = sections.parse("log = \"debug\"\n[greeter]\ngreeting = \"hi\"\n", file)?;
//! assert_eq!(config.node.log, "debug");
//! assert_eq!(config.section::<Greeter>().greeting, "hi");
//!
//! let typo = sections.parse("[greeter]\ngreting = \"hi\"\n", file).unwrap_err();
//! assert!(typo.to_string().starts_with("alknet.toml:") && typo.to_string().contains("greting"));
//! let empty = sections.parse("[greeter]\ngreeting = \"\"\n", file).unwrap_err();
//! assert_eq!(empty.to_string(), "alknet.toml: key `greeter.greeting`: expected a non-empty text");
//! assert!(sections.template().ends_with("\n[greeter]\n# Sent on every new stream.\ngreeting = \"hello\"\n"));
//! # Ok::<(), alknet_core::ConfigError>(())
//! ```

use std::any::{Any, TypeId};
use std::fmt;
use std::path::Path;

use serde::de::DeserializeOwned;

use super::error::{ConfigError, InvalidKey};
use super::node::NodeConfig;
use super::{parse, template};

/// A top-level table of `alknet.toml` that its own crate parses, validates and
/// documents.
///
/// Derive `Deserialize` with `#[serde(deny_unknown_fields, default)]` (or
/// `#[serde(transparent)]` over a `Vec` for an array of tables such as
/// `[[upstreams]]`): unknown keys must be errors, and an absent key must be
/// its default. A file without the table gets `Default::default()`.
pub trait ConfigSection: DeserializeOwned + Default + fmt::Debug + Send + Sync + 'static {
    /// The top-level key: `"http"` for `[http]`, `"upstreams"` for
    /// `[[upstreams]]`.
    const KEY: &'static str;

    /// What `alknet init` writes for this section: every key with its default
    /// and a comment, ending with a newline. Parsed alone, it must give
    /// `Default::default()`.
    const TEMPLATE: &'static str;

    /// Checks what serde cannot: ranges and combinations. `node` is the
    /// node-wide configuration, for a rule that spans it and this section.
    /// Keys in the error are dotted from the top (`http.decoy_root`).
    fn validate(&self, node: &NodeConfig) -> Result<(), InvalidKey> {
        let _ = node;
        Ok(())
    }
}

/// The sections a binary knows, in the order `alknet init` writes them.
#[derive(Default)]
pub struct SectionRegistry {
    sections: Vec<Registered>,
}

/// One registered section, with its type erased so that one list holds all.
struct Registered {
    key: &'static str,
    template: &'static str,
    type_id: TypeId,
    parse: fn(&str) -> Result<Box<dyn AnySection>, toml::de::Error>,
    default: fn() -> Box<dyn AnySection>,
}

impl SectionRegistry {
    /// No sections: only core's node-wide keys are known.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `T`.
    ///
    /// # Panics
    /// If `T::KEY` is already claimed by core or by another section: two
    /// owners of one table is a wiring mistake every start would hit.
    pub fn with<T: ConfigSection>(mut self) -> Self {
        assert!(
            !self.keys().any(|key| key == T::KEY),
            "configuration key `{}` is registered twice",
            T::KEY
        );
        self.sections.push(Registered {
            key: T::KEY,
            template: T::TEMPLATE,
            type_id: TypeId::of::<T>(),
            parse: |text| Ok(Box::new(parse::section::<T>(text, T::KEY)?)),
            default: || Box::new(T::default()),
        });
        self
    }

    /// The file `alknet init` writes: core's keys, then each section's
    /// template in registration order, a blank line apart.
    pub fn template(&self) -> String {
        let mut text = template::NODE_TEMPLATE.to_owned();
        for section in &self.sections {
            text.push('\n');
            text.push_str(section.template);
        }
        text
    }

    /// Every key's default: what a node without a configuration file runs.
    pub fn defaults(&self) -> Config {
        Config {
            node: NodeConfig::default(),
            sections: self
                .sections
                .iter()
                .map(|section| (section.type_id, (section.default)()))
                .collect(),
        }
    }

    /// Reads, parses and validates a configuration file.
    pub fn load(&self, path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        self.parse(&text, path)
    }

    /// Parses and validates configuration text; `origin` names it in errors.
    pub fn parse(&self, text: &str, origin: &Path) -> Result<Config, ConfigError> {
        let unusable = |error: toml::de::Error| ConfigError::Parse {
            path: origin.to_owned(),
            message: error.to_string().trim_end().to_owned(),
        };
        let keys: Vec<&str> = self.keys().collect();
        parse::only_known_keys(text, &keys).map_err(unusable)?;
        let node: NodeConfig = toml::from_str(text).map_err(unusable)?;
        let mut sections = Vec::with_capacity(self.sections.len());
        for section in &self.sections {
            sections.push((section.type_id, (section.parse)(text).map_err(unusable)?));
        }
        node.validate().map_err(|invalid| invalid.in_file(origin))?;
        for (_, section) in &sections {
            section
                .validate(&node)
                .map_err(|invalid| invalid.in_file(origin))?;
        }
        Ok(Config { node, sections })
    }

    /// Every top-level key: core's, then the sections'.
    fn keys(&self) -> impl Iterator<Item = &'static str> + '_ {
        NodeConfig::KEYS
            .iter()
            .copied()
            .chain(self.sections.iter().map(|section| section.key))
    }
}

/// A loaded configuration: the node-wide keys and every registered section.
#[derive(Debug)]
pub struct Config {
    /// The node-wide keys.
    pub node: NodeConfig,
    sections: Vec<(TypeId, Box<dyn AnySection>)>,
}

impl Config {
    /// The section `T`, as the file (or its defaults) gave it.
    ///
    /// # Panics
    /// If `T` was not registered with the [`SectionRegistry`] this came from:
    /// a wiring mistake in the binary, never a property of the file.
    pub fn section<T: ConfigSection>(&self) -> &T {
        self.sections
            .iter()
            .find(|(type_id, _)| *type_id == TypeId::of::<T>())
            .and_then(|(_, section)| section.as_any().downcast_ref())
            .unwrap_or_else(|| panic!("configuration section `{}` is not registered", T::KEY))
    }
}

/// A section behind a pointer: validated without knowing its type, read back
/// by downcasting.
trait AnySection: fmt::Debug + Send + Sync {
    fn validate(&self, node: &NodeConfig) -> Result<(), InvalidKey>;
    fn as_any(&self) -> &dyn Any;
}

impl<T: ConfigSection> AnySection for T {
    fn validate(&self, node: &NodeConfig) -> Result<(), InvalidKey> {
        ConfigSection::validate(self, node)
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}
