//! [`Directory`]: a [`Storage`] confined to a directory by the kernel.
//!
//! Every path is resolved with `openat2(RESOLVE_IN_ROOT)` from a descriptor
//! of the root: `..` stops at the root and a symbolic link, absolute or
//! relative, resolves inside it, as if the root were `/`. The kernel does
//! this atomically, so a link swapped in while a request runs cannot lead
//! out either. Operations on a last component (remove, rename, lstat…)
//! resolve its directory that way and then act on the name relative to
//! that descriptor, never through a path string; changing a file's
//! attributes goes through `/proc/self/fd` of the resolved file, which
//! names exactly that inode.
//!
//! The `*_cached` calls answer only what the kernel holds in memory, and
//! `WouldBlock` otherwise ([`crate::storage`] says why). What that covers
//! depends on the root's file system ([`Backing`]): on a RAM file system
//! everything; on a local disk one, lookups the dentry cache holds
//! (`RESOLVE_CACHED`), reads the page cache holds (`RWF_NOWAIT`) and the
//! attributes of an open file; on anything else (NFS, FUSE), nothing. What
//! is mounted below the root may be any of these, so a `_cached` lookup
//! never crosses a mount point (`RESOLVE_NO_XDEV`): one that would is left
//! to the blocking call. An open file's reads and writes ask the file's own
//! file system.

use std::fs::File;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::{DirBuilderExt, FileExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustix::fs::{
    AtFlags, CWD, Dir, FileType, Mode, OFlags, RenameFlags, ResolveFlags, Stat, Timespec,
    Timestamps,
};
use rustix::io::{Errno, ReadWriteFlags};

use crate::storage::{
    DirEntry, FileAttributes, FsStats, OpenOptions, Storage, StorageFile, would_wait,
};

/// How every path is resolved: inside the root, and never through
/// `/proc`'s magic links (which could name any file).
const RESOLVE: ResolveFlags = ResolveFlags::IN_ROOT.union(ResolveFlags::NO_MAGICLINKS);

/// A directory on disk as SFTP's `/`.
#[derive(Clone, Debug)]
pub struct Directory {
    root: Arc<OwnedFd>,
    /// Where the root is, as the kernel names it: what resolved paths are
    /// made relative to again.
    host: Arc<PathBuf>,
    /// What the root's file system answers from memory.
    backing: Backing,
    /// The root's device: a file on another one was found through a mount.
    device: u64,
}

/// What a file system answers from memory, without waiting on a disk or a
/// network.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Backing {
    /// A RAM file system (tmpfs, ramfs): everything.
    Memory,
    /// A local disk file system (ext4, XFS, Btrfs, F2FS): cached lookups
    /// and reads, and an open file's attributes.
    Disk,
    /// Anything else: nothing is assumed.
    Other,
}

impl Backing {
    /// The backing of the file system `fd` is on.
    fn of(fd: impl AsFd) -> Self {
        const TMPFS: u32 = 0x0102_1994;
        const RAMFS: u32 = 0x8584_58f6;
        const EXT4: u32 = 0xef53;
        const XFS: u32 = 0x5846_5342;
        const BTRFS: u32 = 0x9123_683e;
        const F2FS: u32 = 0xf2f5_2010;
        let Ok(stats) = rustix::fs::fstatfs(fd) else {
            return Self::Other;
        };
        // The magic is 32 bits wide, whatever width the field has here.
        match stats.f_type as u32 {
            TMPFS | RAMFS => Self::Memory,
            EXT4 | XFS | BTRFS | F2FS => Self::Disk,
            _ => Self::Other,
        }
    }
}

