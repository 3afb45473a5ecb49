//! A whole SFTP session: `Sftp::serve` over an in-memory stream, on a fixed
//! tree, for an identity that may only read.
//!
//! The client sends a valid `INIT`, then the input: its first byte picks
//! the identity's scopes (`sftp:read`; `sftp:read:/grant`;
//! `sftp:read:/links` and `sftp:read:/dir`) and whether the rest is sent as
//! it is (high bit set) or as packets: a big-endian `u16` length, that many
//! bytes of body (type byte and payload), framed with the `u32` length the
//! session reads. Then the client closes its side and reads every reply.
//!
//! Invariants: no panic; the session ends within `DEADLINE` once the client
//! has closed its side; every reply decodes as an SFTP packet and fits in
//! `max_packet`, and only a session that ended on an error may leave its
//! last reply cut; when the session ends cleanly, the `INIT` was answered
//! with a `VERSION` and, for framed input, there is exactly one reply per
//! packet sent (in any order: requests run side by side); no reply carries
//! the content of a file outside the root or the root's path on the host;
//! and nothing in the tree changed (a read-only identity).

use std::collections::BTreeMap;
use std::os::unix::fs::{MetadataExt, PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use alknet_core::{Alpn, Connection, ConnectionInfo, Identity};
use alknet_sftp::{Sftp, SftpSection};
use bytes::Bytes;
use russh_sftp::protocol::Packet;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const SECRET: &[u8] = b"OUTSIDE-SECRET-OF-THE-SESSION";
const MARK: &str = "alknet-sftp-fuzz inside ";
const DEADLINE: Duration = Duration::from_secs(30);
const SCOPES: [&[&str]; 3] = [
    &["sftp:read"],
    &["sftp:read:/grant"],
    &["sftp:read:/links", "sftp:read:/dir"],
];

struct Fixture {
    runtime: tokio::runtime::Runtime,
    sftp: Sftp,
    root: PathBuf,
    root_text: Vec<u8>,
    max_packet: u32,
    snapshot: Snapshot,
}

/// What can change in the tree: each path's type, mode, size, mtime, link
/// target.
type Snapshot = BTreeMap<PathBuf, (u32, u64, i64, i64, Option<PathBuf>)>;

fn snapshot(dir: &Path, into: &mut Snapshot) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .expect("the tree lists")
        .map(|e| e.expect("an entry").path())
        .collect();
    entries.sort();
    for path in entries {
        let meta = std::fs::symlink_metadata(&path).expect("an entry stats");
        let target = std::fs::read_link(&path).ok();
        into.insert(
            path.clone(),
            (
                meta.mode(),
                meta.size(),
                meta.mtime(),
                meta.mtime_nsec(),
                target,
            ),
        );
        if meta.is_dir() {
            snapshot(&path, into);
        }
    }
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let base =
            crate::scratch::directory("alknet-sftp-fuzz-session-").expect("a temporary directory");

        std::fs::create_dir(base.join("outside")).unwrap();
        std::fs::write(base.join("outside/secret"), SECRET).unwrap();
        let root = base.join("root");
        for dir in [
            "",
            "etc",
            "dir",
            "dir/sub",
            "links",
            "grant",
            "grant/nested",
            "empty",
        ] {
            std::fs::create_dir_all(root.join(dir)).unwrap();
            std::fs::set_permissions(root.join(dir), std::fs::Permissions::from_mode(0o755))
                .unwrap();
        }
        for file in [
            "hello.txt",
            "etc/passwd",
            "dir/a.txt",
            "dir/sub/b.txt",
            "grant/inner.txt",
        ] {
            std::fs::write(root.join(file), format!("{MARK}/{file}\n")).unwrap();
        }
        // A file larger than one read, so reads at offsets find something.
        std::fs::write(root.join("dir/big.bin"), vec![b'b'; 300_000]).unwrap();
        for (link, target) in [
            ("links/root", "/"),
            ("links/up", "../../../.."),
            ("links/secret", "../../outside/secret"),
            ("links/passwd", "/etc/passwd"),
            ("links/loop_a", "loop_b"),
            ("links/loop_b", "loop_a"),
            ("links/dangling", "/missing/file"),
            ("links/proc", "/proc/self/root/etc/passwd"),
            ("dir/sub/to_root", "../../.."),
            ("grant/escape", "../outside/secret"),
            ("grant/nested/up", "../../../.."),
        ] {
            symlink(target, root.join(link)).unwrap();
        }
        rustix::fs::mknodat(
            rustix::fs::CWD,
            root.join("fifo"),
            rustix::fs::FileType::Fifo,
            rustix::fs::Mode::from_raw_mode(0o644),
            0,
        )
        .unwrap();

        let section = SftpSection {
            root: Some(root.clone()),
            ..SftpSection::default()
        };
        let sftp = Sftp::new(&section, &base).expect("the service starts");
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime");
        let mut tree = Snapshot::new();
        snapshot(&base, &mut tree);
        Fixture {
            runtime,
            root_text: sftp.root().display().to_string().into_bytes(),
            root,
            sftp,
            max_packet: section.max_packet,
            snapshot: tree,
        }
    })
}

