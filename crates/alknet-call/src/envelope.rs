//! `EventEnvelope`, the only unit of the call protocol (PROTOCOL.md §4).
//!
//! Parsing is two-staged on purpose. [`EventEnvelope::parse`] checks only the
//! envelope's shape — an object with a string `type`, a non-empty `id` of at
//! most 256 bytes and an object `payload` — because a frame that fails it
//! cannot be answered (its id is untrusted). [`EventEnvelope::event`] then reads
//! the payload of a known type; a bad payload *can* be answered, with the
//! error [`PayloadError::to_call_error`] gives.

use alknet_core::Identity;
use serde::Serialize;
use serde_json::{Map, Value};

use crate::error::CallError;

/// Longest envelope `id`, in bytes.
pub const MAX_ID_BYTES: usize = 256;
/// Longest operation name, in bytes.
pub const MAX_OPERATION_NAME_BYTES: usize = 256;

/// The five event types.
pub mod types {
    /// Starts a request (caller → callee).
    pub const REQUESTED: &str = "call.requested";
    /// One output (callee → caller).
    pub const RESPONDED: &str = "call.responded";
    /// A subscription's normal end (callee → caller).
    pub const COMPLETED: &str = "call.completed";
    /// Cancels a request (caller → callee).
    pub const ABORTED: &str = "call.aborted";
    /// A request's failure (callee → caller).
    pub const ERROR: &str = "call.error";
}

/// `{"type", "id", "payload"}`. Unknown members are dropped when parsing.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct EventEnvelope {
    /// The event type (see [`types`]); unknown types are kept, then ignored.
    #[serde(rename = "type")]
    pub event_type: String,
    /// The request id the event belongs to.
    pub id: String,
    /// The event's payload.
    pub payload: Map<String, Value>,
}

/// Why bytes are not a valid envelope (§4.1).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum EnvelopeError {
    /// Not UTF-8 JSON.
    #[error("not JSON: {0}")]
    Json(String),
    /// JSON, but not an object.
    #[error("envelope is not a JSON object")]
    NotObject,
    /// No string `type`.
    #[error("envelope has no string `type`")]
    Type,
    /// No string `id`.
    #[error("envelope has no string `id`")]
    Id,
    /// `id` is the empty string.
    #[error("envelope `id` is empty")]
    EmptyId,
    /// `id` is longer than [`MAX_ID_BYTES`].
    #[error("envelope `id` is longer than {MAX_ID_BYTES} bytes")]
    LongId,
    /// No object `payload`.
    #[error("envelope has no object `payload`")]
    Payload,
}

/// A known event, read from its envelope's payload.
#[derive(Clone, Debug, PartialEq)]
pub enum Event {
    /// `call.requested`.
    Requested(CallRequest),
    /// `call.responded` with its output.
    Responded(Value),
    /// `call.completed`.
    Completed,
    /// `call.aborted`.
    Aborted,
    /// `call.error`.
    Error(CallError),
    /// A type this implementation does not know: ignored (§4.1).
    Unknown,
}

/// The payload of `call.requested`.
#[derive(Clone, Debug, PartialEq)]
pub struct CallRequest {
    /// The operation as sent, usually with a leading slash.
    pub operation_id: String,
    /// The input; `{}` when absent.
    pub input: Value,
    /// A bearer token for this request only.
    pub auth_token: Option<String>,
    /// The original caller of a relayed request (metadata only).
    pub forwarded_for: Option<Identity>,
}

impl CallRequest {
    /// A request for `operation_id` with `input`.
    pub fn new(operation_id: impl Into<String>, input: Value) -> Self {
        Self {
            operation_id: operation_id.into(),
            input,
            auth_token: None,
            forwarded_for: None,
        }
    }

    /// The registry name: `operation_id` without one leading slash (§4.2).
    pub fn operation_name(&self) -> &str {
        self.operation_id
            .strip_prefix('/')
            .unwrap_or(&self.operation_id)
    }
}

/// A payload that does not fit its event type.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PayloadError {
    /// A `call.requested` payload breaks its rules; the callee answers it.
    #[error("invalid request payload: {0}")]
    Request(String),
    /// A `call.responded` or `call.error` payload is malformed; the caller
    /// fails that call locally.
    #[error("invalid response payload")]
    Response,
}

impl PayloadError {
    /// The CallError this failure produces (§4.2).
    pub fn to_call_error(&self) -> CallError {
        match self {
            Self::Request(_) => CallError::invalid_input(self.to_string()),
            Self::Response => CallError::internal(self.to_string()),
        }
    }
}

