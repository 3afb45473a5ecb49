//! `alknet/git`: the git-daemon protocol on a QUIC or TLS stream.
//!
//! The client's first bytes are one pkt-line naming the service and the
//! repository (`git-upload-pack /team/app.git\0host=…\0\0version=2\0`), as
//! `git daemon` reads it; what follows is the pack conversation. The
//! identity is the client certificate's (anonymous clients read public
//! repositories). A refusal is an `ERR` pkt-line, which `git` prints as
//! `fatal: remote error: …`. Stock git reaches it through
//! `ext::alknet proxy --alpn alknet/git HOST:PORT %S <name>.git`.

use std::time::Duration;

use alknet_core::{Connection, HandlerError, Protocol, ProtocolHandler, close};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::pack::{Mode, Service};
use crate::{ALPN, Git};

/// How long a client has to send its request line.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// The longest request line taken (git's own limit is a pkt-line, 65520).
const MAX_REQUEST: usize = 4096;
/// How long a finished conversation waits for the client to close.
const LINGER: Duration = Duration::from_secs(10);
/// How long a client that broke the protocol has to read its `ERR` line.
const VIOLATION_LINGER: Duration = Duration::from_secs(2);

/// A parsed request line.
#[derive(Debug, PartialEq, Eq)]
pub struct Request {
    /// The service.
    pub service: Service,
    /// The repository as the client spelled it.
    pub repo: String,
    /// `GIT_PROTOCOL`, from the extra parameters (`version=2`).
    pub protocol: Option<String>,
}

/// Why a request line is refused.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    /// Not a pkt-line, or longer than allowed.
    #[error("malformed request line")]
    Malformed,
    /// A service other than upload-pack and receive-pack.
    #[error("service not served (git-upload-pack and git-receive-pack are)")]
    UnknownService,
}

/// Parses one request line's payload (without its 4-byte length).
pub fn parse_request(payload: &[u8]) -> Result<Request, RequestError> {
    let mut fields = payload.split(|b| *b == 0);
    let first = fields.next().ok_or(RequestError::Malformed)?;
    let first = std::str::from_utf8(first).map_err(|_| RequestError::Malformed)?;
    let first = first.strip_suffix('\n').unwrap_or(first);
    let (service, repo) = first.split_once(' ').ok_or(RequestError::Malformed)?;
    let service = Service::parse(service).ok_or(RequestError::UnknownService)?;
    // `host=…`, then an empty field, then extra parameters (git daemon
    // joins them with `:` into GIT_PROTOCOL).
    let _host = fields.next();
    let mut extra = Vec::new();
    if fields.next().is_some_and(<[u8]>::is_empty) {
        for field in fields.filter(|f| !f.is_empty()) {
            extra.push(std::str::from_utf8(field).map_err(|_| RequestError::Malformed)?);
        }
    }
    Ok(Request {
        service,
        repo: repo.to_owned(),
        protocol: (!extra.is_empty()).then(|| extra.join(":")),
    })
}

/// Reads the request line's payload.
async fn read_request(reader: &mut (impl AsyncRead + Unpin)) -> Result<Vec<u8>, RequestError> {
    let mut length = [0u8; 4];
    reader
        .read_exact(&mut length)
        .await
        .map_err(|_| RequestError::Malformed)?;
    let length = std::str::from_utf8(&length)
        .ok()
        .and_then(|hex| usize::from_str_radix(hex, 16).ok())
        .filter(|n| (5..=MAX_REQUEST).contains(n))
        .ok_or(RequestError::Malformed)?;
    let mut payload = vec![0u8; length - 4];
    reader
        .read_exact(&mut payload)
        .await
        .map_err(|_| RequestError::Malformed)?;
    Ok(payload)
}

/// Writes `ERR <message>` as a pkt-line.
pub(crate) async fn write_error(writer: &mut (impl AsyncWrite + Unpin), message: &str) {
    let line = format!("ERR {message}\n");
    let _ = writer
        .write_all(format!("{:04x}{line}", line.len() + 4).as_bytes())
        .await;
    let _ = writer.flush().await;
}