fn info(scopes: &[&str]) -> Arc<ConnectionInfo> {
    let (unused, _) = tokio::io::duplex(64);
    let connection = Connection::from_stream(
        unused,
        Alpn::new("alknet/sftp"),
        "127.0.0.1:1".parse().expect("an address"),
        None,
    );
    let info = connection.info().clone();
    info.set_identity(Some(Identity::new("fuzz", scopes.iter().copied())));
    info
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// Checks the invariants above for one input; panics where one fails.
pub fn check(input: &[u8]) {
    let fx = fixture();
    let Some((&selector, rest)) = input.split_first() else {
        return;
    };
    let scopes = SCOPES[usize::from(selector & 0x7f) % SCOPES.len()];

    // What the client sends, and how many packets that is (when framed).
    let mut stream = vec![0, 0, 0, 5, 1, 0, 0, 0, 3];
    let mut packets = Some(1usize);
    if selector & 0x80 != 0 {
        stream.extend_from_slice(rest);
        packets = None;
    } else {
        let mut rest = rest;
        while !rest.is_empty() {
            let (length, tail) = match rest {
                [a, b, tail @ ..] => (usize::from(u16::from_be_bytes([*a, *b])), tail),
                _ => (rest.len() - 1, &rest[1..]),
            };
            let body = &tail[..length.min(tail.len())];
            stream.extend_from_slice(&(body.len() as u32).to_be_bytes());
            stream.extend_from_slice(body);
            packets = packets.map(|n| n + 1);
            rest = &tail[body.len()..];
        }
    }

    let (mut client, server) = tokio::io::duplex(64 * 1024);
    let (served, replies) = fx.runtime.block_on(async {
        tokio::time::timeout(DEADLINE, async {
            let (reader, writer) = tokio::io::split(server);
            let serve = fx.sftp.serve(reader, writer, info(scopes));
            let (mut client_read, mut client_write) = tokio::io::split(&mut client);
            let send = async {
                let _ = client_write.write_all(&stream).await;
                let _ = client_write.shutdown().await;
            };
            let receive = async {
                let mut replies = Vec::new();
                let _ = client_read.read_to_end(&mut replies).await;
                replies
            };
            let (served, (), replies) = tokio::join!(serve, send, receive);
            (served, replies)
        })
        .await
        .expect("the session ends once the client closes its side")
    });

    assert!(
        !contains(&replies, SECRET),
        "a reply holds a file from outside the root"
    );
    assert!(
        !contains(&replies, &fx.root_text),
        "a reply shows the root's path on the host"
    );
    // A session that ends on an error (a malformed or oversized packet, or
    // input cut inside a packet) is dropped with its writer: the last
    // reply may be cut there. Only whole replies are checked then.
    let mut at = &replies[..];
    let (mut count, mut versions) = (0usize, 0usize);
    while !at.is_empty() {
        if at.len() < 4 {
            assert!(served.is_err(), "a reply's length is cut ({served:?})");
            break;
        }
        let length = u32::from_be_bytes(at[..4].try_into().expect("four bytes"));
        assert!(
            length <= fx.max_packet,
            "a reply of {length} bytes, over max_packet"
        );
        let length = length as usize;
        if at.len() < 4 + length {
            assert!(served.is_err(), "a reply is cut ({served:?})");
            break;
        }
        let mut body = Bytes::copy_from_slice(&at[4..4 + length]);
        let packet = Packet::try_from(&mut body).expect("a reply decodes");
        versions += usize::from(matches!(packet, Packet::Version(_)));
        count += 1;
        at = &at[4 + length..];
    }
    if served.is_ok() {
        assert!(versions >= 1, "the INIT was not answered");
        if let Some(packets) = packets {
            assert_eq!(count, packets, "not one reply per request");
        }
    }

    let mut now = Snapshot::new();
    snapshot(fx.root.parent().expect("the base"), &mut now);
    assert!(now == fx.snapshot, "a read-only session changed the tree");
}
