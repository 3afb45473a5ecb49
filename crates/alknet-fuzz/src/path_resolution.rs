//! Path handling: `alknet_sftp::path` and `Access`, and a `Directory`
//! (openat2 with RESOLVE_IN_ROOT) driven through the `Storage` trait over a
//! fixed tree full of symbolic links that try to leave it.
//!
//! The input is two paths: the bytes before the first 0xFF and the bytes
//! after it, each read as lossy UTF-8 (so a NUL can reach the storage).
//! Every storage call is made with the path as the session passes it
//! (normalised) and, to check the confinement does not depend on that, with
//! the raw path too. Nothing is written: the tree stays as built.
//!
//! The tree (built once per process under the temporary directory, removed
//! at exit):
//!
//! ```text
//! base/                  mode 0753
//!   outside/             mode 0751, holds `secret` (0640, 7777 bytes) and etc/passwd
//!   root/                what the storage serves as `/`
//!     hello.txt etc/passwd etc/hostname dir/a.txt dir/sub/b.txt …
//!     links/…            -> /, /etc, ../../../.., ../.., base/outside (absolute),
//!                           ../../outside/secret, /proc/self/…, loops, dangling
//!     grant/…            a directory used as a grant's `/`, with links out of it
//!     fifo
//! ```
//!
//! Every regular file inside the root holds `MARK` followed by its own path
//! from the root. Invariants:
//!
//! - nothing panics;
//! - `normalize` gives a path that starts with `/`, has no empty, `.` or `..`
//!   component and no trailing `/` (but `/` itself), and is its own
//!   normalisation; `expand_home` gives a normalised path; `inside` and
//!   `join` agree with `normalize`; a grant `Access` finds contains the path;
//! - every file the storage opens, by any path, holds `MARK` and the path of
//!   a file inside the storage's own directory (so never the secret, nor the
//!   host's /etc/passwd); `canonicalize` of a normalised path that opens
//!   names that same file;
//! - `canonicalize` of a normalised path gives a normalised path; if the path
//!   stats, the canonical path stats to the same attributes;
//! - no stat or listing shows the attributes of `outside/`, `secret` or
//!   `base/` (their modes and size are unique in the tree) — except the
//!   `..` entry listed in a storage's own `/`, see `CHECK_ROOT_DOTDOT`;
//! - a listing names only entries of the tree (and `.`, `..`);
//! - a path `read_link` reads is a symbolic link to `lstat`;
//! - `within(p)` gives a storage whose `/` is `p`'s directory: its `/` stats
//!   as `p`, canonicalises to `/`, and the second path, used inside it, obeys
//!   all of the above with that directory as the limit.

use std::collections::HashSet;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::Path;
use std::sync::OnceLock;

use alknet_sftp::access::Need;
use alknet_sftp::path::{expand_home, inside, join, normalize};
use alknet_sftp::storage::{FileAttributes, OpenOptions};
use alknet_sftp::{Access, Directory, Storage, StorageFile};

/// What every file inside the root starts with.
const MARK: &[u8] = b"alknet-sftp-fuzz inside ";
/// What the files outside the root start with.
const SECRET: &[u8] = b"OUTSIDE-SECRET ";
/// The size of `outside/secret`; no file inside is that long.
const SECRET_SIZE: usize = 7777;
/// Modes found only outside the root.
const BASE_MODE: u32 = 0o753;
const OUTSIDE_DIR_MODE: u32 = 0o751;
const SECRET_MODE: u32 = 0o640;

/// Whether to check the `..` entry of a listing of a storage's `/` too:
/// `Directory::read_dir` once gave it the attributes of the directory above
/// the root on the host (here `base/`); it now shows `/` itself there.
const CHECK_ROOT_DOTDOT: bool = true;

const S_IFMT: u32 = 0o170000;
const S_IFDIR: u32 = 0o040000;
const S_IFREG: u32 = 0o100000;
const S_IFLNK: u32 = 0o120000;

struct Fixture {
    root: Directory,
    /// Every name in the tree, with `.` and `..`.
    names: HashSet<String>,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| build().expect("the fixture tree builds"))
}

