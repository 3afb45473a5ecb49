//! The `log` key's filter, checked before anything logs.
//!
//! tracing's `EnvFilter` reads a bare word as a target enabled at every
//! level, so a misspelt level (`log = "loud"`) is a valid filter that
//! enables one target nobody logs under and silences the node. Here a
//! directive without `=` must be a level, and every `=` must end in one.

use tracing::level_filters::LevelFilter;

/// What a valid filter looks like, for error messages.
const EXPECTED: &str = "a log filter: a level (trace, debug, info, warn, error, off) or \
                        comma-separated `target=level` directives, e.g. \
                        \"info,alknet_supervisors=debug\"";

/// Checks a log filter (the `log` key, or `ALKNET_LOG`); the error says what
/// was expected and what was wrong.
pub fn check_log_filter(filter: &str) -> Result<(), String> {
    let mut directives = 0;
    for directive in filter.split(',').map(str::trim).filter(|d| !d.is_empty()) {
        directives += 1;
        let level = match directive.rsplit_once('=') {
            Some(("", _)) => return Err(format!("{EXPECTED}; `{directive}` names no target")),
            Some((_, level)) => level,
            None => directive,
        };
        if level.is_empty() || level.parse::<LevelFilter>().is_err() {
            return Err(format!("{EXPECTED}; `{level}` is not a level"));
        }
    }
    if directives == 0 {
        return Err(format!(
            "{EXPECTED} (\"off\" to log nothing), not an empty filter"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_and_target_directives_pass() {
        for filter in [
            "info",
            "WARN",
            "off",
            "info,alknet_supervisors=debug",
            " debug , rustls=error ",
            "alknet::auth=warn",
            "warn,alknet_call[request{operation=x}]=trace",
        ] {
            assert_eq!(check_log_filter(filter), Ok(()), "{filter}");
        }
    }

    #[test]
    fn a_bare_word_that_is_not_a_level_is_refused() {
        let err = check_log_filter("loud").unwrap_err();
        assert!(err.contains("`loud` is not a level"), "{err}");
        assert!(
            err.contains("trace, debug, info, warn, error, off"),
            "{err}"
        );
        assert!(check_log_filter("info,rustls=loud").is_err());
        assert!(check_log_filter("alknet_call").is_err());
        assert!(check_log_filter("=debug").is_err());
        assert!(check_log_filter("rustls=").is_err());
        assert!(check_log_filter(" , ").is_err());
    }
}
