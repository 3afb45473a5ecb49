//! What each SFTP request does: scope check, then the storage call, then
//! the reply. Status codes follow OpenSSH's `sftp-server`
//! ([`crate::status`]).
//!
//! Storage calls block, so they run on the blocking pool, except that the
//! calls of a small-file transfer (open, stat, fstat, read, write) first try
//! their `_cached` twin on the session's own thread ([`crate::storage`]).

use std::collections::HashMap;
use std::io;
use std::sync::Arc;

use bytes::{BufMut, Bytes, BytesMut};
use russh_sftp::protocol::{
    Attrs, ExtendedReply, File, Handle as HandleReply, Name, OpenFlags, Packet, StatusCode, Version,
};
use serde::Deserialize;

use crate::access::Need;
use crate::handles::{Handle, Opened};
use crate::path;
use crate::session::Session;
use crate::status::{self, done, status};
use crate::storage::{FileAttributes, OpenOptions, Storage, StorageFile, declined};

/// The extensions announced to clients, as OpenSSH announces them.
const EXTENSIONS: &[(&str, &str)] = &[
    ("posix-rename@openssh.com", "1"),
    ("statvfs@openssh.com", "2"),
    ("fstatvfs@openssh.com", "2"),
    ("hardlink@openssh.com", "1"),
    ("fsync@openssh.com", "1"),
    ("limits@openssh.com", "1"),
    ("expand-path@openssh.com", "1"),
    ("copy-data", "1"),
    ("users-groups-by-id@openssh.com", "1"),
];

/// Directory entries per `READDIR` reply (OpenSSH's number).
const ENTRIES_PER_REPLY: usize = 100;

/// The type byte of `SSH_FXP_DATA`.
const SSH_FXP_DATA: u8 = 103;

/// A handle request's handle: its name and the handle, once its turn came.
pub(crate) type Queued<S> = (String, Arc<Handle<S>>);

/// The handle a request works on, if it is a handle request: such
/// requests wait for the earlier ones on the same handle.
pub(crate) fn handle_of(packet: &Packet) -> Option<String> {
    match packet {
        Packet::Close(p) => Some(p.handle.clone()),
        Packet::Read(p) => Some(p.handle.clone()),
        Packet::Write(p) => Some(p.handle.clone()),
        Packet::Fstat(p) => Some(p.handle.clone()),
        Packet::FSetStat(p) => Some(p.handle.clone()),
        Packet::ReadDir(p) => Some(p.handle.clone()),
        Packet::Extended(p) => match p.request.as_str() {
            "fsync@openssh.com" | "fstatvfs@openssh.com" => {
                decode::<OneString>(&p.data).map(|h| h.0)
            }
            // Queued on the handle it writes to.
            "copy-data" => decode::<CopyData>(&p.data).map(|c| c.write_to),
            _ => None,
        },
        _ => None,
    }
}

/// Whether `packet` changes anything. Such a request runs alone: after
/// every request before it and before any after it, so a client that
/// pipelines an `OPEN` with `O_CREAT` and an `LSTAT` of the same path (as
/// sshfs does) sees the file, as from OpenSSH's one-at-a-time server.
pub(crate) fn changes(packet: &Packet) -> bool {
    match packet {
        Packet::Open(open) => open_options(open.pflags, &open.attrs).writes(),
        Packet::Write(_)
        | Packet::FSetStat(_)
        | Packet::SetStat(_)
        | Packet::Remove(_)
        | Packet::MkDir(_)
        | Packet::RmDir(_)
        | Packet::Rename(_)
        | Packet::Symlink(_) => true,
        Packet::Extended(extended) => !matches!(
            extended.request.as_str(),
            "statvfs@openssh.com"
                | "fstatvfs@openssh.com"
                | "limits@openssh.com"
                | "expand-path@openssh.com"
        ),
        _ => false,
    }
}

/// The reply to a handle request whose handle is not open: OpenSSH's
/// failure.
pub(crate) fn no_such_handle(packet: &Packet) -> Bytes {
    encode(status(packet.get_request_id(), StatusCode::Failure))
}