fn build() -> std::io::Result<Fixture> {
    let base = crate::scratch::directory("alknet-sftp-fuzz-")?;
    let mode = |path: &Path, mode: u32| {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
    };
    mode(&base, BASE_MODE)?;

    let outside = base.join("outside");
    std::fs::create_dir_all(outside.join("etc"))?;
    mode(&outside, OUTSIDE_DIR_MODE)?;
    for name in ["secret", "etc/passwd"] {
        let mut secret = SECRET.to_vec();
        secret.resize(SECRET_SIZE, b'#');
        std::fs::write(outside.join(name), secret)?;
        mode(&outside.join(name), SECRET_MODE)?;
    }

    let root = base.join("root");
    let mut names: HashSet<String> = [".", ".."].into_iter().map(str::to_owned).collect();
    let mut remember = |path: &str| {
        names.insert(path.rsplit('/').next().unwrap_or(path).to_owned());
    };
    for dir in [
        "",
        "etc",
        "dir",
        "dir/sub",
        "dir/sub/deeper",
        "links",
        "grant",
        "grant/nested",
        "empty",
    ] {
        std::fs::create_dir_all(root.join(dir))?;
        mode(&root.join(dir), 0o755)?;
        remember(dir);
    }
    for file in [
        "hello.txt",
        "etc/passwd",
        "etc/hostname",
        "dir/a.txt",
        "dir/sub/b.txt",
        "dir/sub/deeper/c.txt",
        "grant/inner.txt",
        "grant/nested/d.txt",
    ] {
        let mut content = MARK.to_vec();
        content.extend_from_slice(format!("/{file}\n").as_bytes());
        std::fs::write(root.join(file), content)?;
        mode(&root.join(file), 0o644)?;
        remember(file);
    }
    let host_base = base.display().to_string();
    let links: &[(&str, String)] = &[
        ("links/root", "/".into()),
        ("links/etc", "/etc".into()),
        ("links/passwd", "/etc/passwd".into()),
        ("links/up", "../../../..".into()),
        ("links/up2", "../..".into()),
        ("links/outside_abs", format!("{host_base}/outside")),
        ("links/secret_abs", format!("{host_base}/outside/secret")),
        ("links/secret_rel", "../../outside/secret".into()),
        ("links/base_abs", host_base.clone()),
        ("links/root_abs", format!("{host_base}/root")),
        ("links/proc_root", "/proc/self/root/etc/passwd".into()),
        ("links/proc_fd", "/proc/self/fd/0".into()),
        ("links/proc_cwd", "/proc/self/cwd".into()),
        ("links/loop_a", "loop_b".into()),
        ("links/loop_b", "loop_a".into()),
        ("links/self", "self".into()),
        ("links/dangling", "/missing/file".into()),
        ("links/dir", "../dir".into()),
        ("links/chain", "../links/up/links/passwd".into()),
        ("dir/sub/to_root", "../../..".into()),
        ("dir/sub/to_dir", "/dir".into()),
        (
            "dir/sub/deeper/far_up",
            "../../../../../../../../outside/secret".into(),
        ),
        ("grant/escape", "../etc/passwd".into()),
        ("grant/escape_abs", "/hello.txt".into()),
        ("grant/to_dir", "../../dir".into()),
        ("grant/nested/up", "../..".into()),
    ];
    for (link, target) in links {
        symlink(target, root.join(link))?;
        remember(link);
    }
    rustix::fs::mknodat(
        rustix::fs::CWD,
        root.join("fifo"),
        rustix::fs::FileType::Fifo,
        rustix::fs::Mode::from_raw_mode(0o644),
        0,
    )?;
    remember("fifo");

    let root = Directory::open(&root)?;
    Ok(Fixture { root, names })
}

/// Whether `path` is a normalised SFTP path.
fn is_normal(path: &str) -> bool {
    path == "/"
        || (path.starts_with('/')
            && path[1..]
                .split('/')
                .all(|part| !matches!(part, "" | "." | "..")))
}

