//! Store and provider together, on real files in a temporary directory.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use alknet_core::{Fingerprint, IdentityProvider};
use redb::{Database, ReadableTable};

use crate::snapshot::Snapshot;
use crate::store::{META, TOKENS, unix_now};
use crate::{IdentityStore, InvalidEntry, StoreError, StoreIdentities, TokenSpec};

fn temp_store() -> (tempfile::TempDir, PathBuf, IdentityStore) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("identities.redb");
    let store = IdentityStore::open(&path).unwrap();
    (dir, path, store)
}

fn spec(id: Option<&str>, scopes: &[&str]) -> TokenSpec {
    TokenSpec {
        id: id.map(str::to_owned),
        scopes: scopes.iter().map(|s| s.to_string()).collect(),
        expires_at: None,
        description: String::new(),
    }
}

/// What `f` logs, as text.
fn capture_log(f: impl FnOnce()) -> String {
    #[derive(Clone, Default)]
    struct Buffer(Arc<Mutex<Vec<u8>>>);
    impl std::io::Write for Buffer {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let buffer = Buffer::default();
    let writer = buffer.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    tracing::subscriber::with_default(subscriber, f);
    let bytes = buffer.0.lock().unwrap().clone();
    String::from_utf8_lossy(&bytes).into_owned()
}

fn snapshot_of(path: &Path) -> Snapshot {
    Snapshot::from_bytes(std::fs::read(path).unwrap(), path).unwrap()
}

#[test]
fn a_created_token_is_alk_base58_of_32_bytes_and_its_prefix_is_its_first_8_characters() {
    let (_dir, _path, store) = temp_store();
    let (token, info) = store.create_token(spec(None, &["fs:read"])).unwrap();
    let body = token.strip_prefix("alk_").unwrap();
    assert_eq!(bs58::decode(body).into_vec().unwrap().len(), 32);
    assert_eq!(info.prefix, &token[..8]);
    assert_eq!(info.id, format!("token:{}", info.prefix));
    assert_eq!(info.scopes, ["fs:read"]);
    assert!(info.created_at >= unix_now() - 5);
    let (other, _) = store.create_token(spec(None, &[])).unwrap();
    assert_ne!(token, other);
}

#[test]
fn only_the_hash_is_stored_never_the_token() {
    let (_dir, path, store) = temp_store();
    let (token, info) = store.create_token(spec(Some("alice"), &["admin"])).unwrap();
    let entropy = bs58::decode(&token[4..]).into_vec().unwrap();
    let file = std::fs::read(&path).unwrap();
    let contains = |needle: &[u8]| file.windows(needle.len()).any(|w| w == needle);
    assert!(!contains(token.as_bytes()), "the token is in the file");
    assert!(
        !contains(&token.as_bytes()[8..]),
        "the token's secret part is in the file"
    );
    assert!(!contains(&entropy), "the token's raw bytes are in the file");
    let hash = hex::encode(crate::token::hash(&token));
    assert!(contains(hash.as_bytes()), "the hash is what is stored");
    assert!(contains(info.prefix.as_bytes()));
    // Listing shows no hash either.
    let listed = serde_json::to_string(&store.list_tokens().unwrap()).unwrap();
    assert!(
        !listed.contains(&hash) && !listed.contains(&token),
        "{listed}"
    );
    assert!(listed.contains(&info.prefix));
}

#[test]
fn a_prefix_alone_or_with_a_wrong_secret_never_resolves() {
    let (_dir, path, store) = temp_store();
    let (token, info) = store.create_token(spec(Some("bob"), &["admin"])).unwrap();
    let identities = StoreIdentities::open(&path).unwrap();
    assert_eq!(identities.resolve_token(&token).unwrap().id, "bob");
    assert!(identities.resolve_token(&info.prefix).is_none());
    // Same prefix, one character of the secret changed: found by prefix,
    // refused by the hash comparison.
    let mut tampered = token.clone().into_bytes();
    let last = tampered.len() - 1;
    tampered[last] = if tampered[last] == b'a' { b'b' } else { b'a' };
    let tampered = String::from_utf8(tampered).unwrap();
    assert_eq!(&tampered[..8], info.prefix);
    assert!(identities.resolve_token(&tampered).is_none());
    // A prefix of the token, or the token with a suffix, is not the token.
    assert!(
        identities
            .resolve_token(&token[..token.len() - 1])
            .is_none()
    );
    assert!(identities.resolve_token(&format!("{token}x")).is_none());
    assert!(identities.resolve_token("").is_none());
    assert!(identities.resolve_token("alk_").is_none());
}

#[test]
fn the_stored_hash_decides_through_the_constant_time_comparison() {
    let (_dir, path, store) = temp_store();
    let (token, info) = store.create_token(spec(Some("carol"), &[])).unwrap();
    // Flip one bit of the stored hash, directly in the file.
    {
        let db = Database::open(&path).unwrap();
        let txn = db.begin_write().unwrap();
        {
            let mut table = txn.open_table(TOKENS).unwrap();
            let bytes = table
                .get(info.prefix.as_str())
                .unwrap()
                .unwrap()
                .value()
                .to_vec();
            let mut record: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
            let mut hash = hex::decode(record["hash"].as_str().unwrap()).unwrap();
            hash[31] ^= 1;
            record["hash"] = hex::encode(hash).into();
            let bytes = serde_json::to_vec(&record).unwrap();
            table
                .insert(info.prefix.as_str(), bytes.as_slice())
                .unwrap();
        }
        txn.commit().unwrap();
    }
    assert!(
        snapshot_of(&path)
            .resolve_token_at(&token, unix_now())
            .is_none()
    );
    assert!(crate::token::hashes_match(
        &crate::token::hash(&token),
        &crate::token::hash(&token)
    ));
}

#[test]
fn a_token_resolves_until_its_expiry_second() {
    let (_dir, path, store) = temp_store();
    let now = unix_now();
    let (token, info) = store
        .create_token(TokenSpec {
            expires_at: Some(now + 100),
            ..spec(Some("temp"), &["x"])
        })
        .unwrap();
    assert_eq!(info.expires_at, Some(now + 100));
    assert!(!info.is_expired_at(now + 99) && info.is_expired_at(now + 100));
    let snapshot = snapshot_of(&path);
    assert_eq!(
        snapshot.resolve_token_at(&token, now + 99).unwrap().id,
        "temp"
    );
    assert!(snapshot.resolve_token_at(&token, now + 100).is_none());
    assert!(snapshot.resolve_token_at(&token, now + 1000).is_none());
    // An expiry that has already passed is refused at creation.
    let refused = store.create_token(TokenSpec {
        expires_at: Some(now.saturating_sub(1)),
        ..spec(None, &[])
    });
    assert!(matches!(
        refused,
        Err(StoreError::Invalid(InvalidEntry::ExpiryNotInFuture { .. }))
    ));
}

#[test]
fn a_revoked_token_stops_resolving_and_revoking_an_unknown_prefix_is_an_error() {
    let (_dir, path, store) = temp_store();
    let identities = StoreIdentities::open(&path).unwrap();
    let (token, info) = store.create_token(spec(Some("dave"), &["a"])).unwrap();
    let (kept, _) = store.create_token(spec(Some("erin"), &["b"])).unwrap();
    assert!(identities.resolve_token(&token).is_some());
    let revoked = store.revoke_token(&info.prefix).unwrap();
    assert_eq!(revoked, info);
    assert!(identities.resolve_token(&token).is_none());
    assert_eq!(identities.resolve_token(&kept).unwrap().id, "erin");
    assert!(
        store
            .list_tokens()
            .unwrap()
            .iter()
            .all(|t| t.prefix != info.prefix)
    );
    match store.revoke_token(&info.prefix) {
        Err(StoreError::UnknownToken(prefix)) => assert_eq!(prefix, info.prefix),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        store.revoke_token("alk_zzzz").unwrap_err().to_string(),
        "no token with prefix `alk_zzzz`"
    );
}

#[test]
fn peers_resolve_by_fingerprint_and_can_be_replaced_and_removed() {
    let (_dir, path, store) = temp_store();
    let identities = StoreIdentities::open(&path).unwrap();
    let alice = Fingerprint::Ed25519([7; 32]);
    let web = Fingerprint::Sha256([9; 32]);
    assert!(identities.resolve_fingerprint(&alice).is_none());
    assert_eq!(
        store
            .add_peer(&alice, "alice", &["admin".into(), "fs:read".into()])
            .unwrap(),
        None
    );
    store.add_peer(&web, "browser", &[]).unwrap();
    let resolved = identities.resolve_fingerprint(&alice).unwrap();
    assert_eq!(resolved.id, "alice");
    assert_eq!(resolved.scopes, ["admin", "fs:read"]);
    assert_eq!(identities.resolve_fingerprint(&web).unwrap().id, "browser");
    assert!(
        identities
            .resolve_fingerprint(&Fingerprint::Ed25519([8; 32]))
            .is_none()
    );

    let replaced = store.add_peer(&alice, "alice2", &["x".into()]).unwrap();
    assert_eq!(replaced.unwrap().id, "alice");
    assert_eq!(identities.resolve_fingerprint(&alice).unwrap().id, "alice2");
    let listed = store.list_peers().unwrap();
    assert_eq!(listed.len(), 2);
    assert!(
        listed
            .iter()
            .any(|p| p.fingerprint == alice && p.id == "alice2")
    );

    assert_eq!(store.remove_peer(&alice).unwrap().id, "alice2");
    assert!(identities.resolve_fingerprint(&alice).is_none());
    assert!(matches!(
        store.remove_peer(&alice),
        Err(StoreError::UnknownPeer(fp)) if fp == alice
    ));
    // The JSON form names the fingerprint in its text form.
    let json = serde_json::to_value(store.list_peers().unwrap()).unwrap();
    assert_eq!(json[0]["fingerprint"], web.to_string());
}

#[test]
fn a_second_handle_changing_entries_is_seen_by_a_running_provider() {
    let (_dir, path, _store) = temp_store();
    let identities = StoreIdentities::open(&path).unwrap();
    // A second handle on the same file, as `alknet token …` in another process.
    let cli = IdentityStore::open(&path).unwrap();
    // Back to back, faster than the file's timestamp resolution: each change
    // must be seen by the very next lookup.
    for round in 0..5 {
        let id = format!("user{round}");
        let (token, info) = cli.create_token(spec(Some(&id), &["s"])).unwrap();
        assert_eq!(identities.resolve_token(&token).unwrap().id, id);
        cli.revoke_token(&info.prefix).unwrap();
        assert!(identities.resolve_token(&token).is_none(), "round {round}");
        let peer = Fingerprint::Ed25519([round; 32]);
        cli.add_peer(&peer, &id, &[]).unwrap();
        assert_eq!(identities.resolve_fingerprint(&peer).unwrap().id, id);
        cli.remove_peer(&peer).unwrap();
        assert!(identities.resolve_fingerprint(&peer).is_none());
    }
}

#[test]
fn the_provider_never_writes_the_file_and_stops_reloading_once_settled() {
    let (_dir, path, store) = temp_store();
    let (token, _) = store.create_token(spec(None, &[])).unwrap();
    // Last written well before the snapshot is taken: the snapshot is settled.
    std::fs::File::options()
        .write(true)
        .open(&path)
        .unwrap()
        .set_modified(std::time::SystemTime::now() - Duration::from_secs(3600))
        .unwrap();
    let before = std::fs::metadata(&path).unwrap();
    let identities = StoreIdentities::open(&path).unwrap();
    for _ in 0..20 {
        assert!(identities.resolve_token(&token).is_some());
    }
    let after = std::fs::metadata(&path).unwrap();
    assert_eq!(before.modified().unwrap(), after.modified().unwrap());
    assert_eq!(before.len(), after.len());
    assert!(identities.is_settled());
}

#[test]
fn a_writer_holding_the_file_delays_the_cli_and_never_blocks_the_provider() {
    let (_dir, path, store) = temp_store();
    let (token, _) = store.create_token(spec(Some("held"), &[])).unwrap();
    let identities = StoreIdentities::open(&path).unwrap();
    // Another process has the database open (redb's exclusive lock).
    let holder = Database::open(&path).unwrap();
    // The provider answers from its snapshot without waiting.
    let started = std::time::Instant::now();
    assert_eq!(identities.resolve_token(&token).unwrap().id, "held");
    assert!(started.elapsed() < Duration::from_millis(500));
    // The CLI waits for the holder, then succeeds.
    let releaser = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(100));
        drop(holder);
    });
    let (second, _) = store.create_token(spec(Some("after"), &[])).unwrap();
    releaser.join().unwrap();
    assert_eq!(identities.resolve_token(&second).unwrap().id, "after");
}

