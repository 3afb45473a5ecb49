//! A session driven packet by packet over an in-memory stream: what the
//! order guarantees and the bounds promise, without a client's timing in
//! the way.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use alknet_core::{Alpn, Connection, ConnectionInfo, Identity};
use alknet_sftp::{Sftp, SftpSection};
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};

const INIT: u8 = 1;
const OPEN: u8 = 3;
const CLOSE: u8 = 4;
const WRITE: u8 = 6;
const LSTAT: u8 = 7;
const STATUS: u8 = 101;
const HANDLE: u8 = 102;
const ATTRS: u8 = 105;

const READ: u32 = 1;
const WRITE_FLAG: u32 = 2;
const CREATE: u32 = 8;
const TRUNCATE: u32 = 16;

fn info(scopes: &[&str]) -> Arc<ConnectionInfo> {
    let (unused, _) = tokio::io::duplex(64);
    let connection = Connection::from_stream(
        unused,
        Alpn::new("alknet/sftp"),
        "127.0.0.1:1".parse().unwrap(),
        None,
    );
    let info = connection.info().clone();
    info.set_identity(Some(Identity::new("tester", scopes.iter().copied())));
    info
}

/// A session on `root`, and the client's end of its stream.
fn session(root: &Path, scopes: &[&str]) -> DuplexStream {
    let section = SftpSection {
        root: Some(root.to_owned()),
        ..SftpSection::default()
    };
    let sftp = Sftp::new(&section, root).unwrap();
    let (client, server) = tokio::io::duplex(1 << 20);
    let info = info(scopes);
    tokio::spawn(async move {
        let (reader, writer) = tokio::io::split(server);
        let _ = sftp.serve(reader, writer, info).await;
    });
    client
}

fn string(s: &[u8]) -> Vec<u8> {
    let mut out = (s.len() as u32).to_be_bytes().to_vec();
    out.extend_from_slice(s);
    out
}

async fn send(stream: &mut DuplexStream, kind: u8, body: &[u8]) {
    let mut packet = ((body.len() + 1) as u32).to_be_bytes().to_vec();
    packet.push(kind);
    packet.extend_from_slice(body);
    stream.write_all(&packet).await.unwrap();
}

/// The next reply: its type, request id and the rest.
async fn receive(stream: &mut DuplexStream) -> (u8, u32, Vec<u8>) {
    let length = tokio::time::timeout(Duration::from_secs(10), stream.read_u32())
        .await
        .expect("a reply in time")
        .unwrap();
    let mut packet = vec![0; length as usize];
    stream.read_exact(&mut packet).await.unwrap();
    let id = u32::from_be_bytes(packet[1..5].try_into().unwrap());
    (packet[0], id, packet[5..].to_vec())
}

async fn start(stream: &mut DuplexStream) {
    send(stream, INIT, &3u32.to_be_bytes()).await;
    let length = stream.read_u32().await.unwrap();
    let mut version = vec![0; length as usize];
    stream.read_exact(&mut version).await.unwrap();
    assert_eq!(version[0], 2, "SSH_FXP_VERSION");
}

fn open(id: u32, path: &str, flags: u32) -> Vec<u8> {
    let mut body = id.to_be_bytes().to_vec();
    body.extend(string(path.as_bytes()));
    body.extend(flags.to_be_bytes());
    body.extend(0u32.to_be_bytes()); // no attributes
    body
}

fn with_path(id: u32, path: &str) -> Vec<u8> {
    let mut body = id.to_be_bytes().to_vec();
    body.extend(string(path.as_bytes()));
    body
}

/// Opens `path` to read and write, created if missing: its handle.
async fn open_handle(client: &mut DuplexStream, path: &str) -> Vec<u8> {
    send(client, OPEN, &open(1, path, READ | WRITE_FLAG | CREATE)).await;
    let (kind, _, body) = receive(client).await;
    assert_eq!(kind, HANDLE);
    body[4..].to_vec()
}