/// The attributes must not be those of something outside the root.
fn not_outside(attrs: &FileAttributes, what: &str) {
    let Some(mode) = attrs.permissions else {
        return;
    };
    let (kind, perms) = (mode & S_IFMT, mode & 0o7777);
    let leaked = (kind == S_IFDIR && matches!(perms, BASE_MODE | OUTSIDE_DIR_MODE))
        || (kind == S_IFREG && (perms == SECRET_MODE || attrs.size == Some(SECRET_SIZE as u64)));
    assert!(
        !leaked,
        "{what}: attributes from outside the root: {attrs:?}"
    );
}

/// The path from the root in a file's content; panics if it is not ours.
fn marked_path(content: &[u8]) -> &str {
    assert!(
        !content.starts_with(SECRET),
        "a file outside the root was read: {:?}",
        String::from_utf8_lossy(content)
    );
    let rest = content.strip_prefix(MARK).unwrap_or_else(|| {
        panic!(
            "a file that is not in the tree was read: {:?}",
            String::from_utf8_lossy(&content[..content.len().min(200)])
        )
    });
    let path = std::str::from_utf8(rest).expect("our marks are UTF-8");
    path.strip_suffix('\n')
        .expect("our marks end with a newline")
}

fn same_attributes(a: &FileAttributes, b: &FileAttributes) -> bool {
    (a.size, a.uid, a.gid, a.permissions, a.mtime) == (b.size, b.uid, b.gid, b.permissions, b.mtime)
}

fn check_path_functions(raw: &str) {
    let normal = normalize(raw);
    assert!(is_normal(&normal), "normalize({raw:?}) = {normal:?}");
    assert_eq!(normalize(&normal), normal, "normalize is not idempotent");
    let home = expand_home(raw);
    assert!(is_normal(&home), "expand_home({raw:?}) = {home:?}");
    if !raw.starts_with('~') {
        assert_eq!(home, normal);
    }
    // `join` of a plain name stays normal.
    let name = raw.rsplit('/').next().unwrap_or_default();
    if !matches!(name, "" | "." | "..") {
        let joined = join(&normal, name);
        assert!(
            is_normal(&joined),
            "join({normal:?}, {name:?}) = {joined:?}"
        );
    }
}

fn check_inside(prefix: &str, path: &str) {
    match inside(prefix, path) {
        Some(rest) => {
            assert!(is_normal(rest), "inside({prefix:?}, {path:?}) = {rest:?}");
            let whole = if prefix == "/" {
                rest.to_owned()
            } else if rest == "/" {
                prefix.to_owned()
            } else {
                format!("{prefix}{rest}")
            };
            assert_eq!(whole, path, "inside({prefix:?}, {path:?}) = {rest:?}");
        }
        None => assert!(
            prefix != "/" && path != prefix && !path.starts_with(&format!("{prefix}/")),
            "inside({prefix:?}, {path:?}) missed"
        ),
    }
}

fn check_access(scope_path: &str, path: &str) {
    let identity = alknet_core::Identity::new(
        "fuzz",
        [
            format!("sftp:read:{scope_path}"),
            format!("sftp:write:{path}"),
        ],
    );
    let access = Access::of(&identity);
    assert!(!access.is_empty());
    let normal = normalize(path);
    for need in [Need::Read, Need::Write, Need::Metadata] {
        if let Some(prefix) = access.grant(need, &normal) {
            assert!(
                is_normal(prefix),
                "a grant's prefix {prefix:?} is not normal"
            );
            assert!(
                inside(prefix, &normal).is_some(),
                "{prefix:?} granted {normal:?}"
            );
        }
    }
    // The write grant is exactly the path itself.
    assert!(access.grant(Need::Write, &normal).is_some());
}