#[test]
fn a_writer_that_never_lets_go_makes_the_cli_report_busy() {
    let (_dir, path, store) = temp_store();
    let _holder = Database::open(&path).unwrap();
    let started = std::time::Instant::now();
    let error = store.create_token(spec(None, &[])).unwrap_err();
    assert!(matches!(error, StoreError::Busy { .. }), "{error:?}");
    assert!(started.elapsed() >= crate::OPEN_RETRY_LIMIT);
    assert!(error.to_string().contains("in use by another process"));
}

#[test]
fn a_damaged_file_keeps_the_last_good_entries_and_a_deleted_one_resolves_nobody() {
    let (_dir, path, store) = temp_store();
    let (token, _) = store.create_token(spec(Some("kept"), &[])).unwrap();
    let identities = StoreIdentities::open(&path).unwrap();
    assert!(identities.resolve_token(&token).is_some());

    std::fs::write(&path, b"this is not a redb file").unwrap();
    let log = capture_log(|| {
        for _ in 0..3 {
            assert_eq!(identities.resolve_token(&token).unwrap().id, "kept");
        }
    });
    assert_eq!(
        log.matches("keeping the last good entries").count(),
        1,
        "one warning per change of the file: {log}"
    );
    assert!(log.contains("WARN"), "{log}");
    assert!(
        StoreIdentities::open(&path).is_err(),
        "a broken store fails at start"
    );

    std::fs::remove_file(&path).unwrap();
    assert!(identities.resolve_token(&token).is_none());

    // Recreated: followed again.
    let store = IdentityStore::open(&path).unwrap();
    let (again, _) = store.create_token(spec(Some("back"), &[])).unwrap();
    assert_eq!(identities.resolve_token(&again).unwrap().id, "back");
}

