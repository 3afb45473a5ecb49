//! `Directory` as storage, on a real directory: what it shows of the host
//! around its root.

use alknet_sftp::{Directory, Storage};

#[test]
fn the_roots_parent_is_the_root_itself() {
    let base = tempfile::tempdir().unwrap();
    let root = base.path().join("root");
    std::fs::create_dir_all(root.join("grant/inner")).unwrap();
    // The host directory above the root has a mode found nowhere inside.
    std::fs::set_permissions(
        base.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o753),
    )
    .unwrap();
    let storage = Directory::open(&root).unwrap();
    for (storage, listed) in [
        (storage.clone(), "/"),
        (storage.within("/grant").unwrap(), "/"),
        (storage, "/grant"),
    ] {
        let own = storage.stat(listed, true).unwrap();
        let mut dir = storage.open_dir(listed).unwrap();
        let entries = storage.read_dir(&mut dir, 100).unwrap();
        let dotdot = entries.iter().find(|e| e.name == "..").expect("a .. entry");
        assert_ne!(
            dotdot.attrs.permissions,
            Some(0o040_753),
            "{listed}: the host's parent"
        );
        if listed == "/" {
            assert_eq!(dotdot.attrs.permissions, own.permissions, "{listed}");
            assert_eq!(dotdot.attrs.mtime, own.mtime, "{listed}");
        }
    }
}

/// Whether `error` is a `_cached` call declining.
fn declined(error: &std::io::Error) -> bool {
    error.kind() == std::io::ErrorKind::WouldBlock
}

/// A root holding `small` (4 KiB) and `out`, a link to a file beside the
/// root, under `base`.
fn small_root(base: &std::path::Path) -> Directory {
    let root = base.join("root");
    std::fs::create_dir_all(&root).unwrap();
    std::fs::write(base.join("secret"), b"the host's").unwrap();
    std::fs::write(root.join("small"), vec![7u8; 4096]).unwrap();
    std::os::unix::fs::symlink(base.join("secret"), root.join("out")).unwrap();
    Directory::open(&root).unwrap()
}

/// What a `_cached` call may do: answer as its blocking twin does, or
/// decline having changed nothing.
fn cached_calls_agree_or_decline(storage: &Directory) -> usize {
    use alknet_sftp::storage::{OpenOptions, StorageFile};
    let mut answered = 0;
    let read = OpenOptions {
        read: true,
        ..Default::default()
    };
    match storage.open_cached("/small", read) {
        Ok(file) => {
            answered += 1;
            let mut buf = vec![0u8; 8192];
            match file.read_at_cached(&mut buf, 0) {
                Ok(n) => {
                    answered += 1;
                    assert!(n <= 4096 && buf[..n].iter().all(|&b| b == 7), "{n}");
                }
                Err(e) => assert!(declined(&e), "{e}"),
            }
            match file.attributes_cached() {
                Ok(attrs) => {
                    answered += 1;
                    assert_eq!(attrs.size, file.attributes().unwrap().size);
                }
                Err(e) => assert!(declined(&e), "{e}"),
            }
        }
        Err(e) => assert!(declined(&e), "{e}"),
    }
    for follow in [true, false] {
        match storage.stat_cached("/small", follow) {
            Ok(attrs) => {
                answered += 1;
                let blocking = storage.stat("/small", follow).unwrap();
                assert_eq!(
                    (attrs.size, attrs.permissions, attrs.mtime),
                    (blocking.size, blocking.permissions, blocking.mtime)
                );
            }
            Err(e) => assert!(declined(&e), "{e}"),
        }
    }
    // The link's own attributes without following it; through it, the
    // host's file stays out of reach as it does for the blocking calls.
    match storage.stat_cached("/out", false) {
        Ok(attrs) => {
            answered += 1;
            assert_eq!(attrs.permissions.unwrap() & 0o170_000, 0o120_000);
        }
        Err(e) => assert!(declined(&e), "{e}"),
    }
    let through = storage.stat_cached("/out", true).unwrap_err();
    assert!(
        declined(&through) || through.kind() == std::io::ErrorKind::NotFound,
        "{through}"
    );
    match storage.open_cached("/out", read) {
        Err(e) => assert!(declined(&e) || e.kind() == std::io::ErrorKind::NotFound),
        Ok(_) => panic!("opened the host's file through a link"),
    }
    // A created file exists if and only if the call answered.
    let create = OpenOptions {
        write: true,
        create: true,
        truncate: true,
        mode: 0o644,
        ..Default::default()
    };
    match storage.open_cached("/new", create) {
        Ok(file) => {
            answered += 1;
            match file.write_at_cached(b"written", 0) {
                Ok(()) => {
                    answered += 1;
                    assert_eq!(storage.stat("/new", true).unwrap().size, Some(7));
                }
                Err(e) => {
                    assert!(declined(&e), "{e}");
                    assert_eq!(storage.stat("/new", true).unwrap().size, Some(0));
                }
            }
        }
        Err(e) => {
            assert!(declined(&e), "{e}");
            assert_eq!(
                storage.stat("/new", true).unwrap_err().kind(),
                std::io::ErrorKind::NotFound
            );
        }
    }
    answered
}