/// Everything read-only the storage does with one path. `limit` is the
/// storage's `/` as a path from the fixture's root; `normal` says whether
/// `path` is normalised (as the session passes it).
fn probe(fx: &Fixture, storage: &Directory, limit: &str, path: &str, normal: bool) {
    let follow = storage.stat(path, true);
    let nofollow = storage.stat(path, false);
    if let Ok(attrs) = &follow {
        not_outside(attrs, "stat");
    }
    if let Ok(attrs) = &nofollow {
        not_outside(attrs, "lstat");
    }

    let canonical = storage.canonicalize(path);
    if let Ok(canonical) = &canonical {
        assert!(
            canonical.starts_with('/'),
            "canonicalize({path:?}) = {canonical:?}"
        );
        if normal {
            assert!(
                is_normal(canonical),
                "canonicalize({path:?}) = {canonical:?}"
            );
        }
    }
    if normal && let Ok(attrs) = &follow {
        let canonical = canonical
            .as_ref()
            .unwrap_or_else(|e| panic!("{path:?} stats but does not canonicalise: {e}"));
        let again = storage
            .stat(canonical, true)
            .unwrap_or_else(|e| panic!("{path:?} -> {canonical:?} does not stat: {e}"));
        assert!(
            same_attributes(attrs, &again),
            "{path:?} and its canonical {canonical:?} differ: {attrs:?} {again:?}"
        );
    }

    let read_only = OpenOptions {
        read: true,
        ..OpenOptions::default()
    };
    if let Ok(file) = storage.open(path, read_only) {
        let mut buf = vec![0; 8192];
        let n = file.read_at(&mut buf, 0).expect("an open file reads");
        let marked = marked_path(&buf[..n]);
        let seen = inside(limit, marked).unwrap_or_else(|| {
            panic!("{path:?} in the storage at {limit:?} opened {marked:?}, outside it")
        });
        if normal {
            assert_eq!(
                canonical.as_deref().ok(),
                Some(seen),
                "canonicalize({path:?}) does not name the file it opens"
            );
        }
        not_outside(&file.attributes().expect("fstat"), "fstat");
    }

    if let Ok(mut dir) = storage.open_dir(path) {
        let own_root = canonical.as_deref().ok() == Some("/");
        for _ in 0..8 {
            let entries = storage
                .read_dir(&mut dir, 64)
                .expect("an open directory lists");
            if entries.is_empty() {
                break;
            }
            for entry in entries {
                assert!(
                    fx.names.contains(&entry.name),
                    "listing {path:?} showed {:?}, not in the tree",
                    entry.name
                );
                if entry.name != ".." || !own_root || CHECK_ROOT_DOTDOT {
                    not_outside(&entry.attrs, "a listing");
                }
            }
        }
    }

    if storage.read_link(path).is_ok() {
        let attrs = nofollow.expect("a link that reads stats");
        assert_eq!(
            attrs.permissions.map(|m| m & S_IFMT),
            Some(S_IFLNK),
            "{path:?} reads as a link but is not one"
        );
    }
}

/// Checks the invariants above for one input; panics where one fails.
pub fn check(input: &[u8]) {
    let fx = fixture();
    let (first, second) = match input.iter().position(|&b| b == 0xff) {
        Some(at) => (&input[..at], &input[at + 1..]),
        None => (input, &[][..]),
    };
    let first = String::from_utf8_lossy(first);
    let second = String::from_utf8_lossy(second);

    check_path_functions(&first);
    check_path_functions(&second);
    let (n1, n2) = (normalize(&first), normalize(&second));
    check_inside(&n1, &n2);
    check_inside(&n2, &n1);
    check_access(&first, &second);

    probe(fx, &fx.root, "/", &n1, true);
    probe(fx, &fx.root, "/", &first, false);

    // The first path as a grant's directory, the second used inside it.
    if let Ok(grant) = fx.root.within(&n1) {
        let limit = fx
            .root
            .canonicalize(&n1)
            .expect("a directory within() opened canonicalises");
        assert_eq!(grant.canonicalize("/").expect("its own root"), "/");
        let outer = fx
            .root
            .stat(&n1, true)
            .expect("a directory within() opened stats");
        let own = grant.stat("/", true).expect("its own root stats");
        assert!(
            same_attributes(&outer, &own),
            "within({n1:?}) is not {n1:?}"
        );
        probe(fx, &grant, &limit, &n2, true);
        probe(fx, &grant, &limit, &second, false);
    }
}