/// Runs `packet` and encodes its reply.
pub(crate) async fn answer<S: Storage>(
    session: &Arc<Session<S>>,
    packet: Packet,
    queued: Option<Queued<S>>,
) -> Bytes {
    let id = packet.get_request_id();
    match (packet, queued) {
        (Packet::Init(_), _) => encode(version()),
        (Packet::Read(read), Some((name, handle))) if session.handles.contains(&name) => {
            let max = session.limits.max_packet.saturating_sub(1024);
            read_data(id, handle, read.offset, read.len.min(max)).await
        }
        (packet, queued) => encode(reply(session, id, packet, queued).await),
    }
}

fn version() -> Packet {
    let extensions: HashMap<String, String> = EXTENSIONS
        .iter()
        .map(|(name, data)| ((*name).to_owned(), (*data).to_owned()))
        .collect();
    Packet::Version(Version {
        version: russh_sftp::protocol::VERSION,
        extensions,
    })
}

/// Where a path request acts: the grant's directory (`None`: the root)
/// and the path seen from it.
struct Place {
    within: Option<String>,
    path: String,
}

impl Place {
    /// The storage the path is resolved in.
    fn storage<S: Storage>(&self, root: &S) -> io::Result<S> {
        match &self.within {
            None => Ok(root.clone()),
            Some(prefix) => root.within(prefix),
        }
    }
}

impl<S: Storage> Session<S> {
    /// Where `raw` is, if a grant allows `need` there.
    fn place(&self, need: Need, raw: &str) -> Option<Place> {
        let normal = path::normalize(raw);
        let prefix = self.access.grant(need, &normal)?;
        if prefix == "/" {
            return Some(Place {
                within: None,
                path: normal,
            });
        }
        let inside = path::inside(prefix, &normal)?.to_owned();
        Some(Place {
            within: Some(prefix.to_owned()),
            path: inside,
        })
    }
}

/// Runs `work` on the blocking pool: storage calls block.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> io::Result<T> + Send + 'static,
) -> io::Result<T> {
    tokio::task::spawn_blocking(work)
        .await
        .unwrap_or_else(|panicked| Err(io::Error::other(panicked.to_string())))
}

/// Whether a storage call may wait for a disk or a network.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Wait {
    /// No: from memory (a `_cached` call), on the session's thread.
    No,
    /// Yes: on the blocking pool.
    Yes,
}

/// `work` from memory here, or on the blocking pool if it declines.
async fn soon<T: Send + 'static>(
    work: impl Fn(Wait) -> io::Result<T> + Send + 'static,
) -> io::Result<T> {
    match work(Wait::No) {
        Err(e) if declined(&e) => blocking(move || work(Wait::Yes)).await,
        answered => answered,
    }
}

/// [`soon`] with the handle's file; a directory's handle is `EBADF`.
async fn on_file_soon<S: Storage, T: Send + 'static>(
    handle: Arc<Handle<S>>,
    work: impl Fn(&S::File, Wait) -> io::Result<T> + Send + 'static,
) -> io::Result<T> {
    soon(move |wait| match &handle.opened {
        Opened::File { file, .. } => work(file, wait),
        Opened::Dir { .. } => Err(rustix::io::Errno::BADF.into()),
    })
    .await
}

/// [`soon`] on the storage at `place`.
async fn at_soon<S: Storage, T: Send + 'static>(
    session: &Session<S>,
    place: Place,
    work: impl Fn(&S, &str, Wait) -> io::Result<T> + Send + 'static,
) -> io::Result<T> {
    let root = session.storage.clone();
    soon(move |wait| {
        let storage = match (&place.within, wait) {
            (None, _) => root.clone(),
            (Some(prefix), Wait::No) => root.within_cached(prefix)?,
            (Some(prefix), Wait::Yes) => root.within(prefix)?,
        };
        work(&storage, &place.path, wait)
    })
    .await
}

/// `work` on the blocking pool with the handle's file; a directory's
/// handle is `EBADF`.
async fn on_file<S: Storage, T: Send + 'static>(
    handle: Arc<Handle<S>>,
    work: impl FnOnce(&S::File) -> io::Result<T> + Send + 'static,
) -> io::Result<T> {
    blocking(move || match &handle.opened {
        Opened::File { file, .. } => work(file),
        Opened::Dir { .. } => Err(rustix::io::Errno::BADF.into()),
    })
    .await
}