#[test]
fn cached_calls_answer_as_the_blocking_ones_or_decline() {
    let base = tempfile::tempdir().unwrap();
    let answered = cached_calls_agree_or_decline(&small_root(base.path()));
    // On a local disk, what was just written is in the caches: open, read,
    // attributes, two stats and the link's lstat answer; creating does not.
    let magic = rustix::fs::statfs(base.path()).unwrap().f_type as u32;
    let ext4_xfs_btrfs = [0xef53, 0x5846_5342, 0x9123_683e];
    if ext4_xfs_btrfs.contains(&magic) {
        assert_eq!(answered, 6);
    }
}

#[test]
fn on_a_ram_file_system_cached_calls_all_answer() {
    // /dev/shm is tmpfs on Linux machines with a glibc; elsewhere there is
    // nothing to check.
    let mounts = std::fs::read_to_string("/proc/mounts").unwrap_or_default();
    if !mounts
        .lines()
        .any(|l| l.starts_with("tmpfs /dev/shm tmpfs "))
    {
        eprintln!("no tmpfs at /dev/shm: skipped");
        return;
    }
    let base = tempfile::tempdir_in("/dev/shm").unwrap();
    // Every call that can answer did: open, read, attributes, two stats,
    // lstat of the link, create and write.
    assert_eq!(cached_calls_agree_or_decline(&small_root(base.path())), 8);
}

#[test]
fn cached_calls_leave_what_is_mounted_below_the_root_to_the_blocking_ones() {
    // On Linux, /dev is a RAM file system with another one mounted at
    // /dev/shm; elsewhere there is nothing to check.
    use alknet_sftp::storage::OpenOptions;
    const TMPFS: u32 = 0x0102_1994;
    let ram = |path: &str| rustix::fs::statfs(path).is_ok_and(|s| s.f_type as u32 == TMPFS);
    let device = |path: &std::path::Path| rustix::fs::stat(path).map(|s| s.st_dev).ok();
    let shm = std::path::Path::new("/dev/shm");
    if !ram("/dev") || !ram("/dev/shm") || device(shm) == device("/dev".as_ref()) {
        eprintln!("no RAM file system mounted at /dev/shm below one at /dev: skipped");
        return;
    }
    let below = tempfile::tempdir_in(shm).unwrap();
    std::fs::write(below.path().join("small"), vec![7u8; 4096]).unwrap();
    let name = below.path().file_name().unwrap().to_str().unwrap();
    let (dir, file) = (format!("/shm/{name}"), format!("/shm/{name}/small"));
    let read = OpenOptions {
        read: true,
        ..Default::default()
    };

    let root = Directory::open("/dev".as_ref()).unwrap();
    // The blocking calls reach it; the cached ones decline, though both file
    // systems answer from memory: the one below could have been a network.
    assert_eq!(root.stat(&file, true).unwrap().size, Some(4096));
    assert!(root.open(&file, read).is_ok());
    assert!(root.within(&dir).is_ok());
    for follow in [true, false] {
        assert!(declined(&root.stat_cached(&file, follow).unwrap_err()));
        assert!(declined(&root.stat_cached("/shm", follow).unwrap_err()));
    }
    assert!(declined(&root.open_cached(&file, read).unwrap_err()));
    assert!(declined(&root.within_cached(&dir).unwrap_err()));
    // On the root's own file system they answer.
    assert!(root.stat_cached("/null", true).is_ok());
    // From a root on the file system below, the same file is no crossing.
    let inner = root.within(&dir).unwrap();
    assert_eq!(inner.stat_cached("/small", true).unwrap().size, Some(4096));
}