impl EventEnvelope {
    /// Checks and reads one envelope from UTF-8 JSON bytes.
    pub fn parse(bytes: &[u8]) -> Result<Self, EnvelopeError> {
        // Straight into the three members: no map is built for the envelope
        // itself, and unknown members are skipped without being kept.
        let members: Members = serde_json::from_slice(bytes).map_err(|e| match e.classify() {
            serde_json::error::Category::Data => EnvelopeError::NotObject,
            _ => EnvelopeError::Json(e.to_string()),
        })?;
        let Some(Value::String(event_type)) = members.event_type else {
            return Err(EnvelopeError::Type);
        };
        let Some(Value::String(id)) = members.id else {
            return Err(EnvelopeError::Id);
        };
        if id.is_empty() {
            return Err(EnvelopeError::EmptyId);
        }
        if id.len() > MAX_ID_BYTES {
            return Err(EnvelopeError::LongId);
        }
        let Some(Value::Object(payload)) = members.payload else {
            return Err(EnvelopeError::Payload);
        };
        Ok(Self {
            event_type,
            id,
            payload,
        })
    }

    /// The envelope as compact UTF-8 JSON.
    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("an envelope of strings and JSON values always serializes")
    }

    fn new(event_type: &str, id: impl Into<String>, payload: Map<String, Value>) -> Self {
        Self {
            event_type: event_type.to_owned(),
            id: id.into(),
            payload,
        }
    }

    /// `call.requested` for `request`.
    pub fn requested(id: impl Into<String>, request: &CallRequest) -> Self {
        let mut payload = Map::new();
        payload.insert(
            "operationId".into(),
            Value::String(request.operation_id.clone()),
        );
        payload.insert("input".into(), request.input.clone());
        if let Some(token) = &request.auth_token {
            payload.insert("auth_token".into(), Value::String(token.clone()));
        }
        if let Some(identity) = &request.forwarded_for {
            let identity = serde_json::to_value(identity).expect("an identity always serializes");
            payload.insert("forwarded_for".into(), identity);
        }
        Self::new(types::REQUESTED, id, payload)
    }

    /// `call.responded` with `output`.
    pub fn responded(id: impl Into<String>, output: Value) -> Self {
        let mut payload = Map::new();
        payload.insert("output".into(), output);
        Self::new(types::RESPONDED, id, payload)
    }

    /// `call.completed`, payload exactly `{}`.
    pub fn completed(id: impl Into<String>) -> Self {
        Self::new(types::COMPLETED, id, Map::new())
    }

    /// `call.aborted`, payload exactly `{}`.
    pub fn aborted(id: impl Into<String>) -> Self {
        Self::new(types::ABORTED, id, Map::new())
    }

    /// `call.error` with `error` (no `details` key when it has none).
    pub fn error(id: impl Into<String>, error: &CallError) -> Self {
        let Value::Object(payload) =
            serde_json::to_value(error).expect("a CallError always serializes")
        else {
            unreachable!("a CallError serializes to an object")
        };
        Self::new(types::ERROR, id, payload)
    }

    /// Reads the payload of a known event type.
    pub fn event(&self) -> Result<Event, PayloadError> {
        Event::read(&self.event_type, self.payload.clone())
    }
}

impl Event {
    /// Reads `payload` as the payload of an envelope of `event_type`, taking
    /// its values rather than copying them.
    pub fn read(event_type: &str, mut payload: Map<String, Value>) -> Result<Self, PayloadError> {
        match event_type {
            types::REQUESTED => CallRequest::read(payload).map(Event::Requested),
            types::RESPONDED => payload
                .remove("output")
                .map(Event::Responded)
                .ok_or(PayloadError::Response),
            types::COMPLETED => Ok(Event::Completed),
            types::ABORTED => Ok(Event::Aborted),
            types::ERROR => serde_json::from_value(Value::Object(payload))
                .map(Event::Error)
                .map_err(|_| PayloadError::Response),
            _ => Ok(Event::Unknown),
        }
    }
}

impl CallRequest {
    fn read(mut payload: Map<String, Value>) -> Result<Self, PayloadError> {
        let invalid = |reason: &str| PayloadError::Request(reason.to_owned());
        let operation_id = match payload.remove("operationId") {
            Some(Value::String(name)) => name,
            _ => return Err(invalid("operationId must be a string")),
        };
        if operation_id.len() > MAX_OPERATION_NAME_BYTES {
            return Err(invalid("operationId is longer than 256 bytes"));
        }
        let auth_token = match payload.remove("auth_token") {
            None => None,
            Some(Value::String(token)) => Some(token),
            Some(_) => return Err(invalid("auth_token must be a string")),
        };
        let forwarded_for = match payload.remove("forwarded_for") {
            None => None,
            Some(value) => Some(
                serde_json::from_value::<Identity>(value)
                    .map_err(|_| invalid("forwarded_for must be an identity"))?,
            ),
        };
        Ok(CallRequest {
            operation_id,
            input: payload
                .remove("input")
                .unwrap_or_else(|| Value::Object(Map::new())),
            auth_token,
            forwarded_for,
        })
    }
}

