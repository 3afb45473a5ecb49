//! The seam between SFTP and where files live: [`Storage`].
//!
//! The session speaks SFTP and checks scopes; a storage resolves paths and
//! does the work. Paths it receives are normalised (absolute, no `.` or
//! `..`, no empty components): `/` is the storage's own root, and whatever
//! the storage finds on the way (symbolic links included) must resolve
//! inside it. Its methods block; the session calls them on the blocking
//! pool. [`crate::Directory`] is the implementation for a directory on
//! disk.
//!
//! Most of what a small-file transfer asks (open, stat, read a few KiB,
//! close) the kernel answers from memory in microseconds, and a hop to the
//! blocking pool and back costs more than that: two thread wake-ups per
//! request. So the calls such requests make have a `_cached` twin that
//! answers only from memory and returns [`would_wait`] when it would have to
//! wait on a disk or a network; the session runs the twin on its own thread
//! and goes to the blocking pool only when it declines. The twins decline
//! everything unless a storage says otherwise.

use std::io;

pub use russh_sftp::protocol::FileAttributes;

/// The error a `_cached` call declines with: the call would have to wait.
pub fn would_wait() -> io::Error {
    io::ErrorKind::WouldBlock.into()
}

/// Whether `error` is a `_cached` call declining.
pub(crate) fn declined(error: &io::Error) -> bool {
    error.kind() == io::ErrorKind::WouldBlock
}

/// How a file is opened (SFTP's `pflags`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OpenOptions {
    /// Open for reading.
    pub read: bool,
    /// Open for writing.
    pub write: bool,
    /// Every write goes to the end of the file.
    pub append: bool,
    /// Create the file if it does not exist.
    pub create: bool,
    /// Truncate an existing file to nothing.
    pub truncate: bool,
    /// Fail if the file exists (with `create`).
    pub exclusive: bool,
    /// Permissions for a created file (before the umask).
    pub mode: u32,
}

impl OpenOptions {
    /// Whether opening changes the file system (so needs a write grant).
    pub fn writes(&self) -> bool {
        self.write || self.append || self.create || self.truncate
    }
}

/// Totals of the file system a path is on (`statvfs@openssh.com`).
pub type FsStats = russh_sftp::extensions::Statvfs;

/// One entry of a directory listing.
#[derive(Clone, Debug)]
pub struct DirEntry {
    /// The entry's name, without any path.
    pub name: String,
    /// Its attributes, not following a symbolic link.
    pub attrs: FileAttributes,
    /// Its number of hard links (for the `ls -l` line).
    pub links: u64,
}

/// Where SFTP's files live. See the module documentation for what paths
/// look like.
pub trait Storage: Clone + Send + Sync + Sized + 'static {
    /// An open file.
    type File: StorageFile;
    /// An open directory being listed.
    type Dir: Send + 'static;

    /// The same storage seen from `path`, which must be a directory: what
    /// a grant limited to `path` may reach. Links inside it cannot leave it.
    fn within(&self, path: &str) -> io::Result<Self>;
    /// [`Storage::within`] from memory, or [`would_wait`].
    fn within_cached(&self, _path: &str) -> io::Result<Self> {
        Err(would_wait())
    }
    /// Opens a file.
    fn open(&self, path: &str, options: OpenOptions) -> io::Result<Self::File>;
    /// [`Storage::open`] from memory, or [`would_wait`].
    fn open_cached(&self, _path: &str, _options: OpenOptions) -> io::Result<Self::File> {
        Err(would_wait())
    }
    /// Opens a directory for listing.
    fn open_dir(&self, path: &str) -> io::Result<Self::Dir>;
    /// Up to `max` further entries of `dir`; empty at its end.
    fn read_dir(&self, dir: &mut Self::Dir, max: usize) -> io::Result<Vec<DirEntry>>;
    /// A path's attributes, following a final symbolic link or not.
    fn stat(&self, path: &str, follow: bool) -> io::Result<FileAttributes>;
    /// [`Storage::stat`] from memory, or [`would_wait`].
    fn stat_cached(&self, _path: &str, _follow: bool) -> io::Result<FileAttributes> {
        Err(would_wait())
    }
    /// Sets the attributes present in `attrs` (size, owner, permissions,
    /// times), following a final symbolic link.
    fn set_attributes(&self, path: &str, attrs: &FileAttributes) -> io::Result<()>;
    /// Removes a file (or a symbolic link).
    fn remove_file(&self, path: &str) -> io::Result<()>;
    /// Creates a directory.
    fn create_dir(&self, path: &str, mode: u32) -> io::Result<()>;
    /// Removes an empty directory.
    fn remove_dir(&self, path: &str) -> io::Result<()>;
    /// Renames `from` to `to`. Without `replace`, an existing `to` is an
    /// error (SFTP's own rename); with it, `to` is replaced atomically
    /// (`posix-rename@openssh.com`).
    fn rename(&self, from: &str, to: &str, replace: bool) -> io::Result<()>;
    /// A symbolic link's target, as stored.
    fn read_link(&self, path: &str) -> io::Result<String>;
    /// Creates a symbolic link at `link` holding `target`.
    fn symlink(&self, target: &str, link: &str) -> io::Result<()>;
    /// Creates a hard link at `link` to the file at `existing`.
    fn hard_link(&self, existing: &str, link: &str) -> io::Result<()>;
    /// Where `path` leads once its symbolic links are followed: a
    /// normalised path inside the storage. A missing final component is
    /// kept as given.
    fn canonicalize(&self, path: &str) -> io::Result<String>;
    /// The file system totals for `path`.
    fn fs_stats(&self, path: &str) -> io::Result<FsStats>;
}