/// `work` on the storage at `place`.
async fn at<S: Storage, T: Send + 'static>(
    session: &Session<S>,
    place: Place,
    work: impl FnOnce(&S, &str) -> io::Result<T> + Send + 'static,
) -> io::Result<T> {
    let root = session.storage.clone();
    blocking(move || work(&place.storage(&root)?, &place.path)).await
}

fn denied(id: u32) -> Packet {
    status(id, StatusCode::PermissionDenied)
}

async fn reply<S: Storage>(
    session: &Arc<Session<S>>,
    id: u32,
    packet: Packet,
    queued: Option<Queued<S>>,
) -> Packet {
    match (packet, queued) {
        (Packet::Open(open), _) => {
            let options = open_options(open.pflags, &open.attrs);
            let need = if options.writes() {
                Need::Write
            } else {
                Need::Read
            };
            let Some(place) = session.place(need, &open.filename) else {
                return denied(id);
            };
            let opened = at_soon(session, place, move |s, p, wait| match wait {
                Wait::No => s.open_cached(p, options),
                Wait::Yes => s.open(p, options),
            });
            match opened.await {
                Ok(file) => new_handle(
                    session,
                    id,
                    Opened::File {
                        file,
                        writable: need == Need::Write,
                    },
                ),
                Err(e) => status::error(id, &e),
            }
        }
        (Packet::OpenDir(open), _) => {
            let Some(place) = session.place(Need::Read, &open.path) else {
                return denied(id);
            };
            match at(session, place, |s, p| Ok((s.open_dir(p)?, s.clone()))).await {
                Ok((dir, storage)) => new_handle(
                    session,
                    id,
                    Opened::Dir {
                        dir: std::sync::Mutex::new(dir),
                        storage,
                    },
                ),
                Err(e) => status::error(id, &e),
            }
        }
        (Packet::Close(_), Some((name, _))) => {
            // The file closes when the last request using it lets go.
            session.handles.remove(&name);
            session.show();
            status(id, StatusCode::Ok)
        }
        (Packet::Write(write), Some((name, handle))) => {
            let Opened::File { .. } = &handle.opened else {
                return status(id, StatusCode::Failure);
            };
            if !session.handles.contains(&name) {
                return status(id, StatusCode::Failure);
            }
            let written = on_file_soon(handle, move |file, wait| match wait {
                Wait::No => file.write_at_cached(&write.data, write.offset),
                Wait::Yes => file.write_at(&write.data, write.offset),
            });
            done(id, written.await)
        }
        (Packet::Fstat(_), Some((_, handle))) => match &handle.opened {
            Opened::File { .. } => attrs_reply(id, on_file_soon(handle, attributes).await),
            Opened::Dir { .. } => status(id, StatusCode::Failure),
        },
        (Packet::FSetStat(set), Some((_, handle))) => match &handle.opened {
            Opened::File { writable: true, .. } => done(
                id,
                on_file(handle, move |file| file.set_attributes(&set.attrs)).await,
            ),
            Opened::File {
                writable: false, ..
            } => denied(id),
            Opened::Dir { .. } => status(id, StatusCode::Failure),
        },
        (Packet::ReadDir(_), Some((_, handle))) => {
            let names = session.names.clone();
            let listed = blocking(move || match &handle.opened {
                Opened::Dir { dir, storage } => {
                    let mut dir = dir
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner);
                    let entries = storage.read_dir(&mut dir, ENTRIES_PER_REPLY)?;
                    Ok(entries
                        .into_iter()
                        .map(|entry| File {
                            longname: names.long_name(&entry.name, &entry.attrs, entry.links),
                            filename: entry.name,
                            attrs: entry.attrs,
                        })
                        .collect::<Vec<_>>())
                }
                Opened::File { .. } => Err(rustix::io::Errno::BADF.into()),
            })
            .await;
            match listed {
                Ok(files) if files.is_empty() => status(id, StatusCode::Eof),
                Ok(files) => Packet::Name(Name { id, files }),
                Err(e) => status::error(id, &e),
            }
        }
        (Packet::Lstat(stat), _) => stat_reply(session, id, &stat.path, false).await,
        (Packet::Stat(stat), _) => stat_reply(session, id, &stat.path, true).await,
        (Packet::SetStat(set), _) => {
            let Some(place) = session.place(Need::Write, &set.path) else {
                return denied(id);
            };
            done(
                id,
                at(session, place, move |s, p| s.set_attributes(p, &set.attrs)).await,
            )
        }
        (Packet::Remove(remove), _) => {
            let Some(place) = session.place(Need::Write, &remove.filename) else {
                return denied(id);
            };
            done(id, at(session, place, |s, p| s.remove_file(p)).await)
        }
        (Packet::MkDir(mkdir), _) => {
            let Some(place) = session.place(Need::Write, &mkdir.path) else {
                return denied(id);
            };
            let mode = mkdir.attrs.permissions.unwrap_or(0o777);
            done(
                id,
                at(session, place, move |s, p| s.create_dir(p, mode)).await,
            )
        }
        (Packet::RmDir(rmdir), _) => {
            let Some(place) = session.place(Need::Write, &rmdir.path) else {
                return denied(id);
            };
            done(id, at(session, place, |s, p| s.remove_dir(p)).await)
        }
        (Packet::RealPath(real), _) => {
            if session.access.is_empty() {
                return denied(id);
            }
            let raw = path::normalize(&real.path);
            name_reply(
                id,
                blocking({
                    let root = session.storage.clone();
                    move || root.canonicalize(&raw)
                })
                .await,
            )
        }
        (Packet::Rename(rename), _) => {
            rename_reply(session, id, &rename.oldpath, &rename.newpath, false).await
        }
        (Packet::ReadLink(link), _) => {
            let Some(place) = session.place(Need::Read, &link.path) else {
                return denied(id);
            };
            name_reply(id, at(session, place, |s, p| s.read_link(p)).await)
        }
        (Packet::Symlink(link), _) => {
            // OpenSSH sends the target first, then the link's path (the
            // reverse of the draft); clients follow OpenSSH.
            let (target, link_path) = (link.linkpath, link.targetpath);
            let Some(place) = session.place(Need::Write, &link_path) else {
                return denied(id);
            };
            done(
                id,
                at(session, place, move |s, p| s.symlink(&target, p)).await,
            )
        }
        (Packet::Extended(extended), queued) => {
            extension(session, id, &extended.request, &extended.data, queued).await
        }
        // A handle request whose handle was closed by an earlier request.
        (
            Packet::Close(_)
            | Packet::Write(_)
            | Packet::Fstat(_)
            | Packet::FSetStat(_)
            | Packet::ReadDir(_)
            | Packet::Read(_),
            _,
        ) => status(id, StatusCode::Failure),
        // Replies and other server-to-client packets.
        _ => status(id, StatusCode::OpUnsupported),
    }
}

