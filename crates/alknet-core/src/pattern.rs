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
    use proptest::prelude::*;

    use super::matches;

    /// The textbook matcher: whether each prefix of the pattern matches each
    /// prefix of the text, built up one character at a time.
    fn textbook(pattern: &str, text: &str) -> bool {
        let pattern: Vec<char> = pattern.chars().collect();
        let text: Vec<char> = text.chars().collect();
        let mut prefixes = vec![vec![false; text.len() + 1]; pattern.len() + 1];
        prefixes[0][0] = true;
        for i in 1..=pattern.len() {
            for j in 0..=text.len() {
                prefixes[i][j] = if pattern[i - 1] == '*' {
                    prefixes[i - 1][j] || (j > 0 && prefixes[i][j - 1])
                } else {
                    j > 0 && pattern[i - 1] == text[j - 1] && prefixes[i - 1][j - 1]
                };
            }
        }
        prefixes[pattern.len()][text.len()]
    }

    proptest! {
        // Scopes decide access, and the matcher takes each part's first
        // occurrence: a small alphabet makes the overlaps that would
        // expose a wrong choice common.
        #[test]
        fn agrees_with_the_textbook_matcher(pattern in "[ab*]{0,8}", text in "[ab]{0,12}") {
            prop_assert_eq!(matches(&pattern, &text), textbook(&pattern, &text));
        }
    }

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
