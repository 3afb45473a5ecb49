//! A call session's bookkeeping, sans-IO (docs/protocol.md §4.3, §5, §9).
//!
//! A session serves the remote end's requests and awaits replies to its own,
//! over any number of streams. What to do with each incoming envelope depends
//! only on this state: which of the peer's requests are in flight (and on which
//! stream), and which of our calls await replies (and whether one reply ends
//! them). [`SessionBook`] holds that state and answers with an [`Action`]; the
//! actor around it does the I/O and runs handlers. `A` is whatever cancels a
//! running handler, `W` whatever delivers a reply to a waiting caller.

use std::collections::hash_map::Entry;

use foldhash::HashMap;

use crate::envelope::{CallRequest, Event, EventEnvelope, Incoming, PayloadError};
use crate::error::CallError;

/// Identifies the stream an envelope arrived on (QUIC stream id; 0 elsewhere).
pub type StreamKey = u64;

/// Whether one reply ends an outgoing call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CallKind {
    /// Query or mutation: `call.responded` or `call.error` ends it.
    Unary,
    /// Subscription: only `call.completed` or `call.error` ends it.
    Subscription,
}

/// What a reply does to the outgoing call it belongs to.
#[derive(Clone, Debug, PartialEq)]
pub enum Delivery {
    /// An output; `last` when it ends the call.
    Output {
        /// The output.
        output: serde_json::Value,
        /// Whether the call is over.
        last: bool,
    },
    /// A subscription ended normally.
    Completed,
    /// The call failed (remotely, or locally for a malformed reply).
    Failed(CallError),
}

/// What the session must do about one incoming envelope.
#[derive(Debug)]
pub enum Action<A, W> {
    /// Nothing (unknown type, late reply, abort of an unknown id).
    Ignore,
    /// Answer the request at once with this envelope, on the stream it came on.
    Reply(StreamKey, EventEnvelope),
    /// Dispatch a new request; call [`SessionBook::serving`] with its canceller.
    Dispatch {
        /// Its stream.
        stream: StreamKey,
        /// Its id.
        id: String,
        /// The request.
        request: CallRequest,
    },
    /// Cancel this running handler (with cascade); send nothing more for it.
    Abort(A),
    /// Hand this to the waiting caller.
    Deliver(W, Delivery),
}

/// Why an outgoing call could not be registered.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CallRefused {
    /// The id is already awaiting a reply.
    #[error("request id {0} is already awaiting a reply")]
    Duplicate(String),
    /// The session has closed.
    #[error("connection closed")]
    Closed,
}

struct Served<A> {
    stream: StreamKey,
    canceller: A,
}

struct Awaited<W> {
    kind: CallKind,
    waiter: W,
}

/// One session's requests in flight, both directions.
///
/// Keyed by ids the peer picks, hashed with foldhash rather than SipHash: a
/// peer that found colliding ids could only slow its own session, whose
/// book never holds more than the in-flight cap, and every request hashes
/// its id twice.
pub struct SessionBook<A, W> {
    max_in_flight: usize,
    draining: bool,
    closed: bool,
    serving: HashMap<String, Option<Served<A>>>,
    awaiting: HashMap<String, Awaited<W>>,
}

impl<A, W: Clone> SessionBook<A, W> {
    /// A session serving at most `max_in_flight` of the peer's requests at once.
    pub fn new(max_in_flight: usize) -> Self {
        Self {
            max_in_flight,
            draining: false,
            closed: false,
            serving: HashMap::default(),
            awaiting: HashMap::default(),
        }
    }

    /// Whether [`SessionBook::drain`] was called.
    pub fn is_draining(&self) -> bool {
        self.draining
    }

    /// From now on, new requests get `UNAVAILABLE` `shutting down`.
    pub fn drain(&mut self) {
        self.draining = true;
    }

    /// The peer's requests in flight.
    pub fn in_flight(&self) -> usize {
        self.serving.len()
    }

    /// Our calls awaiting replies.
    pub fn awaiting(&self) -> usize {
        self.awaiting.len()
    }