fn open_options(flags: OpenFlags, attrs: &FileAttributes) -> OpenOptions {
    OpenOptions {
        read: flags.contains(OpenFlags::READ),
        write: flags.contains(OpenFlags::WRITE),
        append: flags.contains(OpenFlags::APPEND),
        create: flags.contains(OpenFlags::CREATE),
        truncate: flags.contains(OpenFlags::TRUNCATE),
        exclusive: flags.contains(OpenFlags::EXCLUDE),
        mode: attrs.permissions.unwrap_or(0o666),
    }
}

fn new_handle<S: Storage>(session: &Session<S>, id: u32, opened: Opened<S>) -> Packet {
    match session.handles.insert(opened) {
        Some(handle) => {
            session.show();
            Packet::Handle(HandleReply { id, handle })
        }
        // OpenSSH's answer when its handle table is full.
        None => status(id, StatusCode::Failure),
    }
}

async fn stat_reply<S: Storage>(session: &Session<S>, id: u32, raw: &str, follow: bool) -> Packet {
    let Some(place) = session.place(Need::Metadata, raw) else {
        return denied(id);
    };
    let attrs = at_soon(session, place, move |s, p, wait| match wait {
        Wait::No => s.stat_cached(p, follow),
        Wait::Yes => s.stat(p, follow),
    });
    attrs_reply(id, attrs.await)
}

