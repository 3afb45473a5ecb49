//! Files a crash cannot tear: what the zone store and the pkarr packet
//! store both write before they acknowledge anything.

use std::fs;
use std::io::Write;
use std::path::Path;

/// Replaces `path` with `bytes` so that after a crash at any moment it holds
/// either the old content or the new, whole: written to `<path>.tmp`,
/// synced, renamed over `path`, and the directory synced (the rename itself
/// must reach the disk). A missing directory is created, mode 0700.
pub(crate) fn write(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    if !dir.exists() {
        fs::create_dir_all(dir)?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            fs::set_permissions(dir, fs::Permissions::from_mode(0o700))?;
        }
    }
    let mut temporary = path.as_os_str().to_owned();
    temporary.push(".tmp");
    let mut file = fs::File::create(&temporary)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    drop(file);
    fs::rename(&temporary, path)?;
    fs::File::open(dir)?.sync_all()
}