    /// Decides what an incoming envelope means.
    pub fn receive(&mut self, stream: StreamKey, envelope: impl Into<Incoming>) -> Action<A, W> {
        let Incoming { id, event } = envelope.into();
        match event {
            Ok(Event::Requested(request)) => self.request(stream, id, request),
            Err(error @ PayloadError::Request(_)) => {
                Action::Reply(stream, EventEnvelope::error(id, &error.to_call_error()))
            }
            Ok(Event::Aborted) => match self.serving.remove(&id) {
                Some(Some(served)) => Action::Abort(served.canceller),
                // Aborted between acceptance and dispatch: nothing runs yet.
                Some(None) | None => Action::Ignore,
            },
            Ok(Event::Responded(output)) => match self.awaiting.get(&id) {
                None => Action::Ignore,
                Some(awaited) if awaited.kind == CallKind::Subscription => Action::Deliver(
                    awaited.waiter.clone(),
                    Delivery::Output {
                        output,
                        last: false,
                    },
                ),
                Some(_) => self.finish_call(&id, Delivery::Output { output, last: true }),
            },
            Ok(Event::Completed) => match self.awaiting.get(&id).map(|a| a.kind) {
                Some(CallKind::Subscription) => self.finish_call(&id, Delivery::Completed),
                // `call.completed` never ends a query: the reply is malformed.
                Some(CallKind::Unary) => self.finish_call(
                    &id,
                    Delivery::Failed(CallError::internal("invalid response payload")),
                ),
                None => Action::Ignore,
            },
            Ok(Event::Error(error)) => self.finish_call(&id, Delivery::Failed(error)),
            Err(error) => self.finish_call(&id, Delivery::Failed(error.to_call_error())),
            Ok(Event::Unknown) => {
                tracing::debug!(%id, "ignoring an envelope of unknown type");
                Action::Ignore
            }
        }
    }

    fn request(&mut self, stream: StreamKey, id: String, request: CallRequest) -> Action<A, W> {
        let refuse =
            |error: CallError| Action::Reply(stream, EventEnvelope::error(id.clone(), &error));
        let at_cap = self.serving.len() >= self.max_in_flight;
        match self.serving.entry(id.clone()) {
            Entry::Occupied(_) => refuse(CallError::invalid_input("duplicate request id")),
            Entry::Vacant(_) if at_cap => {
                refuse(CallError::unavailable("too many in-flight requests", 1))
            }
            Entry::Vacant(_) if self.draining => refuse(CallError::unavailable("shutting down", 1)),
            Entry::Vacant(slot) => {
                slot.insert(None);
                Action::Dispatch {
                    stream,
                    id,
                    request,
                }
            }
        }
    }

    /// Records the canceller of a request [`Action::Dispatch`] handed out.
    /// Returns it back if the request was aborted meanwhile.
    pub fn serving(&mut self, id: &str, stream: StreamKey, canceller: A) -> Result<(), A> {
        match self.serving.get_mut(id) {
            Some(slot @ None) => {
                *slot = Some(Served { stream, canceller });
                Ok(())
            }
            _ => Err(canceller),
        }
    }

    /// A request we served sent its terminal envelope (or failed to dispatch).
    pub fn served(&mut self, id: &str) {
        self.serving.remove(id);
    }

    /// Like [`SessionBook::served`], but only if the entry is the one `is_it`
    /// recognises: a handler that finished after its id was aborted and reused
    /// must not retire the newer request.
    pub fn served_if(&mut self, id: &str, is_it: impl FnOnce(&A) -> bool) {
        let matches =
            matches!(self.serving.get(id), Some(Some(served)) if is_it(&served.canceller));
        if matches {
            self.serving.remove(id);
        }
    }

    /// The peer reset a stream or stopped reading it (§5.3 rule 4): the
    /// requests it carried are aborted.
    pub fn stream_reset(&mut self, stream: StreamKey) -> Vec<A> {
        let ids: Vec<String> = self
            .serving
            .iter()
            .filter(|(_, served)| served.as_ref().is_some_and(|s| s.stream == stream))
            .map(|(id, _)| id.clone())
            .collect();
        ids.into_iter()
            .filter_map(|id| self.serving.remove(&id).flatten().map(|s| s.canceller))
            .collect()
    }

    /// Registers one of our calls before its `call.requested` is sent.
    pub fn call(&mut self, id: String, kind: CallKind, waiter: W) -> Result<(), CallRefused> {
        if self.closed {
            return Err(CallRefused::Closed);
        }
        if self.awaiting.contains_key(&id) {
            return Err(CallRefused::Duplicate(id));
        }
        self.awaiting.insert(id, Awaited { kind, waiter });
        Ok(())
    }

