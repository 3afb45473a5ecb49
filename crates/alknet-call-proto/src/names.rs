//! Operation names (docs/protocol.md §6.1): two or more `/`-separated segments of
//! `[A-Za-z0-9._-]+`, at most 256 bytes, no leading slash. The namespace is
//! the first segment.

use crate::envelope::MAX_OPERATION_NAME_BYTES;

/// Why a name is not a valid registry name.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NameError {
    /// Longer than 256 bytes.
    #[error("operation name is longer than {MAX_OPERATION_NAME_BYTES} bytes")]
    TooLong,
    /// Fewer than two segments.
    #[error("operation name `{0}` needs a namespace and a name, like `fs/readFile`")]
    NoNamespace(String),
    /// An empty segment or a character outside `[A-Za-z0-9._-]`.
    #[error("operation name `{0}` has an empty segment or a character outside [A-Za-z0-9._-]")]
    BadSegment(String),
}

fn segment_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')
}

/// Checks a registry name.
pub fn validate(name: &str) -> Result<(), NameError> {
    if name.len() > MAX_OPERATION_NAME_BYTES {
        return Err(NameError::TooLong);
    }
    let mut segments = 0;
    for segment in name.split('/') {
        if segment.is_empty() || !segment.chars().all(segment_char) {
            return Err(NameError::BadSegment(name.to_owned()));
        }
        segments += 1;
    }
    if segments < 2 {
        return Err(NameError::NoNamespace(name.to_owned()));
    }
    Ok(())
}

/// The namespace: the first segment.
pub fn namespace(name: &str) -> &str {
    name.split('/').next().unwrap_or(name)
}

/// An importer's name for an arbitrary string: characters outside the grammar
/// become `_`.
pub fn sanitize_segment(raw: &str) -> String {
    let cleaned: String = raw
        .chars()
        .map(|c| if segment_char(c) { c } else { '_' })
        .collect();
    if cleaned.is_empty() {
        "_".to_owned()
    } else {
        cleaned
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid_names() {
        for name in ["fs/readFile", "a/b/c", "x.y/z-1_2", "services/list"] {
            assert_eq!(validate(name), Ok(()), "{name}");
        }
        assert_eq!(namespace("fs/readFile"), "fs");
    }

    #[test]
    fn invalid_names_say_why() {
        assert_eq!(validate("fs"), Err(NameError::NoNamespace("fs".into())));
        for name in [
            "/fs/read", "fs//read", "fs/read/", "fs/re ad", "fs/réad", "",
        ] {
            assert_eq!(
                validate(name),
                Err(NameError::BadSegment(name.into())),
                "{name}"
            );
        }
        let long = format!("a/{}", "b".repeat(255));
        assert_eq!(validate(&long), Err(NameError::TooLong));
        assert_eq!(validate(&long[..256]), Ok(()));
    }

    #[test]
    fn importers_sanitize_foreign_names() {
        assert_eq!(sanitize_segment("get user/{id}"), "get_user__id_");
        assert_eq!(sanitize_segment(""), "_");
        assert_eq!(
            validate(&format!("api/{}", sanitize_segment("a b"))),
            Ok(())
        );
    }
}