#[test]
fn a_taken_prefix_is_drawn_again() {
    let (_dir, _path, store) = temp_store();
    let first_draw = [1u8; 32];
    let mut second_draw = [2u8; 32];
    second_draw[0] = 200;
    let (first, _) = store
        .create_token_with(spec(None, &[]), unix_now(), &mut || Ok(first_draw))
        .unwrap();
    let mut draws = vec![second_draw, first_draw].into_iter().rev();
    let mut random = || Ok(draws.next().expect("at most two draws"));
    let (second, info) = store
        .create_token_with(spec(None, &[]), unix_now(), &mut random)
        .unwrap();
    assert_ne!(&first[..8], &second[..8]);
    assert_eq!(second, crate::token::encode(&second_draw));
    assert_eq!(info.prefix, &second[..8]);
    // A generator that only repeats itself gives up instead of looping.
    let error = store
        .create_token_with(spec(None, &[]), unix_now(), &mut || Ok(first_draw))
        .unwrap_err();
    assert!(matches!(error, StoreError::PrefixesExhausted), "{error:?}");
}

#[test]
fn invalid_entries_are_refused_before_anything_is_written() {
    let (_dir, _path, store) = temp_store();
    let fp = Fingerprint::Ed25519([1; 32]);
    assert!(matches!(
        store.create_token(spec(Some("has space"), &[])),
        Err(StoreError::Invalid(InvalidEntry::IdCharacters(_)))
    ));
    assert!(matches!(
        store.add_peer(&fp, "", &[]),
        Err(StoreError::Invalid(InvalidEntry::EmptyId))
    ));
    assert!(matches!(
        store.add_peer(&fp, "x", &["".into()]),
        Err(StoreError::Invalid(InvalidEntry::EmptyScope))
    ));
    assert!(store.list_tokens().unwrap().is_empty());
    assert!(store.list_peers().unwrap().is_empty());
}