impl Directory {
    /// The directory at `path`, which must exist.
    pub fn open(path: &Path) -> io::Result<Self> {
        let fd = rustix::fs::open(
            path,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        Self::from_fd(fd)
    }

    /// The directory at `path`, created (with its parents, mode 0700) if
    /// missing.
    pub fn open_or_create(path: &Path) -> io::Result<Self> {
        match Self::open(path) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                std::fs::DirBuilder::new()
                    .recursive(true)
                    .mode(0o700)
                    .create(path)?;
                Self::open(path)
            }
            other => other,
        }
    }

    fn from_fd(fd: OwnedFd) -> io::Result<Self> {
        Self::rooted(fd, None)
    }

    /// A directory found below this one's root as a root of its own.
    fn below(&self, fd: OwnedFd) -> io::Result<Self> {
        Self::rooted(fd, Some(self))
    }

    /// `fd` as a root; below `above`, it takes `above`'s backing when on
    /// the same device.
    fn rooted(fd: OwnedFd, above: Option<&Self>) -> io::Result<Self> {
        let host = host_path(&fd)?;
        let device = rustix::fs::fstat(&fd)?.st_dev;
        let backing = match above {
            Some(above) => above.backing_on(device, &fd),
            None => Backing::of(&fd),
        };
        Ok(Self {
            backing,
            device,
            root: Arc::new(fd),
            host: Arc::new(host),
        })
    }

    /// The backing of `fd`, on `device`: the root's when it is the root's
    /// device, which spares asking the file system (a grant's directory is
    /// resolved for each of its requests).
    fn backing_on(&self, device: u64, fd: &OwnedFd) -> Backing {
        if device == self.device {
            self.backing
        } else {
            Backing::of(fd)
        }
    }

    /// The directory's own path on the host.
    pub fn host_path(&self) -> &Path {
        &self.host
    }

    /// `path` (normalised, see [`crate::storage`]) resolved inside the root.
    fn resolve(&self, path: &str, flags: OFlags, mode: Mode) -> io::Result<OwnedFd> {
        self.resolve_with(path, flags, mode, RESOLVE)
    }

    /// [`Self::resolve`] from memory only: `WouldBlock` where a component
    /// would have to be read from the disk (the dentry cache is all a disk
    /// root's lookups may use) or lies on another file system.
    fn resolve_cached(&self, path: &str, flags: OFlags, mode: Mode) -> io::Result<OwnedFd> {
        let resolve = match self.backing {
            Backing::Memory => RESOLVE | ResolveFlags::NO_XDEV,
            Backing::Disk => RESOLVE | ResolveFlags::NO_XDEV | ResolveFlags::CACHED,
            Backing::Other => return Err(would_wait()),
        };
        match self.resolve_with(path, flags, mode, resolve) {
            // With RESOLVE_CACHED, EAGAIN is the kernel declining; with
            // RESOLVE_NO_XDEV, EXDEV is a mount point on the way.
            Err(e) if e.raw_os_error() == Some(Errno::XDEV.raw_os_error()) => Err(would_wait()),
            Err(e)
                if resolve.contains(ResolveFlags::CACHED)
                    && e.raw_os_error() == Some(Errno::AGAIN.raw_os_error()) =>
            {
                Err(would_wait())
            }
            other => other,
        }
    }

    fn resolve_with(
        &self,
        path: &str,
        flags: OFlags,
        mode: Mode,
        resolve: ResolveFlags,
    ) -> io::Result<OwnedFd> {
        let relative = path.trim_start_matches('/');
        let relative = if relative.is_empty() { "." } else { relative };
        // openat2 refuses flags that mean nothing with O_PATH.
        let flags = if flags.contains(OFlags::PATH) {
            flags | OFlags::CLOEXEC
        } else {
            flags | OFlags::CLOEXEC | OFlags::NOCTTY
        };
        loop {
            match rustix::fs::openat2(self.root.as_fd(), relative, flags, mode, resolve) {
                // A rename elsewhere raced with resolving `..`: the kernel
                // asks to try again rather than risk a wrong answer.
                Err(Errno::AGAIN) if !resolve.contains(ResolveFlags::CACHED) => continue,
                other => return Ok(other?),
            }
        }
    }

    /// An opened descriptor as a file, if it is a regular one.
    fn file(&self, fd: OwnedFd) -> io::Result<DirectoryFile> {
        let stat = rustix::fs::fstat(&fd)?;
        match FileType::from_raw_mode(stat.st_mode) {
            FileType::RegularFile => Ok(DirectoryFile {
                backing: self.backing_on(stat.st_dev, &fd),
                file: File::from(fd),
            }),
            FileType::Directory => Err(Errno::ISDIR.into()),
            _ => Err(io::Error::other("not a regular file")),
        }
    }

    /// The directory holding `path`'s last component, and that component.
    /// The root itself has none: it cannot be removed or renamed.
    fn parent<'p>(&self, path: &'p str) -> io::Result<(OwnedFd, &'p str)> {
        let (dir, name) = path.rsplit_once('/').unwrap_or(("", path));
        if name.is_empty() || name == "." || name == ".." {
            return Err(Errno::BUSY.into());
        }
        Ok((
            self.resolve(dir, OFlags::PATH | OFlags::DIRECTORY, Mode::empty())?,
            name,
        ))
    }
}

