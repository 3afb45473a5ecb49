//! The `ls -l` line a directory listing carries for each entry, formatted
//! as OpenSSH's `sftp-server` formats it (`sftp`'s `ls -l` prints it as
//! sent).

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::{SystemTime, UNIX_EPOCH};

use time::OffsetDateTime;
use time::macros::format_description;

use crate::storage::FileAttributes;

/// User and group names by id, looked up once each.
#[derive(Default)]
pub(crate) struct Names {
    users: Mutex<HashMap<u32, Option<String>>>,
    groups: Mutex<HashMap<u32, Option<String>>>,
}

impl Names {
    /// The name of user `uid`, if the node's system knows one.
    pub(crate) fn user(&self, uid: u32) -> Option<String> {
        let mut users = self.users.lock().unwrap_or_else(PoisonError::into_inner);
        users
            .entry(uid)
            .or_insert_with(|| {
                nix::unistd::User::from_uid(uid.into())
                    .ok()
                    .flatten()
                    .map(|user| user.name)
            })
            .clone()
    }

    /// The name of group `gid`, if the node's system knows one.
    pub(crate) fn group(&self, gid: u32) -> Option<String> {
        let mut groups = self.groups.lock().unwrap_or_else(PoisonError::into_inner);
        groups
            .entry(gid)
            .or_insert_with(|| {
                nix::unistd::Group::from_gid(gid.into())
                    .ok()
                    .flatten()
                    .map(|group| group.name)
            })
            .clone()
    }

    /// `drwxr-xr-x    2 user     group        4096 Dec  3 20:13 name`.
    pub(crate) fn long_name(&self, name: &str, attrs: &FileAttributes, links: u64) -> String {
        let mode = attrs.permissions.unwrap_or(0);
        let (uid, gid) = (attrs.uid.unwrap_or(0), attrs.gid.unwrap_or(0));
        let user = self.user(uid).unwrap_or_else(|| uid.to_string());
        let group = self.group(gid).unwrap_or_else(|| gid.to_string());
        format!(
            "{}  {links:>3} {user:<8} {group:<8} {:>8} {} {name}",
            mode_string(mode),
            attrs.size.unwrap_or(0),
            mtime_string(attrs.mtime.unwrap_or(0)),
        )
    }
}

/// `strmode`'s ten characters: the type, then rwx three times with the
/// setuid, setgid and sticky bits folded in.
fn mode_string(mode: u32) -> String {
    let kind = match mode & 0o170_000 {
        0o040_000 => 'd',
        0o120_000 => 'l',
        0o020_000 => 'c',
        0o060_000 => 'b',
        0o010_000 => 'p',
        0o140_000 => 's',
        _ => '-',
    };
    let mut text = String::with_capacity(10);
    text.push(kind);
    let bit = |mask: u32, c: char| if mode & mask != 0 { c } else { '-' };
    let exec = |mask: u32, special: u32, set: char, unset: char| match (
        mode & mask != 0,
        mode & special != 0,
    ) {
        (true, true) => set,
        (false, true) => unset,
        (true, false) => 'x',
        (false, false) => '-',
    };
    text.push(bit(0o400, 'r'));
    text.push(bit(0o200, 'w'));
    text.push(exec(0o100, 0o4000, 's', 'S'));
    text.push(bit(0o040, 'r'));
    text.push(bit(0o020, 'w'));
    text.push(exec(0o010, 0o2000, 's', 'S'));
    text.push(bit(0o004, 'r'));
    text.push(bit(0o002, 'w'));
    text.push(exec(0o001, 0o1000, 't', 'T'));
    text
}

/// `Dec  3 20:13` within the last half year, else `Dec  3  2025` (UTC).
fn mtime_string(mtime: u32) -> String {
    let Ok(when) = OffsetDateTime::from_unix_timestamp(i64::from(mtime)) else {
        return String::new();
    };
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let recent =
        now.saturating_sub(365 * 24 * 3600 / 2) < u64::from(mtime) && now >= u64::from(mtime);
    let formatted = if recent {
        when.format(format_description!(
            "[month repr:short] [day padding:space] [hour]:[minute]"
        ))
    } else {
        when.format(format_description!(
            "[month repr:short] [day padding:space]  [year]"
        ))
    };
    formatted.unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_read_as_ls_prints_them() {
        assert_eq!(mode_string(0o100_644), "-rw-r--r--");
        assert_eq!(mode_string(0o040_755), "drwxr-xr-x");
        assert_eq!(mode_string(0o041_777), "drwxrwxrwt");
        assert_eq!(mode_string(0o104_644), "-rwSr--r--");
        assert_eq!(mode_string(0o120_777), "lrwxrwxrwx");
    }

    #[test]
    fn an_old_file_shows_its_year() {
        // 2001-09-09 01:46:40 UTC.
        assert_eq!(mtime_string(1_000_000_000), "Sep  9  2001");
    }
}