/// The members of an envelope that matter, as found: checked by
/// [`EventEnvelope::parse`]. A later duplicate member replaces an earlier
/// one, as it would in a JSON object read whole.
#[derive(Default)]
struct Members {
    event_type: Option<Value>,
    id: Option<Value>,
    payload: Option<Value>,
}

impl<'de> serde::Deserialize<'de> for Members {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(MembersVisitor)
    }
}

struct MembersVisitor;

impl<'de> serde::de::Visitor<'de> for MembersVisitor {
    type Value = Members;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<M: serde::de::MapAccess<'de>>(self, mut map: M) -> Result<Members, M::Error> {
        let mut members = Members::default();
        while let Some(key) = map.next_key::<Member>()? {
            let slot = match key {
                Member::Type => &mut members.event_type,
                Member::Id => &mut members.id,
                Member::Payload => &mut members.payload,
                Member::Other => {
                    map.next_value::<serde::de::IgnoredAny>()?;
                    continue;
                }
            };
            *slot = Some(map.next_value()?);
        }
        Ok(members)
    }
}

/// A member name, recognised without allocating it.
#[derive(serde::Deserialize)]
#[serde(field_identifier, rename_all = "lowercase")]
enum Member {
    Type,
    Id,
    Payload,
    #[serde(other)]
    Other,
}

/// An outgoing envelope, borrowed: serialized as an [`EventEnvelope`] would
/// be, without building its payload map first.
#[derive(Serialize)]
pub(crate) struct Outgoing<'a, P> {
    #[serde(rename = "type")]
    pub(crate) event_type: &'static str,
    pub(crate) id: &'a str,
    pub(crate) payload: P,
}

/// The payload of `call.responded`.
#[derive(Serialize)]
pub(crate) struct OutputPayload<'a> {
    pub(crate) output: &'a Value,
}

