//! git over SSH: the commands `git-upload-pack '<name>.git'` and
//! `git-receive-pack '<name>.git'`, served by `alknet-git` in place of a
//! process. This is the piece that joins the two crates, so that neither
//! protocol crate depends on the other.

use alknet_git::{Git, Mode, Service};
use alknet_ssh::{Command, CommandRequest};
use futures::future::BoxFuture;
use tokio::io::AsyncWriteExt;

/// The exit status git's own server gives a request it refuses.
const REFUSED: u32 = 128;

/// One git service on SSH `exec` requests.
pub struct GitCommand {
    pub git: Git,
    pub service: Service,
}

impl Command for GitCommand {
    fn serve<'a>(&'a self, request: CommandRequest<'a>) -> BoxFuture<'a, u32> {
        Box::pin(async move {
            let CommandRequest {
                args,
                env,
                io,
                mut stderr,
            } = request;
            let [repo] = args.as_slice() else {
                let usage = format!("alknet: usage: {} '<name>.git'\n", self.service.name());
                let _ = stderr.write_all(usage.as_bytes()).await;
                return REFUSED;
            };
            let protocol = env
                .iter()
                .find(|(name, _)| name == "GIT_PROTOCOL")
                .map(|(_, value)| value.as_str());
            let running = self
                .git
                .open(&io.info, repo, self.service, Mode::Stateful, protocol);
            let running = match running {
                Ok(running) => running,
                Err(refusal) => {
                    tracing::info!(
                        repo,
                        service = self.service.name(),
                        "git over SSH refused: {refusal}"
                    );
                    let _ = stderr
                        .write_all(format!("alknet: {refusal}\n").as_bytes())
                        .await;
                    let _ = stderr.flush().await;
                    return REFUSED;
                }
            };
            let status = running.converse(io.reader, io.writer, Some(stderr)).await;
            status
                .and_then(|status| status.code())
                .and_then(|code| u32::try_from(code).ok())
                .unwrap_or(REFUSED)
        })
    }
}