    /// Forgets one of our calls (we aborted it, or its timer fired); late
    /// replies for it are then ignored (§5.2 rule 3).
    pub fn forget(&mut self, id: &str) -> Option<W> {
        self.awaiting.remove(id).map(|a| a.waiter)
    }

    fn finish_call(&mut self, id: &str, delivery: Delivery) -> Action<A, W> {
        match self.awaiting.remove(id) {
            Some(awaited) => Action::Deliver(awaited.waiter, delivery),
            None => Action::Ignore,
        }
    }

    /// The session ended (§9.3): every handler we run is to be aborted, every
    /// call we await fails with `INTERNAL` `connection closed`.
    pub fn close(&mut self) -> (Vec<A>, Vec<(W, Delivery)>) {
        self.closed = true;
        let aborts = self
            .serving
            .drain()
            .filter_map(|(_, s)| s.map(|s| s.canceller))
            .collect();
        let failures = self
            .awaiting
            .drain()
            .map(|(_, a)| {
                (
                    a.waiter,
                    Delivery::Failed(CallError::internal("connection closed")),
                )
            })
            .collect();
        (aborts, failures)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorCode;
    use serde_json::json;

    type Book = SessionBook<&'static str, u32>;

    fn requested(id: &str) -> EventEnvelope {
        EventEnvelope::requested(id, &CallRequest::new("/test/op", json!({})))
    }

    fn dispatch(book: &mut Book, stream: StreamKey, id: &str, canceller: &'static str) {
        match book.receive(stream, requested(id)) {
            Action::Dispatch { id: got, .. } => assert_eq!(got, id),
            other => panic!("expected dispatch, got {other:?}"),
        }
        book.serving(id, stream, canceller).unwrap();
    }

    fn error_of(action: Action<&'static str, u32>) -> CallError {
        match action {
            Action::Reply(_, envelope) => match envelope.event() {
                Ok(Event::Error(error)) => error,
                other => panic!("expected call.error, got {other:?}"),
            },
            other => panic!("expected a reply, got {other:?}"),
        }
    }

    /// Conformance item 18 (docs/protocol.md §16).
    #[test]
    fn a_duplicate_in_flight_id_is_refused_and_the_first_continues() {
        let mut book = Book::new(256);
        dispatch(&mut book, 0, "a", "cancel-a");
        let error = error_of(book.receive(0, requested("a")));
        assert_eq!(error, CallError::invalid_input("duplicate request id"));
        assert_eq!(book.in_flight(), 1);
        // Once the first is done, the id may be used again.
        book.served("a");
        dispatch(&mut book, 0, "a", "cancel-a2");
    }

    /// Conformance item 19 (docs/protocol.md §16).
    #[test]
    fn the_request_over_the_cap_is_unavailable_and_retryable() {
        let mut book = Book::new(256);
        for i in 0..256 {
            let id: &'static str = Box::leak(format!("r{i}").into_boxed_str());
            dispatch(&mut book, 0, id, "c");
        }
        let error = error_of(book.receive(0, requested("r256")));
        assert_eq!(error.code, ErrorCode::Unavailable);
        assert_eq!(error.message, "too many in-flight requests");
        assert!(error.retryable);
        assert_eq!(error.details, Some(json!({"retry_after": 1})));
        book.served("r0");
        dispatch(&mut book, 0, "r256", "c");
    }

    /// Conformance items 20 and 22 (docs/protocol.md §16).
    #[test]
    fn aborts_cancel_running_requests_and_ignore_unknown_ids() {
        let mut book = Book::new(8);
        dispatch(&mut book, 4, "a", "cancel-a");
        assert!(matches!(
            book.receive(4, EventEnvelope::aborted("a")),
            Action::Abort("cancel-a")
        ));
        assert_eq!(book.in_flight(), 0);
        assert!(matches!(
            book.receive(4, EventEnvelope::aborted("a")),
            Action::Ignore
        ));
        assert!(matches!(
            book.receive(4, EventEnvelope::aborted("nope")),
            Action::Ignore
        ));
        // An abort that overtakes dispatch leaves nothing to run.
        assert!(matches!(
            book.receive(0, requested("b")),
            Action::Dispatch { .. }
        ));
        assert!(matches!(
            book.receive(0, EventEnvelope::aborted("b")),
            Action::Ignore
        ));
        assert_eq!(book.serving("b", 0, "cancel-b"), Err("cancel-b"));
    }

    /// Conformance item 25 (docs/protocol.md §16).
    #[test]
    fn replies_correlate_by_id_whatever_the_stream() {
        let mut book = Book::new(8);
        book.call("q1".into(), CallKind::Unary, 1).unwrap();
        book.call("s1".into(), CallKind::Subscription, 2).unwrap();
        // Subscription items keep the call open; the query's reply ends it.
        let item = book.receive(9, EventEnvelope::responded("s1", json!(1)));
        assert!(matches!(
            item,
            Action::Deliver(2, Delivery::Output { last: false, .. })
        ));
        let reply = book.receive(7, EventEnvelope::responded("q1", json!("pong")));
        match reply {
            Action::Deliver(1, Delivery::Output { output, last: true }) => {
                assert_eq!(output, json!("pong"))
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            book.receive(3, EventEnvelope::completed("s1")),
            Action::Deliver(2, Delivery::Completed)
        ));
        assert_eq!(book.awaiting(), 0);
        // Late replies are ignored.
        assert!(matches!(
            book.receive(7, EventEnvelope::responded("q1", json!(2))),
            Action::Ignore
        ));
    }

    /// Conformance item 24 (docs/protocol.md §16).
    #[test]
    fn closing_aborts_what_we_serve_and_fails_what_we_await() {
        let mut book = Book::new(8);
        dispatch(&mut book, 0, "a", "cancel-a");
        dispatch(&mut book, 4, "b", "cancel-b");
        book.call("mine".into(), CallKind::Unary, 7).unwrap();
        let (mut aborts, failures) = book.close();
        aborts.sort();
        assert_eq!(aborts, vec!["cancel-a", "cancel-b"]);
        assert_eq!(
            failures,
            vec![(
                7,
                Delivery::Failed(CallError::internal("connection closed"))
            )]
        );
        assert_eq!((book.in_flight(), book.awaiting()), (0, 0));
    }

    #[test]
    fn a_reset_stream_aborts_only_its_own_requests() {
        let mut book = Book::new(8);
        dispatch(&mut book, 0, "a", "cancel-a");
        dispatch(&mut book, 4, "b", "cancel-b");
        assert_eq!(book.stream_reset(4), vec!["cancel-b"]);
        assert_eq!(book.in_flight(), 1);
    }

    #[test]
    fn malformed_payloads_are_answered_or_failed_locally() {
        let mut book = Book::new(8);
        let bad_request =
            EventEnvelope::parse(br#"{"type":"call.requested","id":"x","payload":{}}"#).unwrap();
        let error = error_of(book.receive(0, bad_request));
        assert_eq!(
            error.message,
            "invalid request payload: operationId must be a string"
        );
        book.call("q".into(), CallKind::Unary, 1).unwrap();
        let bad_reply =
            EventEnvelope::parse(br#"{"type":"call.responded","id":"q","payload":{}}"#).unwrap();
        assert!(matches!(
            book.receive(0, bad_reply),
            Action::Deliver(1, Delivery::Failed(e)) if e == CallError::internal("invalid response payload")
        ));
        book.call("q2".into(), CallKind::Unary, 2).unwrap();
        assert!(matches!(
            book.receive(0, EventEnvelope::completed("q2")),
            Action::Deliver(2, Delivery::Failed(_))
        ));
    }

    /// Conformance item 5 (docs/protocol.md §16).
    #[test]
    fn unknown_types_are_ignored_and_the_next_request_answered() {
        let mut book = Book::new(8);
        let unknown =
            EventEnvelope::parse(br#"{"type":"call.future","id":"u","payload":{}}"#).unwrap();
        assert!(matches!(book.receive(0, unknown), Action::Ignore));
        assert!(matches!(
            book.receive(0, requested("n")),
            Action::Dispatch { .. }
        ));
    }

    #[test]
    fn draining_refuses_new_requests_with_shutting_down() {
        let mut book = Book::new(8);
        book.drain();
        let error = error_of(book.receive(0, requested("late")));
        assert_eq!(
            (error.code.as_str(), error.message.as_str()),
            ("UNAVAILABLE", "shutting down")
        );
    }

    #[test]
    fn our_own_ids_are_unique_while_awaited() {
        let mut book = Book::new(8);
        book.call("x".into(), CallKind::Unary, 1).unwrap();
        assert_eq!(
            book.call("x".into(), CallKind::Unary, 2),
            Err(CallRefused::Duplicate("x".into()))
        );
        assert_eq!(book.forget("x"), Some(1));
        book.call("x".into(), CallKind::Unary, 3).unwrap();
    }
}
