//! What the session actor takes ([`SessionMsg`]), and how a stream's reading
//! half ended ([`StreamEnding`]): the vocabulary between the actor, the
//! per-stream tasks and the session's handles.

use ractor::RpcReplyPort;
use tokio::sync::{OwnedSemaphorePermit, mpsc};
use tokio_util::sync::CancellationToken;

use crate::envelope::Incoming;
use crate::session::StreamKey;

/// What the session actor takes.
pub enum SessionMsg {
    /// A new stream, the queue of its writer, and the switch that resets it.
    Stream(StreamKey, mpsc::Sender<Vec<u8>>, CancellationToken),
    /// An envelope read from a stream, with one of its reader's permits: the
    /// reader may have only so many envelopes waiting for the actor (the
    /// backpressure on a peer that writes faster than the session decides).
    Inbound(StreamKey, Incoming, OwnedSemaphorePermit),
    /// A stream's reading half ended.
    StreamEnded(StreamKey, StreamEnding),
    /// A request's task sent its terminal envelope.
    Served(String, u64),
    /// Refuse new requests; stop once nothing is in flight.
    Drain,
    /// Open a stream of our own for this end's calls (QUIC, when every stream
    /// the peer opened has ended); the reply says whether one is attached.
    OpenStream(RpcReplyPort<bool>),
    /// A stream [`SessionMsg::OpenStream`] asked for is attached (or not).
    Opened(bool, RpcReplyPort<bool>),
    /// Aborts one of this end's calls (§9.1): `call.aborted` goes out on the
    /// stream that carried it, and late replies are ignored.
    Abort(String),
    /// The peer stopped reading: close the session (§5.5, §9.3).
    WriteStalled(StreamKey),
}

/// How a stream's reading half ended.
#[derive(Debug)]
pub enum StreamEnding {
    /// The peer finished it at a frame boundary: not an abort (§5.3 rule 3).
    Finished,
    /// A framing violation (§3.1): logged, and the stream (TCP+TLS: the
    /// connection) is closed.
    ProtocolError(String),
    /// Reset by the peer or lost with the connection: its requests are aborted.
    Lost(String),
}
