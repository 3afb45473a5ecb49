use std::path::Path;
use std::time::Duration;

use serde::Deserialize;

use super::template::NODE_TEMPLATE;
use super::*;

fn parse(text: &str) -> Result<NodeConfig, ConfigError> {
    SectionRegistry::new()
        .parse(text, Path::new("alknet.toml"))
        .map(|config| config.node)
}

/// `[toy]`: a section as a protocol crate would write one.
#[derive(Debug, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct Toy {
    enabled: bool,
    max_connections: Option<usize>,
}

impl ConfigSection for Toy {
    const KEY: &'static str = "toy";
    const TEMPLATE: &'static str = "[toy]\nenabled = false\n";

    fn validate(&self, node: &NodeConfig) -> Result<(), InvalidKey> {
        match self.max_connections {
            Some(cap) if cap > node.limits.max_connections => Err(InvalidKey::new(
                "toy.max_connections",
                "at most limits.max_connections",
            )),
            _ => Ok(()),
        }
    }
}

fn with_toy(text: &str) -> Result<Config, ConfigError> {
    SectionRegistry::new()
        .with::<Toy>()
        .parse(text, Path::new("alknet.toml"))
}

#[test]
fn the_written_template_is_exactly_the_defaults() {
    assert_eq!(parse(NODE_TEMPLATE).unwrap(), NodeConfig::default());
}

#[test]
fn a_silent_connection_is_closed_after_30_s_by_default() {
    let limits = parse("").unwrap().limits;
    assert_eq!(limits.first_request_timeout, Duration::from_secs(30));
    assert_eq!(limits.header_read_timeout, Duration::from_secs(30));
    assert_eq!(limits.http_idle_timeout, Duration::from_secs(60));
    let err = parse("[limits]\nfirst_request_timeout = \"0s\"")
        .unwrap_err()
        .to_string();
    assert!(err.contains("limits.first_request_timeout"), "{err}");
    let err = parse("[limits]\nhttp_max_subscriptions = 0")
        .unwrap_err()
        .to_string();
    assert!(err.contains("limits.http_max_subscriptions"), "{err}");
}

#[test]
fn an_empty_file_is_the_defaults() {
    assert_eq!(parse("").unwrap(), NodeConfig::default());
}

#[test]
fn unknown_keys_name_the_file_and_the_key() {
    let err = parse("lisen = \"127.0.0.1:1\"").unwrap_err().to_string();
    assert!(err.starts_with("alknet.toml:"), "{err}");
    assert!(err.contains("lisen"), "{err}");
    let err = parse("[limits]\nmax_conections = 3")
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("max_conections") && err.contains("max_connections"),
        "{err}"
    );
}

#[test]
fn a_misspelt_section_names_the_file_and_the_key_and_lists_the_known_ones() {
    let err = with_toy("[toi]\nenabled = true\n").unwrap_err().to_string();
    assert!(err.starts_with("alknet.toml:"), "{err}");
    assert!(err.contains("line 1"), "{err}");
    assert!(
        err.contains(
            "unknown field `toi`, expected one of `listen`, `log`, `log_format`, `workers`, \
                      `tls`, `limits`, `supervision`, `protocols`, `toy`"
        ),
        "{err}"
    );
}

#[test]
fn a_table_no_registered_section_claims_is_unknown() {
    let err = parse("[toy]\nenabled = true\n").unwrap_err().to_string();
    assert!(
        err.starts_with("alknet.toml:") && err.contains("`toy`"),
        "{err}"
    );
}

#[test]
fn an_unknown_key_inside_a_section_names_the_file_and_the_key() {
    let err = with_toy("[toy]\nenabeld = true\n").unwrap_err().to_string();
    assert!(err.starts_with("alknet.toml:"), "{err}");
    assert!(err.contains("line 2"), "{err}");
    assert!(err.contains("unknown field `enabeld`"), "{err}");
}

#[test]
fn a_section_reads_its_table_and_defaults_without_it() {
    let config = with_toy("log = \"debug\"\n[toy]\nenabled = true\n").unwrap();
    assert_eq!(config.node.log, "debug");
    assert!(config.section::<Toy>().enabled);
    assert_eq!(with_toy("").unwrap().section::<Toy>(), &Toy::default());
    let defaults = SectionRegistry::new().with::<Toy>().defaults();
    assert_eq!(defaults.node, NodeConfig::default());
    assert_eq!(defaults.section::<Toy>(), &Toy::default());
}