#[test]
fn a_newer_schema_is_refused() {
    let (_dir, path, _store) = temp_store();
    {
        let db = Database::open(&path).unwrap();
        let txn = db.begin_write().unwrap();
        txn.open_table(META).unwrap().insert("schema", 99).unwrap();
        txn.commit().unwrap();
    }
    assert!(matches!(
        IdentityStore::open(&path),
        Err(StoreError::UnsupportedSchema { found: 99, .. })
    ));
    assert!(matches!(
        StoreIdentities::open(&path),
        Err(StoreError::UnsupportedSchema { found: 99, .. })
    ));
}

#[test]
fn a_missing_file_is_an_empty_store_and_a_new_file_is_private() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("identities.redb");
    let identities = StoreIdentities::open(&path).unwrap();
    assert!(identities.resolve_token("alk_whatever").is_none());
    let store = IdentityStore::open(&path).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let (token, _) = store.create_token(spec(Some("late"), &[])).unwrap();
    assert_eq!(identities.resolve_token(&token).unwrap().id, "late");
}

#[test]
fn a_change_within_the_same_timestamp_tick_is_still_seen() {
    let (_dir, path, store) = temp_store();
    let (first, _) = store.create_token(spec(Some("first"), &[])).unwrap();
    // Pin the file's mtime where every stamp looks alike: a write that keeps
    // size, inode and (coarse) mtime is invisible to `stat`.
    let pinned = std::time::SystemTime::now() + Duration::from_secs(3600);
    let pin = || {
        std::fs::File::options()
            .write(true)
            .open(&path)
            .unwrap()
            .set_modified(pinned)
            .unwrap();
    };
    pin();
    let identities = StoreIdentities::open(&path).unwrap();
    assert!(identities.resolve_token(&first).is_some());
    let before = std::fs::metadata(&path).unwrap();

    let (second, _) = store.create_token(spec(Some("second"), &[])).unwrap();
    pin();
    let after = std::fs::metadata(&path).unwrap();
    assert_eq!(
        (before.modified().unwrap(), before.len()),
        (after.modified().unwrap(), after.len()),
        "the stamp must look unchanged for this test to mean anything"
    );
    // The snapshot was loaded too close to the file's mtime to be trusted,
    // so the next lookup reloads anyway.
    assert_eq!(identities.resolve_token(&second).unwrap().id, "second");
}