impl Storage for Directory {
    type File = DirectoryFile;
    type Dir = Dir;

    fn within(&self, path: &str) -> io::Result<Self> {
        self.below(self.resolve(path, OFlags::PATH | OFlags::DIRECTORY, Mode::empty())?)
    }

    fn within_cached(&self, path: &str) -> io::Result<Self> {
        let flags = OFlags::PATH | OFlags::DIRECTORY;
        self.below(self.resolve_cached(path, flags, Mode::empty())?)
    }

    fn open(&self, path: &str, options: OpenOptions) -> io::Result<DirectoryFile> {
        let (flags, mode) = open_flags(options);
        self.file(self.resolve(path, flags, mode)?)
    }

    fn open_cached(&self, path: &str, options: OpenOptions) -> io::Result<DirectoryFile> {
        let (flags, mode) = open_flags(options);
        // Creating or truncating waits on a disk's journal; the kernel
        // refuses it from the cache alone.
        if self.backing == Backing::Disk && (options.create || options.truncate) {
            return Err(would_wait());
        }
        self.file(self.resolve_cached(path, flags, mode)?)
    }

    fn open_dir(&self, path: &str) -> io::Result<Dir> {
        let fd = self.resolve(path, OFlags::RDONLY | OFlags::DIRECTORY, Mode::empty())?;
        Ok(Dir::new(fd)?)
    }

    fn read_dir(&self, dir: &mut Dir, max: usize) -> io::Result<Vec<DirEntry>> {
        // `..` of the root is the root itself, as in a chroot: never the
        // directory above it on the host.
        let at_root = {
            let listed = rustix::fs::fstat(dir.fd()?)?;
            let root = rustix::fs::fstat(self.root.as_fd())?;
            (listed.st_dev, listed.st_ino) == (root.st_dev, root.st_ino)
        };
        let mut entries = Vec::new();
        while entries.len() < max {
            let Some(entry) = dir.read() else { break };
            let entry = entry?;
            let name = entry.file_name();
            let looked_up = if at_root && name.to_bytes() == b".." {
                c"."
            } else {
                name
            };
            let stat = match rustix::fs::statat(dir.fd()?, looked_up, AtFlags::SYMLINK_NOFOLLOW) {
                Ok(stat) => stat,
                // Removed since it was listed: skip it, as `ls` would.
                Err(Errno::NOENT) => continue,
                Err(e) => return Err(e.into()),
            };
            entries.push(DirEntry {
                name: String::from_utf8_lossy(name.to_bytes()).into_owned(),
                attrs: attributes(&stat),
                links: stat.st_nlink,
            });
        }
        Ok(entries)
    }