/// A `WRITE` of `data` at `offset` to `handle`.
fn write(id: u32, handle: &[u8], offset: u64, data: &[u8]) -> Vec<u8> {
    let mut body = id.to_be_bytes().to_vec();
    body.extend(string(handle));
    body.extend(offset.to_be_bytes());
    body.extend(string(data));
    body
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pipelined_create_is_seen_by_the_requests_behind_it() {
    let root = tempfile::tempdir().unwrap();
    let mut client = session(root.path(), &["sftp:read", "sftp:write"]);
    start(&mut client).await;
    // As sshfs does: OPEN with O_CREAT and LSTAT of the same path, without
    // waiting for the first reply. Many rounds, so that a race would show.
    for round in 0..200u32 {
        let path = format!("/f{round}");
        send(
            &mut client,
            OPEN,
            &open(2 * round, &path, WRITE_FLAG | CREATE | TRUNCATE),
        )
        .await;
        send(&mut client, LSTAT, &with_path(2 * round + 1, &path)).await;
        let mut replies = [receive(&mut client).await, receive(&mut client).await];
        replies.sort_by_key(|r| r.1);
        assert_eq!(replies[0].0, HANDLE, "round {round}: open");
        assert_eq!(replies[1].0, ATTRS, "round {round}: lstat saw the new file");
        let mut close = (u32::MAX - round).to_be_bytes().to_vec();
        close.extend(string(&replies[0].2[4..]));
        send(&mut client, CLOSE, &close).await;
        assert_eq!(receive(&mut client).await.0, STATUS);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_on_one_handle_land_in_order() {
    let root = tempfile::tempdir().unwrap();
    let mut client = session(root.path(), &["sftp:write"]);
    start(&mut client).await;
    let handle = open_handle(&mut client, "/same").await;
    // 64 overlapping writes to the same bytes: the last one sent wins only
    // if they ran in the order sent.
    for n in 0..64u32 {
        let body = write(100 + n, &handle, 0, &[n as u8; 4096]);
        send(&mut client, WRITE, &body).await;
    }
    for _ in 0..64 {
        let (kind, _, body) = receive(&mut client).await;
        assert_eq!((kind, &body[..4]), (STATUS, &0u32.to_be_bytes()[..]));
    }
    assert_eq!(
        std::fs::read(root.path().join("same")).unwrap(),
        vec![63u8; 4096]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_write_grant_nothing_is_created() {
    let root = tempfile::tempdir().unwrap();
    let mut client = session(root.path(), &["sftp:read"]);
    start(&mut client).await;
    send(&mut client, OPEN, &open(7, "/new", WRITE_FLAG | CREATE)).await;
    let (kind, id, body) = receive(&mut client).await;
    assert_eq!((kind, id), (STATUS, 7));
    assert_eq!(&body[..4], &3u32.to_be_bytes(), "SSH_FX_PERMISSION_DENIED");
    assert!(!root.path().join("new").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replies_on_one_handle_leave_in_the_order_asked() {
    const FSTAT: u8 = 8;
    let root = tempfile::tempdir().unwrap();
    let mut client = session(root.path(), &["sftp:read", "sftp:write"]);
    start(&mut client).await;
    let handle = open_handle(&mut client, "/file").await;
    // Writes (which may go to the blocking pool) and attribute requests
    // (which may be answered at once) on one handle, without waiting.
    let mut sent = Vec::new();
    for n in 0..100u32 {
        let id = 1000 + n;
        if n % 2 == 0 {
            let body = write(id, &handle, u64::from(n) * 512, &[n as u8; 512]);
            send(&mut client, WRITE, &body).await;
        } else {
            let mut body = id.to_be_bytes().to_vec();
            body.extend(string(&handle));
            send(&mut client, FSTAT, &body).await;
        }
        sent.push(id);
    }
    let mut received = Vec::new();
    for _ in 0..100 {
        let (kind, id, body) = receive(&mut client).await;
        if id % 2 == 1 {
            // What the fstat saw: every write before it, none after.
            assert_eq!(kind, ATTRS, "{id}");
            let size = u64::from_be_bytes(body[4..12].try_into().unwrap());
            assert_eq!(size, u64::from(id - 1000) * 512, "{id}");
        } else {
            assert_eq!(kind, STATUS, "{id}");
        }
        received.push(id);
    }
    assert_eq!(received, sent);
}