/// An open file of a [`Storage`].
pub trait StorageFile: Send + Sync + 'static {
    /// Reads from `offset` into `buf`; 0 at the end of the file.
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize>;
    /// [`StorageFile::read_at`] from memory, or [`would_wait`]. It may
    /// return fewer bytes than are there (the rest not being in memory).
    fn read_at_cached(&self, _buf: &mut [u8], _offset: u64) -> io::Result<usize> {
        Err(would_wait())
    }
    /// Writes all of `data` at `offset` (at the end if opened to append).
    fn write_at(&self, data: &[u8], offset: u64) -> io::Result<()>;
    /// [`StorageFile::write_at`] without waiting, or [`would_wait`] having
    /// written nothing.
    fn write_at_cached(&self, _data: &[u8], _offset: u64) -> io::Result<()> {
        Err(would_wait())
    }
    /// The file's attributes.
    fn attributes(&self) -> io::Result<FileAttributes>;
    /// [`StorageFile::attributes`] from memory, or [`would_wait`].
    fn attributes_cached(&self) -> io::Result<FileAttributes> {
        Err(would_wait())
    }
    /// Sets the attributes present in `attrs`.
    fn set_attributes(&self, attrs: &FileAttributes) -> io::Result<()>;
    /// Flushes the file's data and metadata to stable storage.
    fn sync(&self) -> io::Result<()>;
    /// The file system totals for the file.
    fn fs_stats(&self) -> io::Result<FsStats>;
    /// Copies `length` bytes (to the end when 0) from `self` at
    /// `from_offset` to `to` at `to_offset` (`copy-data`).
    fn copy_to(&self, from_offset: u64, length: u64, to: &Self, to_offset: u64) -> io::Result<()>
    where
        Self: Sized,
    {
        copy_by_reading(self, from_offset, length, to, to_offset)
    }
}

/// `copy-data` through memory, 64 KiB at a time.
pub fn copy_by_reading<F: StorageFile>(
    from: &F,
    from_offset: u64,
    length: u64,
    to: &F,
    to_offset: u64,
) -> io::Result<()> {
    let mut buffer = vec![0; 64 * 1024];
    let (mut read, mut written) = (from_offset, to_offset);
    let end = if length == 0 {
        u64::MAX
    } else {
        from_offset.saturating_add(length)
    };
    while read < end {
        let want = usize::try_from(end - read)
            .unwrap_or(usize::MAX)
            .min(buffer.len());
        let got = from.read_at(&mut buffer[..want], read)?;
        if got == 0 {
            break;
        }
        to.write_at(&buffer[..got], written)?;
        read += got as u64;
        written += got as u64;
    }
    Ok(())
}
