//! SFTP status codes for what went wrong, chosen as OpenSSH's
//! `sftp-server` chooses them, so that `sftp` prints the same message
//! against either server.

use std::io;

use russh_sftp::protocol::{Packet, Status, StatusCode};

/// The status OpenSSH reports for `error` (its `errno_to_portable`).
pub(crate) fn code_of(error: &io::Error) -> StatusCode {
    use rustix::io::Errno;
    if let Some(raw) = error.raw_os_error() {
        let errno = Errno::from_raw_os_error(raw);
        return match errno {
            Errno::NOENT | Errno::NOTDIR | Errno::BADF | Errno::LOOP => StatusCode::NoSuchFile,
            Errno::PERM | Errno::ACCESS | Errno::FAULT => StatusCode::PermissionDenied,
            Errno::NAMETOOLONG | Errno::INVAL => StatusCode::BadMessage,
            Errno::NOSYS => StatusCode::OpUnsupported,
            _ => StatusCode::Failure,
        };
    }
    match error.kind() {
        io::ErrorKind::NotFound => StatusCode::NoSuchFile,
        io::ErrorKind::PermissionDenied => StatusCode::PermissionDenied,
        io::ErrorKind::Unsupported => StatusCode::OpUnsupported,
        io::ErrorKind::InvalidInput | io::ErrorKind::InvalidData => StatusCode::BadMessage,
        _ => StatusCode::Failure,
    }
}

/// The message OpenSSH sends with `code` (its `status_to_message`).
fn message(code: StatusCode) -> &'static str {
    match code {
        StatusCode::Ok => "Success",
        StatusCode::Eof => "End of file",
        StatusCode::NoSuchFile => "No such file",
        StatusCode::PermissionDenied => "Permission denied",
        StatusCode::Failure => "Failure",
        StatusCode::BadMessage => "Bad message",
        StatusCode::NoConnection => "No connection",
        StatusCode::ConnectionLost => "Connection lost",
        StatusCode::OpUnsupported => "Operation unsupported",
    }
}

/// A status reply.
pub(crate) fn status(id: u32, code: StatusCode) -> Packet {
    Packet::Status(Status {
        id,
        status_code: code,
        error_message: message(code).to_owned(),
        language_tag: String::new(),
    })
}

/// The status reply for `error`.
pub(crate) fn error(id: u32, error: &io::Error) -> Packet {
    status(id, code_of(error))
}

/// `Ok` for success, else the status for the error.
pub(crate) fn done(id: u32, result: io::Result<()>) -> Packet {
    match result {
        Ok(()) => status(id, StatusCode::Ok),
        Err(e) => error(id, &e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_map_as_openssh_maps_them() {
        let os = |errno: rustix::io::Errno| io::Error::from(errno);
        use rustix::io::Errno;
        assert_eq!(code_of(&os(Errno::NOENT)), StatusCode::NoSuchFile);
        assert_eq!(code_of(&os(Errno::ACCESS)), StatusCode::PermissionDenied);
        assert_eq!(code_of(&os(Errno::NOSYS)), StatusCode::OpUnsupported);
        assert_eq!(code_of(&os(Errno::EXIST)), StatusCode::Failure);
        assert_eq!(code_of(&os(Errno::NOTEMPTY)), StatusCode::Failure);
    }
}
