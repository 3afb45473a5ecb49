//! The configuration sections this binary knows, beside core's node-wide
//! keys: which tables `alknet.toml` may hold, and in which order `alknet
//! init` writes them.

pub mod diagnostics;
pub mod imports;
pub mod metrics;
pub mod upstreams;

use std::path::Path;

use alknet_core::config::{Config, ConfigError, SectionRegistry};

pub use diagnostics::Diagnostics;
pub use imports::Imports;
pub use metrics::Metrics;
pub use upstreams::Upstreams;

/// Every section, one line each, in the order of the written template.
pub fn registry() -> SectionRegistry {
    SectionRegistry::new()
        .with::<Diagnostics>()
        .with::<alknet_http::config::HttpSection>()
        .with::<Upstreams>()
        .with::<Imports>()
        .with::<Metrics>()
        .with::<alknet_ssh::SshSection>()
        .with::<alknet_sftp::SftpSection>()
        .with::<alknet_git::GitSection>()
        .with::<alknet_dns::DnsSection>()
        .with::<alknet_dns::PkarrSection>()
}

/// The configuration at `path`, or every default without a file.
pub fn load(path: Option<&Path>) -> Result<Config, ConfigError> {
    match path {
        Some(path) => registry().load(path),
        None => Ok(registry().defaults()),
    }
}

/// The file `alknet init` writes: every key, its default, and what it does.
pub fn template() -> String {
    registry().template()
}

#[cfg(test)]
mod tests {
    use alknet_core::NodeConfig;
    use alknet_http::config::HttpSection;

    use super::*;

    /// The template, byte for byte: it was kept identical when the sections
    /// left core, and any change to it (such as `log_format`) is deliberate.
    const TEMPLATE_FIXTURE: &str = include_str!("init_template.fixture.toml");

    #[test]
    fn the_written_template_is_unchanged() {
        assert_eq!(template(), TEMPLATE_FIXTURE);
    }

    #[test]
    fn the_written_template_is_exactly_the_defaults() {
        let config = registry()
            .parse(&template(), Path::new("alknet.toml"))
            .unwrap();
        assert_eq!(config.node, NodeConfig::default());
        assert_eq!(config.section::<Diagnostics>(), &Diagnostics::default());
        assert_eq!(config.section::<HttpSection>(), &HttpSection::default());
        assert_eq!(config.section::<Upstreams>(), &Upstreams::default());
        assert_eq!(config.section::<Imports>(), &Imports::default());
    }

    #[test]
    fn a_misspelt_section_names_the_file_and_the_key() {
        let err = registry()
            .parse("[htpp]\nenabled = true\n", Path::new("alknet.toml"))
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("alknet.toml:"), "{err}");
        assert!(err.contains("unknown field `htpp`"), "{err}");
        assert!(
            err.contains("`diagnostics`, `http`, `upstreams`, `import`"),
            "{err}"
        );
    }

    #[test]
    fn an_unknown_key_in_http_names_the_file_and_the_key() {
        let err = registry()
            .parse("[http]\nconsle = false\n", Path::new("alknet.toml"))
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("alknet.toml:"), "{err}");
        assert!(err.contains("unknown field `consle`"), "{err}");
    }
}
