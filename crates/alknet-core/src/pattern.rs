//! Scope patterns: `*` stands for any run of characters (`/` included),
//! everything else for itself. Protocols that name resources in scopes
//! (`ssh:forward:*.internal:443`, `git:write:team/*`) match with it.

/// Whether `text` matches `pattern`, where `*` is any run of characters.
pub fn matches(pattern: &str, text: &str) -> bool {
    let mut parts = pattern.split('*');
    let first = parts.next().unwrap_or("");
    let Some(mut rest) = text.strip_prefix(first) else {
        return false;
    };
    let parts: Vec<&str> = parts.collect();
    let Some((last, middle)) = parts.split_last() else {
        return rest.is_empty();
    };
    for part in middle {
        match rest.find(part) {
            Some(at) => rest = &rest[at + part.len()..],
            None => return false,
        }
    }
    rest.len() >= last.len() && rest.ends_with(last)
}

#[cfg(test)]
mod tests {
    use super::matches;

    #[test]
    fn stars_match_any_run_and_the_rest_matches_itself() {
        assert!(matches("*", ""));
        assert!(matches("*", "team/app"));
        assert!(matches("team/*", "team/x/y"));
        assert!(!matches("team/*", "teams/app"));
        assert!(!matches("team/*", "team"));
        assert!(matches("app", "app"));
        assert!(!matches("app", "app2"));
        assert!(matches("*-docs", "team/a-docs"));
        assert!(!matches("*-docs", "team/a-docs2"));
        assert!(matches("a*b*c", "a-b-c"));
        assert!(!matches("a*b*c", "a-c"));
        assert!(!matches("ab*b", "ab"));
        assert!(matches("10.0.*.*", "10.0.1.2"));
        assert!(matches("a*c", "abbbc"));
        assert!(!matches("a*b*c", "aXcYb"));
        assert!(!matches("ab", "abc"));
        assert!(!matches("a*a", "a"));
    }
}