/// Serves `alknet/git`.
#[derive(Clone, Debug)]
pub struct GitHandler {
    git: Git,
}

impl GitHandler {
    /// A handler serving `git`'s repositories.
    pub fn new(git: Git) -> Self {
        Self { git }
    }
}

impl ProtocolHandler for GitHandler {
    const PROTOCOL: Protocol = Protocol::new(&[ALPN]);

    async fn handle(&self, connection: Connection) -> Result<(), HandlerError> {
        let Some(mut stream) = connection.accept_bi().await? else {
            return Ok(());
        };
        let info = connection.info().clone();
        let request =
            match tokio::time::timeout(REQUEST_TIMEOUT, read_request(&mut stream.recv)).await {
                Ok(Ok(payload)) => parse_request(&payload),
                Ok(Err(error)) => Err(error),
                Err(_) => {
                    connection.close(close::REFUSED, "no request line in time");
                    return Ok(());
                }
            };
        let request = match request {
            Ok(request) => request,
            Err(error) => {
                write_error(&mut stream.send, &error.to_string()).await;
                let _ = stream.send.shutdown().await;
                // Closing now could discard the ERR line unsent.
                let _ = tokio::time::timeout(VIOLATION_LINGER, connection.accept_bi()).await;
                return Err(HandlerError::PeerViolation(error.to_string()));
            }
        };
        let running = self.git.open(
            &info,
            &request.repo,
            request.service,
            Mode::Stateful,
            request.protocol.as_deref(),
        );
        let running = match running {
            Ok(running) => running,
            Err(refusal) => {
                tracing::info!(remote = %connection.remote(), repo = %request.repo, "git request refused: {refusal}");
                write_error(&mut stream.send, &refusal.to_string()).await;
                let _ = stream.send.shutdown().await;
                let _ = tokio::time::timeout(LINGER, connection.accept_bi()).await;
                return Ok(());
            }
        };
        tokio::select! {
            _ = running.converse(&mut stream.recv, &mut stream.send, None::<tokio::io::Sink>) => {}
            () = connection.draining() => return Ok(()),
        }
        let _ = stream.send.shutdown().await;
        // The client closes once it has read everything.
        let _ = tokio::time::timeout(LINGER, connection.accept_bi()).await;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_lines_as_git_sends_them() {
        let request =
            parse_request(b"git-upload-pack /team/app.git\0host=h:1\0\0version=2\0").unwrap();
        assert_eq!(request.service, Service::UploadPack);
        assert_eq!(request.repo, "/team/app.git");
        assert_eq!(request.protocol.as_deref(), Some("version=2"));
        let request = parse_request(b"git-receive-pack r.git\0host=h\0").unwrap();
        assert_eq!(request.service, Service::ReceivePack);
        assert_eq!(request.protocol, None);
        let request = parse_request(b"git-upload-pack r\n").unwrap();
        assert_eq!(request.repo, "r");
        assert_eq!(
            parse_request(b"git-upload-archive r\0"),
            Err(RequestError::UnknownService)
        );
        assert_eq!(parse_request(b"nonsense"), Err(RequestError::Malformed));
        assert_eq!(parse_request(b"\xff\xfe r"), Err(RequestError::Malformed));
    }

    #[tokio::test]
    async fn request_lines_are_bounded() {
        let mut long = format!("{:04x}", MAX_REQUEST + 1).into_bytes();
        long.extend(vec![b'a'; MAX_REQUEST]);
        assert_eq!(
            read_request(&mut long.as_slice()).await,
            Err(RequestError::Malformed)
        );
        assert_eq!(
            read_request(&mut b"zzzz".as_slice()).await,
            Err(RequestError::Malformed)
        );
        assert_eq!(
            read_request(&mut b"0009r".as_slice()).await,
            Err(RequestError::Malformed)
        );
    }
}