fn attrs_reply(id: u32, attrs: io::Result<FileAttributes>) -> Packet {
    match attrs {
        Ok(attrs) => Packet::Attrs(Attrs { id, attrs }),
        Err(e) => status::error(id, &e),
    }
}

/// A `NAME` reply with one name, as `realpath` and `readlink` answer.
fn name_reply(id: u32, name: io::Result<String>) -> Packet {
    match name {
        Ok(name) => Packet::Name(Name {
            id,
            files: vec![File {
                filename: name.clone(),
                longname: name,
                attrs: FileAttributes::default(),
            }],
        }),
        Err(e) => status::error(id, &e),
    }
}

async fn rename_reply<S: Storage>(
    session: &Session<S>,
    id: u32,
    from: &str,
    to: &str,
    replace: bool,
) -> Packet {
    let (Some(from), Some(to)) = (
        session.place(Need::Write, from),
        session.place(Need::Write, to),
    ) else {
        return denied(id);
    };
    two_paths(session, id, from, to, move |s, from, to| {
        s.rename(from, to, replace)
    })
    .await
}

/// Runs `work` on two paths of one grant. Paths under different grants
/// are refused as a rename across file systems is: resolving them apart
/// would let a link inside one grant's directory reach outside it.
async fn two_paths<S: Storage>(
    session: &Session<S>,
    id: u32,
    first: Place,
    second: Place,
    work: impl FnOnce(&S, &str, &str) -> io::Result<()> + Send + 'static,
) -> Packet {
    if first.within != second.within {
        return status(id, StatusCode::Failure);
    }
    let root = session.storage.clone();
    done(
        id,
        blocking(move || work(&first.storage(&root)?, &first.path, &second.path)).await,
    )
}

async fn extension<S: Storage>(
    session: &Arc<Session<S>>,
    id: u32,
    request: &str,
    data: &[u8],
    queued: Option<Queued<S>>,
) -> Packet {
    let malformed = || status(id, StatusCode::BadMessage);
    match request {
        "posix-rename@openssh.com" => match decode::<TwoStrings>(data) {
            Some(TwoStrings(from, to)) => rename_reply(session, id, &from, &to, true).await,
            None => malformed(),
        },
        "hardlink@openssh.com" => match decode::<TwoStrings>(data) {
            Some(TwoStrings(existing, link)) => {
                // Write on both: a link makes the file writable where the
                // link is.
                let (Some(existing), Some(link)) = (
                    session.place(Need::Write, &existing),
                    session.place(Need::Write, &link),
                ) else {
                    return denied(id);
                };
                two_paths(session, id, existing, link, |s, existing, link| {
                    s.hard_link(existing, link)
                })
                .await
            }
            None => malformed(),
        },
        "statvfs@openssh.com" => match decode::<OneString>(data) {
            Some(OneString(raw)) => {
                let Some(place) = session.place(Need::Metadata, &raw) else {
                    return denied(id);
                };
                stats_reply(id, at(session, place, |s, p| s.fs_stats(p)).await)
            }
            None => malformed(),
        },
        "fstatvfs@openssh.com" => match queued {
            Some((_, handle)) => {
                stats_reply(id, on_file(handle, move |file| file.fs_stats()).await)
            }
            None => status(id, StatusCode::Failure),
        },
        "fsync@openssh.com" => match queued {
            Some((_, handle)) => done(id, on_file(handle, move |file| file.sync()).await),
            None => status(id, StatusCode::Failure),
        },
        "limits@openssh.com" => {
            let max_packet = u64::from(session.limits.max_packet);
            let limits = russh_sftp::extensions::LimitsExtension {
                max_packet_len: max_packet,
                max_read_len: max_packet - 1024,
                max_write_len: max_packet - 1024,
                max_open_handles: session.limits.max_open_handles as u64,
            };
            extended_reply(id, &limits)
        }
        "expand-path@openssh.com" => match decode::<OneString>(data) {
            Some(OneString(raw)) => {
                if session.access.is_empty() {
                    return denied(id);
                }
                let expanded = path::expand_home(&raw);
                let root = session.storage.clone();
                name_reply(id, blocking(move || root.canonicalize(&expanded)).await)
            }
            None => malformed(),
        },
        "copy-data" => {
            let (Some(copy), Some((_, to))) = (decode::<CopyData>(data), queued) else {
                return status(id, StatusCode::Failure);
            };
            let Some((from, _turn)) = session.handles.queue(&copy.read_from) else {
                return status(id, StatusCode::Failure);
            };
            match (&from.opened, &to.opened) {
                (Opened::File { .. }, Opened::File { writable: true, .. }) => {}
                (
                    Opened::File { .. },
                    Opened::File {
                        writable: false, ..
                    },
                ) => return denied(id),
                _ => return status(id, StatusCode::Failure),
            }
            done(
                id,
                blocking(move || match (&from.opened, &to.opened) {
                    (Opened::File { file: from, .. }, Opened::File { file: to, .. }) => {
                        from.copy_to(copy.read_offset, copy.length, to, copy.write_offset)
                    }
                    _ => Err(rustix::io::Errno::BADF.into()),
                })
                .await,
            )
        }
        "users-groups-by-id@openssh.com" => {
            let Some((uids, gids)) = id_lists(data) else {
                return malformed();
            };
            // Bounded by the packet: at most max_packet / 4 ids.
            let names = session.names.clone();
            let named = blocking(move || {
                let users: Vec<String> = uids
                    .iter()
                    .map(|&u| names.user(u).unwrap_or_default())
                    .collect();
                let groups: Vec<String> = gids
                    .iter()
                    .map(|&g| names.group(g).unwrap_or_default())
                    .collect();
                Ok((users, groups))
            })
            .await;
            match named {
                Ok((users, groups)) => {
                    let mut data = BytesMut::new();
                    for list in [users, groups] {
                        let mut packed = BytesMut::new();
                        for name in list {
                            packed.put_u32(name.len() as u32);
                            packed.put_slice(name.as_bytes());
                        }
                        data.put_u32(packed.len() as u32);
                        data.put_slice(&packed);
                    }
                    Packet::ExtendedReply(ExtendedReply {
                        id,
                        data: data.to_vec(),
                    })
                }
                Err(e) => status::error(id, &e),
            }
        }
        _ => status(id, StatusCode::OpUnsupported),
    }
}