    fn stat(&self, path: &str, follow: bool) -> io::Result<FileAttributes> {
        let stat = if follow || path.trim_start_matches('/').is_empty() {
            rustix::fs::fstat(self.resolve(path, OFlags::PATH, Mode::empty())?)?
        } else {
            let (dir, name) = self.parent(path)?;
            rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW)?
        };
        Ok(attributes(&stat))
    }

    fn stat_cached(&self, path: &str, follow: bool) -> io::Result<FileAttributes> {
        // An O_PATH descriptor of the link itself is lstat's answer.
        let flags = if follow {
            OFlags::PATH
        } else {
            OFlags::PATH | OFlags::NOFOLLOW
        };
        let fd = self.resolve_cached(path, flags, Mode::empty())?;
        Ok(attributes(&rustix::fs::fstat(fd)?))
    }

    fn set_attributes(&self, path: &str, attrs: &FileAttributes) -> io::Result<()> {
        let fd = self.resolve(path, OFlags::PATH, Mode::empty())?;
        let through = proc_path(&fd);
        if let Some(size) = attrs.size {
            if !FileType::from_raw_mode(rustix::fs::fstat(&fd)?.st_mode).is_file() {
                return Err(Errno::INVAL.into());
            }
            let file = rustix::fs::open(
                &through,
                OFlags::WRONLY | OFlags::NONBLOCK | OFlags::CLOEXEC | OFlags::NOCTTY,
                Mode::empty(),
            )?;
            rustix::fs::ftruncate(file, size)?;
        }
        if let Some(permissions) = attrs.permissions {
            let mode = Mode::from_raw_mode(permissions & 0o7777);
            rustix::fs::chmodat(CWD, &through, mode, AtFlags::empty())?;
        }
        if let Some(times) = timestamps(attrs) {
            rustix::fs::utimensat(CWD, &through, &times, AtFlags::empty())?;
        }
        if let (Some(uid), Some(gid)) = (attrs.uid, attrs.gid) {
            rustix::fs::chownat(
                &fd,
                "",
                Some(rustix::fs::Uid::from_raw(uid)),
                Some(rustix::fs::Gid::from_raw(gid)),
                AtFlags::EMPTY_PATH,
            )?;
        }
        Ok(())
    }

    fn remove_file(&self, path: &str) -> io::Result<()> {
        let (dir, name) = self.parent(path)?;
        Ok(rustix::fs::unlinkat(dir, name, AtFlags::empty())?)
    }

    fn create_dir(&self, path: &str, mode: u32) -> io::Result<()> {
        let (dir, name) = self.parent(path)?;
        Ok(rustix::fs::mkdirat(
            dir,
            name,
            Mode::from_raw_mode(mode & 0o7777),
        )?)
    }

    fn remove_dir(&self, path: &str) -> io::Result<()> {
        let (dir, name) = self.parent(path)?;
        Ok(rustix::fs::unlinkat(dir, name, AtFlags::REMOVEDIR)?)
    }

    fn rename(&self, from: &str, to: &str, replace: bool) -> io::Result<()> {
        let (from_dir, from_name) = self.parent(from)?;
        let (to_dir, to_name) = self.parent(to)?;
        let flags = if replace {
            RenameFlags::empty()
        } else {
            RenameFlags::NOREPLACE
        };
        Ok(rustix::fs::renameat_with(
            from_dir, from_name, to_dir, to_name, flags,
        )?)
    }

    fn read_link(&self, path: &str) -> io::Result<String> {
        let (dir, name) = self.parent(path)?;
        let target = rustix::fs::readlinkat(dir, name, Vec::new())?;
        Ok(String::from_utf8_lossy(target.as_bytes()).into_owned())
    }

    fn symlink(&self, target: &str, link: &str) -> io::Result<()> {
        let (dir, name) = self.parent(link)?;
        Ok(rustix::fs::symlinkat(target, dir, name)?)
    }

    fn hard_link(&self, existing: &str, link: &str) -> io::Result<()> {
        let (from_dir, from_name) = self.parent(existing)?;
        let (to_dir, to_name) = self.parent(link)?;
        Ok(rustix::fs::linkat(
            from_dir,
            from_name,
            to_dir,
            to_name,
            AtFlags::empty(),
        )?)
    }

    fn canonicalize(&self, path: &str) -> io::Result<String> {
        match self.resolve(path, OFlags::PATH, Mode::empty()) {
            Ok(fd) => {
                let host = host_path(&fd)?;
                let inside = host
                    .strip_prefix(self.host.as_path())
                    .map_err(|_| io::Error::other("the root was moved"))?;
                let inside = inside.to_string_lossy();
                Ok(if inside.is_empty() {
                    "/".to_owned()
                } else {
                    format!("/{inside}")
                })
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                let Some((dir, name)) = path.rsplit_once('/') else {
                    return Err(e);
                };
                let dir = self.canonicalize(dir)?;
                Ok(crate::path::join(&dir, name))
            }
            Err(e) => Err(e),
        }
    }

    fn fs_stats(&self, path: &str) -> io::Result<FsStats> {
        fs_stats(self.resolve(path, OFlags::PATH, Mode::empty())?)
    }
}