#[test]
fn a_section_validates_against_the_node_wide_keys() {
    let err = with_toy("[limits]\nmax_connections = 10\n[toy]\nmax_connections = 11\n")
        .unwrap_err()
        .to_string();
    assert_eq!(
        err,
        "alknet.toml: key `toy.max_connections`: expected at most limits.max_connections"
    );
    assert!(with_toy("[limits]\nmax_connections = 10\n[toy]\nmax_connections = 10\n").is_ok());
}

#[test]
fn the_template_is_core_then_each_section_a_blank_line_apart() {
    let template = SectionRegistry::new().with::<Toy>().template();
    assert_eq!(
        template,
        format!("{NODE_TEMPLATE}\n[toy]\nenabled = false\n")
    );
}

#[test]
#[should_panic(expected = "registered twice")]
fn a_key_has_one_owner() {
    let _ = SectionRegistry::new().with::<Toy>().with::<Toy>();
}

#[test]
fn core_claims_exactly_the_keys_of_its_fields() {
    // An unset option has no TOML form: set every one.
    let every_key = NodeConfig {
        workers: Some(1),
        ..NodeConfig::default()
    };
    let fields = toml::Table::try_from(every_key).unwrap();
    let mut fields: Vec<&str> = fields.keys().map(String::as_str).collect();
    let mut keys = NodeConfig::KEYS.to_vec();
    fields.sort_unstable();
    keys.sort_unstable();
    assert_eq!(fields, keys);
}

#[test]
fn wrong_types_say_what_was_expected() {
    let err = parse("listen = 4433").unwrap_err().to_string();
    assert!(err.contains("listen"), "{err}");
    let err = parse("[supervision]\ndrain_timeout = \"soon\"")
        .unwrap_err()
        .to_string();
    assert!(err.contains("drain_timeout"), "{err}");
}

#[test]
fn out_of_range_values_are_refused_with_the_key() {
    let err = parse("[limits]\nmax_connections = 0")
        .unwrap_err()
        .to_string();
    assert_eq!(
        err,
        "alknet.toml: key `limits.max_connections`: expected a positive number"
    );
    let err = parse("[tls]\ncert = \"a.pem\"").unwrap_err().to_string();
    assert!(err.contains("key `tls`"), "{err}");
}

#[test]
fn protocol_overrides_apply_to_their_protocol_only() {
    let config = parse(
        "[protocols.\"alknet/echo\"]\nmax_connections = 7\nmax_restarts = 2\nrestart_window = \"1s\"",
    )
    .unwrap();
    assert_eq!(config.max_connections_for("alknet/echo"), 7);
    assert_eq!(config.max_connections_for("alknet/call"), 4096);
    assert_eq!(
        config.restart_intensity_for("alknet/echo"),
        (2, Duration::from_secs(1))
    );
    assert_eq!(
        config.restart_intensity_for("h2"),
        (5, Duration::from_secs(10))
    );
}

#[test]
fn a_log_level_that_is_not_one_is_refused_naming_the_file_the_key_and_the_levels() {
    // EnvFilter alone reads `loud` as a target and would silence the node.
    let err = parse("log = \"loud\"\n").unwrap_err().to_string();
    assert!(err.starts_with("alknet.toml: key `log`: expected"), "{err}");
    assert!(
        err.contains("trace, debug, info, warn, error, off"),
        "{err}"
    );
    assert!(err.contains("`loud` is not a level"), "{err}");
    assert_eq!(
        parse("log = \"warn,alknet_call=debug\"\n").unwrap().log,
        "warn,alknet_call=debug"
    );
}

#[test]
fn workers_are_one_per_core_unless_set_within_bounds() {
    assert_eq!(parse("").unwrap().workers, None);
    assert_eq!(parse("workers = 1\n").unwrap().workers, Some(1));
    for refused in ["workers = 0\n", "workers = 1025\n"] {
        let err = parse(refused).unwrap_err().to_string();
        assert!(
            err.contains("workers") && err.contains("1 to 1024 threads"),
            "{refused}: {err}"
        );
    }
    let err = parse("workers = -1\n").unwrap_err().to_string();
    assert!(err.contains("line 1"), "{err}");
}

#[test]
fn log_format_is_text_or_json() {
    assert_eq!(parse("").unwrap().log_format, LogFormat::Text);
    assert_eq!(
        parse("log_format = \"json\"\n").unwrap().log_format,
        LogFormat::Json
    );
    let err = parse("log_format = \"xml\"\n").unwrap_err().to_string();
    assert!(
        err.starts_with("alknet.toml:") && err.contains("line 1"),
        "{err}"
    );
    assert!(err.contains("`text`") && err.contains("`json`"), "{err}");
}