impl<'a> Outgoing<'a, OutputPayload<'a>> {
    /// `call.responded` with `output`.
    pub(crate) fn responded(id: &'a str, output: &'a Value) -> Self {
        Self {
            event_type: types::RESPONDED,
            id,
            payload: OutputPayload { output },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(value: Value) -> Result<EventEnvelope, EnvelopeError> {
        EventEnvelope::parse(&serde_json::to_vec(&value).unwrap())
    }

    #[test]
    fn envelopes_use_the_key_type_and_empty_payloads_are_exactly_empty() {
        // PROTOCOL.md §16 item 4.
        let completed: Value =
            serde_json::from_slice(&EventEnvelope::completed("s1").to_bytes()).unwrap();
        assert_eq!(
            completed,
            json!({"type":"call.completed","id":"s1","payload":{}})
        );
        let aborted: Value =
            serde_json::from_slice(&EventEnvelope::aborted("s1").to_bytes()).unwrap();
        assert_eq!(
            aborted,
            json!({"type":"call.aborted","id":"s1","payload":{}})
        );
        let error = EventEnvelope::error("r7", &CallError::operation_not_found("fs/missing"));
        let error: Value = serde_json::from_slice(&error.to_bytes()).unwrap();
        assert_eq!(
            error,
            json!({"type":"call.error","id":"r7","payload":{"code":"NOT_FOUND","message":"operation not found: fs/missing","retryable":false}})
        );
    }

    #[test]
    fn the_envelope_shape_is_checked() {
        assert!(matches!(
            EventEnvelope::parse(b"{nope"),
            Err(EnvelopeError::Json(_))
        ));
        assert!(matches!(
            EventEnvelope::parse(&[0xff, 0xfe]),
            Err(EnvelopeError::Json(_))
        ));
        assert_eq!(parse(json!([1])), Err(EnvelopeError::NotObject));
        assert_eq!(
            parse(json!({"id":"a","payload":{}})),
            Err(EnvelopeError::Type)
        );
        assert_eq!(
            parse(json!({"type":1,"id":"a","payload":{}})),
            Err(EnvelopeError::Type)
        );
        assert_eq!(
            parse(json!({"type":"x","payload":{}})),
            Err(EnvelopeError::Id)
        );
        assert_eq!(
            parse(json!({"type":"x","id":7,"payload":{}})),
            Err(EnvelopeError::Id)
        );
        assert_eq!(
            parse(json!({"type":"x","id":"","payload":{}})),
            Err(EnvelopeError::EmptyId)
        );
        let long = "i".repeat(MAX_ID_BYTES + 1);
        assert_eq!(
            parse(json!({"type":"x","id":long,"payload":{}})),
            Err(EnvelopeError::LongId)
        );
        let longest = "i".repeat(MAX_ID_BYTES);
        assert!(parse(json!({"type":"x","id":longest,"payload":{}})).is_ok());
        assert_eq!(
            parse(json!({"type":"x","id":"a"})),
            Err(EnvelopeError::Payload)
        );
        assert_eq!(
            parse(json!({"type":"x","id":"a","payload":[]})),
            Err(EnvelopeError::Payload)
        );
    }

    #[test]
    fn members_are_read_as_a_json_object_would_be() {
        // A later duplicate wins, escaped names are the same names, and
        // unknown members of any shape are skipped.
        let envelope = EventEnvelope::parse(
            br#"{"id":"a","extra":{"deep":[1,{"x":null}]},"type":"x","id":"b","payload":{"k":1}}"#,
        )
        .unwrap();
        assert_eq!(
            (envelope.event_type.as_str(), envelope.id.as_str()),
            ("x", "b")
        );
        assert_eq!(Value::Object(envelope.payload), json!({"k": 1}));
        for not_an_object in [&b"\"text\""[..], b"1", b"null", b"true"] {
            assert_eq!(
                EventEnvelope::parse(not_an_object),
                Err(EnvelopeError::NotObject)
            );
        }
        assert!(matches!(
            EventEnvelope::parse(br#"{"type":"x","id":"a","payload":{}} {}"#),
            Err(EnvelopeError::Json(_))
        ));
    }

    #[test]
    fn numbers_survive_a_parse_and_reserialize_unchanged() {
        // Found by the envelope_parser fuzz target: without serde_json's
        // correctly rounded float parsing, a relayed number could change.
        let raw = br#"{"type":"futu","id":"u","payload":{"x":[-0,333333333333133333333333333333333333333332143]}}"#;
        let once = EventEnvelope::parse(raw).unwrap();
        assert_eq!(EventEnvelope::parse(&once.to_bytes()).unwrap(), once);
    }

    #[test]
    fn unknown_members_and_types_are_ignored() {
        let envelope =
            parse(json!({"type":"call.future","id":"a","payload":{"x":1},"extra":true})).unwrap();
        assert_eq!(envelope.event(), Ok(Event::Unknown));
    }

    #[test]
    fn requests_round_trip_and_default_their_input() {
        let mut request = CallRequest::new("/fs/readFile", json!({"path":"/etc/hosts"}));
        request.auth_token = Some("alk_x".into());
        request.forwarded_for = Some(Identity::new("alice", ["fs:read"]));
        let bytes = EventEnvelope::requested("r1", &request).to_bytes();
        let parsed = EventEnvelope::parse(&bytes).unwrap();
        assert_eq!(parsed.event(), Ok(Event::Requested(request.clone())));
        assert_eq!(request.operation_name(), "fs/readFile");
        assert_eq!(
            CallRequest::new("fs/readFile", json!({})).operation_name(),
            "fs/readFile"
        );
        assert_eq!(
            CallRequest::new("//x", json!({})).operation_name(),
            "/x",
            "strips one slash only"
        );

        let bare =
            parse(json!({"type":"call.requested","id":"r2","payload":{"operationId":"/x/y"}}))
                .unwrap();
        match bare.event() {
            Ok(Event::Requested(r)) => assert_eq!(r.input, json!({})),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn malformed_request_payloads_say_why() {
        let cases = [
            (json!({}), "operationId must be a string"),
            (json!({"operationId": 3}), "operationId must be a string"),
            (
                json!({"operationId": "/x", "auth_token": 1}),
                "auth_token must be a string",
            ),
            (
                json!({"operationId": "/x", "forwarded_for": {"scopes": []}}),
                "forwarded_for must be an identity",
            ),
            (
                json!({"operationId": "x".repeat(257)}),
                "operationId is longer than 256 bytes",
            ),
        ];
        for (payload, reason) in cases {
            let envelope =
                parse(json!({"type":"call.requested","id":"r","payload":payload})).unwrap();
            let error = envelope.event().unwrap_err().to_call_error();
            assert_eq!(error.code, "INVALID_INPUT");
            assert_eq!(error.message, format!("invalid request payload: {reason}"));
        }
    }

    #[test]
    fn malformed_responses_fail_locally_as_internal() {
        for payload in [
            json!({}),
            json!({"code":"X","message":"m"}),
            json!({"code":1,"message":"m","retryable":false}),
        ] {
            let kind = if payload.get("code").is_some() {
                "call.error"
            } else {
                "call.responded"
            };
            let envelope = parse(json!({"type":kind,"id":"r","payload":payload})).unwrap();
            let error = envelope.event().unwrap_err().to_call_error();
            assert_eq!(
                (error.code.as_str(), error.message.as_str()),
                ("INTERNAL", "invalid response payload")
            );
        }
        let null_output =
            parse(json!({"type":"call.responded","id":"r","payload":{"output":null}})).unwrap();
        assert_eq!(null_output.event(), Ok(Event::Responded(Value::Null)));
    }
}
