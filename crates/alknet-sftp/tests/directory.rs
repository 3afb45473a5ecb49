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
