//! SFTP as the SSH subsystem `sftp`: the piece that joins `alknet-sftp` to
//! `alknet-ssh`, so that neither protocol crate depends on the other.

use alknet_core::Identity;
use alknet_sftp::Sftp;
use alknet_ssh::{Subsystem, SubsystemIo};
use futures::future::BoxFuture;

/// The SFTP service on SSH session channels.
pub struct SftpSubsystem(pub Sftp);

impl Subsystem for SftpSubsystem {
    fn admit(&self, identity: Option<&Identity>) -> Result<(), String> {
        self.0.admits(identity)
    }

    fn serve<'a>(&'a self, io: SubsystemIo<'a>) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            if let Err(error) = self.0.serve(io.reader, io.writer, io.info).await {
                tracing::info!("SFTP session over SSH ended: {error}");
            }
        })
    }
}
