//! SFTP paths as the session handles them: normalised before anything
//! looks at them, so that a scope's prefix is compared with what will be
//! opened.

/// `path` made absolute (relative paths start at `/`, the session's home)
/// without `.`, `..` or empty components. `..` at `/` stays at `/`, as in
/// a chroot.
pub fn normalize(path: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            name => parts.push(name),
        }
    }
    let mut normal = String::with_capacity(path.len() + 1);
    for part in &parts {
        normal.push('/');
        normal.push_str(part);
    }
    if normal.is_empty() {
        normal.push('/');
    }
    normal
}

/// `name` inside the normalised directory `dir`.
pub fn join(dir: &str, name: &str) -> String {
    if dir.ends_with('/') {
        format!("{dir}{name}")
    } else {
        format!("{dir}/{name}")
    }
}

/// If the normalised `path` is `prefix` or inside it, where it is seen from
/// `prefix` (`/` for the prefix itself). Compared by whole components:
/// `/in` does not contain `/inbox`.
pub fn inside<'p>(prefix: &str, path: &'p str) -> Option<&'p str> {
    if prefix == "/" {
        return Some(path);
    }
    let rest = path.strip_prefix(prefix)?;
    if rest.is_empty() {
        Some("/")
    } else if rest.starts_with('/') {
        Some(rest)
    } else {
        None
    }
}

/// `~` and `~/…` (the home, which is `/`) expanded, as
/// `expand-path@openssh.com` asks.
pub fn expand_home(path: &str) -> String {
    match path.strip_prefix('~') {
        Some(rest) if rest.is_empty() || rest.starts_with('/') => normalize(rest),
        _ => normalize(path),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalizing_never_climbs_above_the_root() {
        assert_eq!(normalize(""), "/");
        assert_eq!(normalize("."), "/");
        assert_eq!(normalize(".."), "/");
        assert_eq!(normalize("../../etc/passwd"), "/etc/passwd");
        assert_eq!(normalize("/a/./b//c/../d/"), "/a/b/d");
        assert_eq!(normalize("a/.."), "/");
    }

    #[test]
    fn a_prefix_contains_whole_components_only() {
        assert_eq!(inside("/in", "/in"), Some("/"));
        assert_eq!(inside("/in", "/in/x/y"), Some("/x/y"));
        assert_eq!(inside("/in", "/inbox"), None);
        assert_eq!(inside("/in", "/"), None);
        assert_eq!(inside("/", "/anything"), Some("/anything"));
    }

    #[test]
    fn home_is_the_root() {
        assert_eq!(expand_home("~"), "/");
        assert_eq!(expand_home("~/a/../b"), "/b");
        assert_eq!(expand_home("~user"), "/~user");
    }
}