/// `users-groups-by-id@openssh.com`'s request: two strings, each a run of
/// big-endian u32 ids.
fn id_lists(data: &[u8]) -> Option<(Vec<u32>, Vec<u32>)> {
    fn blob<'a>(data: &mut &'a [u8]) -> Option<&'a [u8]> {
        let (length, rest) = data.split_first_chunk::<4>()?;
        let length = u32::from_be_bytes(*length) as usize;
        let (blob, rest) = (rest.get(..length)?, rest.get(length..)?);
        *data = rest;
        Some(blob)
    }
    fn ids(blob: &[u8]) -> Option<Vec<u32>> {
        if !blob.len().is_multiple_of(4) {
            return None;
        }
        Some(
            blob.chunks_exact(4)
                .map(|id| u32::from_be_bytes([id[0], id[1], id[2], id[3]]))
                .collect(),
        )
    }
    let mut rest = data;
    let uids = ids(blob(&mut rest)?)?;
    let gids = ids(blob(&mut rest)?)?;
    Some((uids, gids))
}

fn stats_reply(id: u32, stats: io::Result<crate::storage::FsStats>) -> Packet {
    match stats {
        Ok(stats) => extended_reply(id, &stats),
        Err(e) => status::error(id, &e),
    }
}

fn extended_reply(id: u32, value: &impl serde::Serialize) -> Packet {
    match russh_sftp::ser::to_bytes(value) {
        Ok(data) => Packet::ExtendedReply(ExtendedReply {
            id,
            data: data.to_vec(),
        }),
        Err(_) => status(id, StatusCode::Failure),
    }
}