/// An open file of a [`Directory`].
#[derive(Debug)]
pub struct DirectoryFile {
    file: File,
    /// What its own file system answers from memory.
    backing: Backing,
}

/// The `openat2` flags and creation mode for `options`.
fn open_flags(options: OpenOptions) -> (OFlags, Mode) {
    let mut flags = match (options.read, options.write || options.append) {
        (true, true) => OFlags::RDWR,
        (false, true) => OFlags::WRONLY,
        _ => OFlags::RDONLY,
    };
    let mut mode = Mode::empty();
    if options.create {
        flags |= OFlags::CREATE;
        if options.exclusive {
            flags |= OFlags::EXCL;
        }
        mode = Mode::from_raw_mode(options.mode & 0o7777);
    }
    if options.truncate {
        flags |= OFlags::TRUNC;
    }
    if options.append {
        flags |= OFlags::APPEND;
    }
    // A FIFO would hold the opening thread until a writer came.
    flags |= OFlags::NONBLOCK;
    (flags, mode)
}

impl StorageFile for DirectoryFile {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        loop {
            match self.file.read_at(buf, offset) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                other => return other,
            }
        }
    }

    fn read_at_cached(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        match self.backing {
            Backing::Memory => self.read_at(buf, offset),
            Backing::Disk => loop {
                let mut slices = [std::io::IoSliceMut::new(buf)];
                match rustix::io::preadv2(&self.file, &mut slices, offset, ReadWriteFlags::NOWAIT) {
                    Err(Errno::INTR) => continue,
                    // Not in the page cache, or a file system that cannot say.
                    Err(Errno::AGAIN | Errno::OPNOTSUPP) => return Err(would_wait()),
                    other => return Ok(other?),
                }
            },
            Backing::Other => Err(would_wait()),
        }
    }

    fn write_at(&self, data: &[u8], offset: u64) -> io::Result<()> {
        self.file.write_all_at(data, offset)
    }

    fn write_at_cached(&self, data: &[u8], offset: u64) -> io::Result<()> {
        // A disk's buffered write may be held back to let writeback catch up.
        match self.backing {
            Backing::Memory => self.write_at(data, offset),
            Backing::Disk | Backing::Other => Err(would_wait()),
        }
    }

    fn attributes(&self) -> io::Result<FileAttributes> {
        Ok(attributes(&rustix::fs::fstat(&self.file)?))
    }

    fn attributes_cached(&self) -> io::Result<FileAttributes> {
        // An open file's inode is in memory on a local file system; a
        // network one may ask its server.
        match self.backing {
            Backing::Memory | Backing::Disk => self.attributes(),
            Backing::Other => Err(would_wait()),
        }
    }

    fn set_attributes(&self, attrs: &FileAttributes) -> io::Result<()> {
        if let Some(size) = attrs.size {
            rustix::fs::ftruncate(&self.file, size)?;
        }
        if let Some(permissions) = attrs.permissions {
            rustix::fs::fchmod(&self.file, Mode::from_raw_mode(permissions & 0o7777))?;
        }
        if let Some(times) = timestamps(attrs) {
            rustix::fs::futimens(&self.file, &times)?;
        }
        if let (Some(uid), Some(gid)) = (attrs.uid, attrs.gid) {
            rustix::fs::fchown(
                &self.file,
                Some(rustix::fs::Uid::from_raw(uid)),
                Some(rustix::fs::Gid::from_raw(gid)),
            )?;
        }
        Ok(())
    }

    fn sync(&self) -> io::Result<()> {
        self.file.sync_all()
    }

    fn fs_stats(&self) -> io::Result<FsStats> {
        fs_stats(&self.file)
    }

    fn copy_to(&self, from_offset: u64, length: u64, to: &Self, to_offset: u64) -> io::Result<()> {
        let (mut from, mut at) = (from_offset, to_offset);
        let end = if length == 0 {
            u64::MAX
        } else {
            from_offset.saturating_add(length)
        };
        while from < end {
            let want = usize::try_from(end - from)
                .unwrap_or(usize::MAX)
                .min(1 << 30);
            match rustix::fs::copy_file_range(
                &self.file,
                Some(&mut from),
                &to.file,
                Some(&mut at),
                want,
            ) {
                Ok(0) => return Ok(()),
                Ok(_) => {}
                Err(Errno::INTR) => {}
                // Across file systems on older kernels, or special files:
                // copy through memory.
                Err(Errno::XDEV | Errno::INVAL | Errno::NOSYS | Errno::OPNOTSUPP) => {
                    let rest = if length == 0 { 0 } else { end - from };
                    return crate::storage::copy_by_reading(self, from, rest, to, at);
                }
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }
}

/// SFTP's attributes of a file: size, owner, the whole `st_mode` (type and
/// permissions, as OpenSSH sends it) and times.
fn attributes(stat: &Stat) -> FileAttributes {
    let seconds = |s: i64| u32::try_from(s.max(0)).unwrap_or(u32::MAX);
    FileAttributes {
        size: Some(u64::try_from(stat.st_size).unwrap_or(0)),
        uid: Some(stat.st_uid),
        gid: Some(stat.st_gid),
        user: None,
        group: None,
        permissions: Some(stat.st_mode),
        atime: Some(seconds(stat.st_atime)),
        mtime: Some(seconds(stat.st_mtime)),
    }
}

/// The access and modification times to set, if the attributes carry them.
fn timestamps(attrs: &FileAttributes) -> Option<Timestamps> {
    let (atime, mtime) = (attrs.atime?, attrs.mtime?);
    let at = |seconds: u32| Timespec {
        tv_sec: i64::from(seconds),
        tv_nsec: 0,
    };
    Some(Timestamps {
        last_access: at(atime),
        last_modification: at(mtime),
    })
}

fn fs_stats(fd: impl AsFd) -> io::Result<FsStats> {
    let stats = rustix::fs::fstatvfs(fd)?;
    // OpenSSH's flag bits: read-only 1, no setuid 2.
    let mut flags = 0;
    if stats.f_flag.contains(rustix::fs::StatVfsMountFlags::RDONLY) {
        flags |= 1;
    }
    if stats.f_flag.contains(rustix::fs::StatVfsMountFlags::NOSUID) {
        flags |= 2;
    }
    Ok(FsStats {
        block_size: stats.f_bsize,
        fragment_size: stats.f_frsize,
        blocks: stats.f_blocks,
        blocks_free: stats.f_bfree,
        blocks_avail: stats.f_bavail,
        inodes: stats.f_files,
        inodes_free: stats.f_ffree,
        inodes_avail: stats.f_favail,
        fs_id: stats.f_fsid,
        flags,
        name_max: stats.f_namemax,
    })
}

/// The name of `fd`'s inode through `/proc`, usable where a call takes no
/// descriptor.
fn proc_path(fd: &OwnedFd) -> PathBuf {
    use std::os::fd::AsRawFd;
    PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd()))
}

/// Where `fd` is on the host, as the kernel names it.
fn host_path(fd: &OwnedFd) -> io::Result<PathBuf> {
    std::fs::read_link(proc_path(fd))
}