/// Reads up to `len` bytes at `offset` into a `DATA` reply, encoded here
/// to read straight into the reply's buffer.
async fn read_data<S: Storage>(id: u32, handle: Arc<Handle<S>>, offset: u64, len: u32) -> Bytes {
    let read = on_file_soon(handle, move |file, wait| {
        // length, type, id, data length, data
        let header = 4 + 1 + 4 + 4;
        let want = read_size(attributes(file, wait)?.size, offset, len);
        let mut buffer = BytesMut::zeroed(header + want);
        let mut filled = 0;
        // Fill the request like OpenSSH does: a short read is retried
        // until the end of the file.
        while filled < want {
            let into = &mut buffer[header + filled..];
            let at = offset + filled as u64;
            let got = match wait {
                Wait::No => file.read_at_cached(into, at)?,
                Wait::Yes => file.read_at(into, at)?,
            };
            if got == 0 {
                break;
            }
            filled += got;
        }
        Ok((buffer, filled))
    })
    .await;
    match read {
        Ok((_, 0)) if len > 0 => encode(status(id, StatusCode::Eof)),
        Ok((mut buffer, filled)) => {
            buffer.truncate(13 + filled);
            let mut head = &mut buffer[..13];
            head.put_u32((9 + filled) as u32);
            head.put_u8(SSH_FXP_DATA);
            head.put_u32(id);
            head.put_u32(filled as u32);
            buffer.freeze()
        }
        Err(e) => encode(status::error(id, &e)),
    }
}

/// A file's attributes, from memory or not.
fn attributes<F: StorageFile>(file: &F, wait: Wait) -> io::Result<FileAttributes> {
    match wait {
        Wait::No => file.attributes_cached(),
        Wait::Yes => file.attributes(),
    }
}

/// How much of a `READ` of `len` bytes at `offset` to take: what the file
/// holds there by its size, so that a 4 KiB file read with OpenSSH's
/// 255 KiB requests is neither a 255 KiB buffer to zero nor a second read
/// to learn its end. A file whose size says nothing is there (at its end,
/// or a special file that reports none) is still read, a little.
fn read_size(size: Option<u64>, offset: u64, len: u32) -> usize {
    const PROBE: u64 = 4096;
    let held = size.map_or(PROBE, |size| size.saturating_sub(offset).max(PROBE));
    usize::try_from(held.min(u64::from(len))).unwrap_or(len as usize)
}

/// A packet with its length, ready to write.
pub(crate) fn encode(packet: Packet) -> Bytes {
    let id = packet.get_request_id();
    Bytes::try_from(packet).unwrap_or_else(|_| {
        // Only a name too long for a u32 length fails to encode.
        Bytes::try_from(status(id, StatusCode::Failure)).unwrap_or_default()
    })
}

fn decode<T: for<'de> Deserialize<'de>>(data: &[u8]) -> Option<T> {
    let mut bytes = Bytes::copy_from_slice(data);
    russh_sftp::de::from_bytes(&mut bytes).ok()
}

#[derive(Deserialize)]
struct OneString(String);

#[derive(Deserialize)]
struct TwoStrings(String, String);

/// `copy-data`'s request.
#[derive(Deserialize)]
struct CopyData {
    read_from: String,
    read_offset: u64,
    length: u64,
    write_to: String,
    write_offset: u64,
}

#[cfg(test)]
mod tests {
    use super::read_size;

    #[test]
    fn a_read_takes_what_the_file_holds_at_its_offset() {
        // A small file read whole with a large request.
        assert_eq!(read_size(Some(4096), 0, 255 * 1024), 4096);
        assert_eq!(read_size(Some(100_000), 8192, 255 * 1024), 91_808);
        // Less than a probe left: a probe, in case the file has grown.
        assert_eq!(read_size(Some(10_000), 8192, 255 * 1024), 4096);
        // A large file: the request's length.
        assert_eq!(read_size(Some(1 << 30), 0, 255 * 1024), 255 * 1024);
        // At or past the end, and a file whose size says nothing: a probe.
        assert_eq!(read_size(Some(4096), 4096, 255 * 1024), 4096);
        assert_eq!(read_size(Some(0), 0, 255 * 1024), 4096);
        assert_eq!(read_size(None, 0, 255 * 1024), 4096);
        // Never more than asked.
        assert_eq!(read_size(Some(1 << 30), 0, 100), 100);
        assert_eq!(read_size(None, 0, 100), 100);
    }
}
