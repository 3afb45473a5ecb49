//! `EventEnvelope`, the only unit of the call protocol (docs/protocol.md §4).
//!
//! Parsing is two-staged on purpose. [`EventEnvelope::parse`] checks only the
//! envelope's shape — an object with a string `type`, a non-empty `id` of at
//! most 256 bytes and an object `payload` — because a frame that fails it
//! cannot be answered (its id is untrusted). [`EventEnvelope::event`] then reads
//! the payload of a known type; a bad payload *can* be answered, with the
//! error [`PayloadError::to_call_error`] gives.
//!
//! Sessions use [`Incoming::parse`], which gives the same two answers from one
//! pass over the bytes: a request's input goes straight from the bytes into
//! its value, with no envelope or payload map built on the way.

use std::borrow::Cow;

use alknet_core::Identity;
use serde::Serialize;
use serde_json::value::RawValue;
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
#[non_exhaustive]
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
#[non_exhaustive]
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
        let members = Checked::read(utf8(bytes)?)?;
        let payload = read_object(members.payload.get())?;
        Ok(Self {
            event_type: members.event_type.into_owned(),
            id: members.id,
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
        match TypeName::of(event_type) {
            TypeName::Error => Event::error(payload),
            kind => Event::of(kind, PayloadMembers::take(&mut payload)),
        }
    }

    /// The event of a type other than `call.error` (whose payload is read
    /// whole, by [`Event::error`]), from the payload members it uses.
    fn of(kind: TypeName, members: PayloadMembers) -> Result<Self, PayloadError> {
        match kind {
            TypeName::Requested => CallRequest::from_members(members).map(Event::Requested),
            TypeName::Responded => Event::responded(members),
            TypeName::Completed => Ok(Event::Completed),
            TypeName::Aborted => Ok(Event::Aborted),
            TypeName::Unknown => Ok(Event::Unknown),
            // Not asked for by the readers, which read a `call.error` whole;
            // these members cannot make one.
            TypeName::Error => Err(PayloadError::Response),
        }
    }

    fn error(payload: Map<String, Value>) -> Result<Self, PayloadError> {
        serde_json::from_value(Value::Object(payload))
            .map(Event::Error)
            .map_err(|_| PayloadError::Response)
    }

    fn responded(members: PayloadMembers) -> Result<Self, PayloadError> {
        members
            .output
            .map(Event::Responded)
            .ok_or(PayloadError::Response)
    }
}

impl CallRequest {
    /// Checks the members of a `call.requested` payload (§4.2), in the order
    /// that picks which reason a payload with several faults gets.
    fn from_members(members: PayloadMembers) -> Result<Self, PayloadError> {
        let invalid = |reason: &str| PayloadError::Request(reason.to_owned());
        let operation_id = match members.operation_id {
            Some(Value::String(name)) => name,
            _ => return Err(invalid("operationId must be a string")),
        };
        if operation_id.len() > MAX_OPERATION_NAME_BYTES {
            return Err(invalid("operationId is longer than 256 bytes"));
        }
        let auth_token = match members.auth_token {
            None => None,
            Some(Value::String(token)) => Some(token),
            Some(_) => return Err(invalid("auth_token must be a string")),
        };
        let forwarded_for = match members.forwarded_for {
            None => None,
            Some(value) => Some(
                serde_json::from_value::<Identity>(value)
                    .map_err(|_| invalid("forwarded_for must be an identity"))?,
            ),
        };
        Ok(CallRequest {
            operation_id,
            input: members.input.unwrap_or_else(|| Value::Object(Map::new())),
            auth_token,
            forwarded_for,
        })
    }
}

/// An envelope as a session applies it: its id, and its payload already read
/// as the event its type names. [`Incoming::parse`] reads a request's or a
/// reply's payload straight into its fields, with no payload map in between:
/// most of what reading an envelope costs is building and dropping such maps.
#[derive(Clone, Debug, PartialEq)]
pub struct Incoming {
    /// The request id the event belongs to.
    pub id: String,
    /// The event, or why its payload does not fit its type.
    pub event: Result<Event, PayloadError>,
}

impl Incoming {
    /// Checks one envelope from UTF-8 JSON bytes as [`EventEnvelope::parse`]
    /// does, and reads its payload as [`EventEnvelope::event`] does. One
    /// difference: payload members the event does not use are only checked to
    /// be JSON, not decoded, so what fails only in decoding (JSON's nesting
    /// limit, a number out of range, an escape that is no character) does not
    /// fail them.
    ///
    /// A payload whose values would take more memory than
    /// [`decoded_budget`] allows is not decoded: a request is answered
    /// `INVALID_INPUT`, a reply fails its call locally, and an event that
    /// needs no payload is read without it.
    pub fn parse(bytes: &[u8]) -> Result<Self, EnvelopeError> {
        // Well-formed envelopes are read in one pass. Anything else — a
        // duplicate member, an error's payload, any fault — is read again by
        // the general path, which alone decides what is wrong.
        let text = utf8(bytes)?;
        if let Some(refused) = Self::refuse_if_too_costly(text)? {
            return Ok(refused);
        }
        match serde_json::from_str::<OnePass>(text) {
            Ok(OnePass(incoming)) => Ok(incoming),
            Err(_) => Self::parse_in_two_passes(text),
        }
    }

    /// Estimates what decoding the payload would cost before any value is
    /// built, and gives the envelope read without its payload if that is
    /// over budget. Only frames large enough to possibly be over are scanned
    /// (then delimited by [`Checked::read`], which builds no value), so
    /// ordinary frames pay nothing.
    fn refuse_if_too_costly(text: &str) -> Result<Option<Self>, EnvelopeError> {
        let budget = decoded_budget(text.len());
        if text.len().saturating_mul(DECODED_BYTES_PER_VALUE) <= budget {
            return Ok(None);
        }
        let members = Checked::read(text)?;
        let estimate = value_count(members.payload.get()).saturating_mul(DECODED_BYTES_PER_VALUE);
        if estimate <= budget {
            return Ok(None);
        }
        let event = match TypeName::of(&members.event_type) {
            TypeName::Requested => Err(PayloadError::Request(format!(
                "payload would decode to about {estimate} bytes, more than {budget}"
            ))),
            TypeName::Responded | TypeName::Error => Err(PayloadError::Response),
            kind => Event::of(kind, PayloadMembers::default()),
        };
        Ok(Some(Self {
            id: members.id,
            event,
        }))
    }

    fn parse_in_two_passes(text: &str) -> Result<Self, EnvelopeError> {
        let members = Checked::read(text)?;
        let payload = members.payload.get();
        let event = match TypeName::of(&members.event_type) {
            TypeName::Error => Event::error(read_object(payload)?),
            kind => Event::of(kind, read_object::<Object<_>>(payload)?.0),
        };
        Ok(Self {
            id: members.id,
            event,
        })
    }

    /// Whether this answers a call of the receiving end (an output, an end
    /// or an error, well-formed or not) rather than asking something of it.
    pub fn is_reply(&self) -> bool {
        matches!(
            self.event,
            Ok(Event::Responded(_) | Event::Completed | Event::Error(_))
                | Err(PayloadError::Response)
        )
    }
}

impl From<EventEnvelope> for Incoming {
    fn from(envelope: EventEnvelope) -> Self {
        Self {
            event: Event::read(&envelope.event_type, envelope.payload),
            id: envelope.id,
        }
    }
}

/// An envelope read in one pass, its members in any order: the payload
/// straight into the members a request or a reply uses, before its type may
/// be known. Fails on anything it does not read exactly as
/// [`Incoming::parse_in_two_passes`] would, which then reads it instead.
struct OnePass(Incoming);

/// An envelope's type, recognised without allocating it. Every reader
/// matches on it, so that each handles every type.
#[derive(Clone, Copy)]
enum TypeName {
    Requested,
    Responded,
    Completed,
    Aborted,
    Error,
    Unknown,
}

impl TypeName {
    fn of(event_type: &str) -> Self {
        match event_type {
            types::REQUESTED => Self::Requested,
            types::RESPONDED => Self::Responded,
            types::COMPLETED => Self::Completed,
            types::ABORTED => Self::Aborted,
            types::ERROR => Self::Error,
            _ => Self::Unknown,
        }
    }
}

impl<'de> serde::Deserialize<'de> for TypeName {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = TypeName;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("an event type")
            }

            fn visit_str<E: serde::de::Error>(self, event_type: &str) -> Result<TypeName, E> {
                Ok(TypeName::of(event_type))
            }
        }
        deserializer.deserialize_str(Visitor)
    }
}

impl<'de> serde::Deserialize<'de> for OnePass {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(OnePassVisitor)
    }
}

struct OnePassVisitor;

impl<'de> serde::de::Visitor<'de> for OnePassVisitor {
    type Value = OnePass;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("an envelope")
    }

    fn visit_map<M: serde::de::MapAccess<'de>>(self, mut map: M) -> Result<OnePass, M::Error> {
        use serde::de::Error;
        let elsewhere = || M::Error::custom("for the general path");
        let mut event_type = None;
        let mut id: Option<String> = None;
        let mut payload = None;
        while let Some(name) = map.next_key::<Member>()? {
            match name {
                Member::Type if event_type.is_none() => event_type = Some(map.next_value()?),
                Member::Id if id.is_none() => id = Some(map.next_value()?),
                Member::Payload if payload.is_none() => {
                    payload = Some(map.next_value::<Object<PayloadMembers>>()?.0);
                }
                Member::Other => {
                    map.next_value::<serde::de::IgnoredAny>()?;
                }
                // A duplicate: which one counts is the general path's call.
                Member::Type | Member::Id | Member::Payload => return Err(elsewhere()),
            }
        }
        let (Some(event_type), Some(id), Some(payload)) = (event_type, id, payload) else {
            return Err(elsewhere());
        };
        if id.is_empty() || id.len() > MAX_ID_BYTES {
            return Err(elsewhere());
        }
        match event_type {
            // Rare, and read whole.
            TypeName::Error => Err(elsewhere()),
            kind => Ok(OnePass(Incoming {
                id,
                event: Event::of(kind, payload),
            })),
        }
    }
}

/// An envelope that passed the checks of §4.1, its payload not read yet.
struct Checked<'a> {
    event_type: Cow<'a, str>,
    id: String,
    /// A JSON object.
    payload: &'a RawValue,
}

impl<'a> Checked<'a> {
    fn read(text: &'a str) -> Result<Self, EnvelopeError> {
        // The members are only delimited here (and the whole checked to be
        // JSON), not read: what a payload becomes depends on the type, which
        // may come after it.
        let Object(members) =
            serde_json::from_str::<Object<Members<'a>>>(text).map_err(|e| match e.classify() {
                serde_json::error::Category::Data => EnvelopeError::NotObject,
                _ => EnvelopeError::Json(e.to_string()),
            })?;
        let event_type = members
            .event_type
            .and_then(json_string)
            .ok_or(EnvelopeError::Type)?;
        let id = members
            .id
            .and_then(json_string)
            .ok_or(EnvelopeError::Id)?
            .into_owned();
        if id.is_empty() {
            return Err(EnvelopeError::EmptyId);
        }
        if id.len() > MAX_ID_BYTES {
            return Err(EnvelopeError::LongId);
        }
        let payload = members
            .payload
            .filter(|payload| payload.get().starts_with('{'))
            .ok_or(EnvelopeError::Payload)?;
        Ok(Self {
            event_type,
            id,
            payload,
        })
    }
}

/// What one decoded JSON value costs, in bytes: a `serde_json::Value`
/// (strings' and keys' text is paid for by the frame's own bytes). Small
/// values are one or two bytes of text each, so this is what turns a frame
/// of `[0,0,0,…]` into sixteen times its size once decoded.
const DECODED_BYTES_PER_VALUE: usize = std::mem::size_of::<Value>();
/// How many times its own size a frame's payload may take once decoded.
/// Ordinary JSON takes two to four.
pub const DECODED_BYTES_PER_FRAME_BYTE: usize = 8;
/// What any payload may take once decoded, whatever its frame's size.
pub const MIN_DECODED_BUDGET: usize = 16 << 20;
/// What no payload may take once decoded, however large its frame:
/// eight times the default frame limit.
pub const MAX_DECODED_BUDGET: usize = 128 << 20;

/// The memory a payload read from a frame of `frame_len` bytes may take once
/// decoded: [`DECODED_BYTES_PER_FRAME_BYTE`] times the frame, within
/// [`MIN_DECODED_BUDGET`]..=[`MAX_DECODED_BUDGET`].
pub fn decoded_budget(frame_len: usize) -> usize {
    frame_len
        .saturating_mul(DECODED_BYTES_PER_FRAME_BYTE)
        .clamp(MIN_DECODED_BUDGET, MAX_DECODED_BUDGET)
}

/// How many JSON values (object keys included) `json` holds, counted from
/// the tokens that start one, without building any. Meant for text already
/// checked to be JSON; on other text it is an over-estimate.
fn value_count(json: &str) -> usize {
    let mut count = 0;
    let mut in_string = false;
    let mut escaped = false;
    let mut in_scalar = false;
    for &byte in json.as_bytes() {
        if in_string {
            match byte {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match byte {
            b'"' => {
                count += 1;
                in_string = true;
                in_scalar = false;
            }
            b'{' | b'[' => {
                count += 1;
                in_scalar = false;
            }
            b',' | b':' | b'}' | b']' | b' ' | b'\t' | b'\n' | b'\r' => in_scalar = false,
            // A number, `true`, `false` or `null`: counted at its first byte.
            _ if !in_scalar => {
                count += 1;
                in_scalar = true;
            }
            _ => {}
        }
    }
    count
}

/// The envelope's bytes as text. Checked whole and first: serde_json checks
/// only the strings it reads, and an envelope is UTF-8 throughout (§4.1),
/// members nobody reads included.
fn utf8(bytes: &[u8]) -> Result<&str, EnvelopeError> {
    std::str::from_utf8(bytes)
        .map_err(|e| EnvelopeError::Json(format!("invalid UTF-8 at byte {}", e.valid_up_to())))
}

/// The value of a JSON string, borrowed when it has no escapes; `None` for
/// any other JSON value.
fn json_string(raw: &RawValue) -> Option<Cow<'_, str>> {
    let text = raw.get();
    let inner = text.strip_prefix('"')?.strip_suffix('"')?;
    if !inner.contains('\\') {
        return Some(Cow::Borrowed(inner));
    }
    serde_json::from_str(text).ok().map(Cow::Owned)
}

/// Reads a payload already checked to be a JSON object. It can still fail:
/// delimiting a value does not count its nesting, reading it does.
fn read_object<'a, T: serde::Deserialize<'a>>(payload: &'a str) -> Result<T, EnvelopeError> {
    serde_json::from_str(payload).map_err(|e| EnvelopeError::Json(e.to_string()))
}

/// The members of a JSON object that have a slot in `Self`, read as an
/// object read whole would be: a later duplicate replaces an earlier one,
/// escaped names are the same names, and members without a slot are skipped
/// unread. Read one through [`Object`].
trait Slots<'de>: Default {
    /// A member name, recognised without allocating it.
    type Name: serde::Deserialize<'de>;
    /// What the members are read as.
    type Value: serde::Deserialize<'de>;
    /// Where the member called `name` goes, if anywhere.
    fn slot(&mut self, name: Self::Name) -> Option<&mut Option<Self::Value>>;
}

/// A JSON object read into its [`Slots`].
struct Object<T>(T);

impl<'de, T: Slots<'de>> serde::Deserialize<'de> for Object<T> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(ObjectVisitor(std::marker::PhantomData))
    }
}

struct ObjectVisitor<T>(std::marker::PhantomData<T>);

impl<'de, T: Slots<'de>> serde::de::Visitor<'de> for ObjectVisitor<T> {
    type Value = Object<T>;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<M: serde::de::MapAccess<'de>>(self, mut map: M) -> Result<Object<T>, M::Error> {
        let mut slots = T::default();
        while let Some(name) = map.next_key::<T::Name>()? {
            match slots.slot(name) {
                Some(slot) => *slot = Some(map.next_value()?),
                None => {
                    map.next_value::<serde::de::IgnoredAny>()?;
                }
            }
        }
        Ok(Object(slots))
    }
}

/// The envelope's three members, delimited.
#[derive(Default)]
struct Members<'a> {
    event_type: Option<&'a RawValue>,
    id: Option<&'a RawValue>,
    payload: Option<&'a RawValue>,
}

#[derive(serde::Deserialize)]
#[serde(field_identifier, rename_all = "lowercase")]
enum Member {
    Type,
    Id,
    Payload,
    #[serde(other)]
    Other,
}

impl<'a> Slots<'a> for Members<'a> {
    type Name = Member;
    type Value = &'a RawValue;

    fn slot(&mut self, name: Member) -> Option<&mut Option<&'a RawValue>> {
        match name {
            Member::Type => Some(&mut self.event_type),
            Member::Id => Some(&mut self.id),
            Member::Payload => Some(&mut self.payload),
            Member::Other => None,
        }
    }
}

/// The members of a payload that a request or a reply uses, before their
/// checks.
#[derive(Default)]
struct PayloadMembers {
    operation_id: Option<Value>,
    input: Option<Value>,
    auth_token: Option<Value>,
    forwarded_for: Option<Value>,
    output: Option<Value>,
}

#[derive(serde::Deserialize)]
#[serde(field_identifier)]
enum PayloadMember {
    #[serde(rename = "operationId")]
    OperationId,
    #[serde(rename = "input")]
    Input,
    #[serde(rename = "auth_token")]
    AuthToken,
    #[serde(rename = "forwarded_for")]
    ForwardedFor,
    #[serde(rename = "output")]
    Output,
    #[serde(other)]
    Other,
}

impl Slots<'_> for PayloadMembers {
    type Name = PayloadMember;
    type Value = Value;

    fn slot(&mut self, name: PayloadMember) -> Option<&mut Option<Value>> {
        match name {
            PayloadMember::OperationId => Some(&mut self.operation_id),
            PayloadMember::Input => Some(&mut self.input),
            PayloadMember::AuthToken => Some(&mut self.auth_token),
            PayloadMember::ForwardedFor => Some(&mut self.forwarded_for),
            PayloadMember::Output => Some(&mut self.output),
            PayloadMember::Other => None,
        }
    }
}

impl PayloadMembers {
    fn take(payload: &mut Map<String, Value>) -> Self {
        Self {
            operation_id: payload.remove("operationId"),
            input: payload.remove("input"),
            auth_token: payload.remove("auth_token"),
            forwarded_for: payload.remove("forwarded_for"),
            output: payload.remove("output"),
        }
    }
}

/// An outgoing envelope, borrowed: serialized as an [`EventEnvelope`] would
/// be, without building its payload map first.
#[derive(Serialize)]
pub struct Outgoing<'a, P> {
    /// The event type (see [`types`]).
    #[serde(rename = "type")]
    pub event_type: &'static str,
    /// The request id the event belongs to.
    pub id: &'a str,
    /// The event's payload.
    pub payload: P,
}

/// The payload of `call.responded`.
#[derive(Serialize)]
pub struct OutputPayload<'a> {
    /// The output.
    pub output: &'a Value,
}

impl<'a> Outgoing<'a, OutputPayload<'a>> {
    /// `call.responded` with `output`.
    pub fn responded(id: &'a str, output: &'a Value) -> Self {
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
    use crate::error::ErrorCode;
    use serde_json::json;

    fn parse(value: Value) -> Result<EventEnvelope, EnvelopeError> {
        EventEnvelope::parse(&serde_json::to_vec(&value).unwrap())
    }

    #[test]
    fn envelopes_use_the_key_type_and_empty_payloads_are_exactly_empty() {
        // docs/protocol.md §16 item 4.
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
    fn a_session_reads_every_envelope_as_the_envelope_parser_does() {
        // `Incoming::parse` has a one-pass path for the usual member order
        // and a general one; both must agree with reading the envelope whole
        // and then its payload, whatever the bytes.
        let deep = format!(
            r#"{{"type":"call.requested","id":"d","payload":{{"operationId":"x","input":{}{}}}}}"#,
            "[".repeat(127),
            "]".repeat(127)
        );
        let cases: Vec<&[u8]> = vec![
            br#"{"type":"call.requested","id":"1","payload":{"operationId":"/diag/echo","input":{"n":1}}}"#,
            br#"{"type":"call.requested","id":"1","payload":{"operationId":"/x"}}"#,
            br#"{"type":"call.requested","id":"1","payload":{"operationId":"/x","input":1,"input":2}}"#,
            br#"{"type":"call.requested","id":"1","payload":{"operationId":7}}"#,
            br#"{"type":"call.requested","id":"1","payload":{"operationId":"/x","auth_token":"t","forwarded_for":{"id":"a"}}}"#,
            br#"{"type":"call.requested","id":"1","payload":{"operationId":"/x","auth_token":1}}"#,
            br#"{"type":"call.requested","id":"1","payload":[]}"#,
            br#"{"type":"call.requested","id":"1","payload":{"operationId":"/x"},"type":"call.aborted"}"#,
            br#"{"type":"call.requested","id":"1","payload":{"output":1},"type":"call.responded"}"#,
            br#"{"type":"call.requested","id":"1","id":"2","payload":{"operationId":"/x"}}"#,
            br#"{"type":"call.requested","id":"1","payload":{"operationId":"/x"},"payload":{"operationId":"/y"}}"#,
            br#"{"payload":{"operationId":"/x"},"id":"1","type":"call.requested"}"#,
            br#"{"type":"call\u002erequested","id":"\u0031","payload":{"operation\u0049d":"/x"}}"#,
            br#" { "type" : "call.responded" , "id" : "r" , "payload" : { "output" : [1, {"a": null}] } } "#,
            br#"{"type":"call.responded","id":"r","payload":{}}"#,
            br#"{"type":"call.responded","id":"r","payload":{"output":null},"extra":{"deep":[1]}}"#,
            br#"{"type":"call.responded","id":"","payload":{"output":1}}"#,
            br#"{"type":"call.responded","id":1,"payload":{"output":1}}"#,
            br#"{"type":"call.responded","payload":{"output":1}}"#,
            br#"{"type":"call.responded","id":"r","payload":{"output":1}} x"#,
            br#"{"type":"call.responded","id":"r","payload":{"output":1}"#,
            br#"{"type":"call.error","id":"e","payload":{"code":"X","message":"m","retryable":false}}"#,
            br#"{"type":"call.completed","id":"c","payload":{}}"#,
            br#"{"type":"call.future","id":"u","payload":{"x":1}}"#,
            br#"{"type":7,"id":"u","payload":{}}"#,
            br#"[1]"#,
            deep.as_bytes(),
        ];
        let long_id = format!(
            r#"{{"type":"call.responded","id":"{}","payload":{{"output":1}}}}"#,
            "i".repeat(MAX_ID_BYTES + 1)
        );
        for bytes in cases.into_iter().chain([long_id.as_bytes()]) {
            let whole = EventEnvelope::parse(bytes).map(Incoming::from);
            let text = String::from_utf8_lossy(bytes);
            assert_eq!(Incoming::parse(bytes), whole, "{text}");
            if let Ok(text) = std::str::from_utf8(bytes) {
                assert_eq!(Incoming::parse_in_two_passes(text), whole, "{text}");
            }
        }
        // Found by the envelope_parser fuzz target: bytes that are not UTF-8
        // in a member nobody reads still make the envelope invalid.
        for not_utf8 in [
            &b"{\"type\":\"call.future\",\"id\":\"r\",\"payload\":{\"x\":\"\xff\"}}"[..],
            b"{\"type\":\"call.responded\",\"x\":\"\xc3\",\"id\":\"r\",\"payload\":{\"output\":1}}",
        ] {
            assert!(matches!(
                EventEnvelope::parse(not_utf8),
                Err(EnvelopeError::Json(message)) if message.starts_with("invalid UTF-8")
            ));
            assert_eq!(
                Incoming::parse(not_utf8),
                EventEnvelope::parse(not_utf8).map(Incoming::from)
            );
        }
        // The one difference: a session does not decode the members it does
        // not use, so what fails only in decoding passes there.
        let deep_unused = format!(
            r#"{{"type":"call.responded","id":"r","payload":{{"output":1,"x":{}{}}}}}"#,
            "[".repeat(200),
            "]".repeat(200)
        );
        assert!(matches!(
            EventEnvelope::parse(deep_unused.as_bytes()),
            Err(EnvelopeError::Json(message)) if message.contains("recursion limit")
        ));
        assert_eq!(
            Incoming::parse(deep_unused.as_bytes()).map(|incoming| incoming.event),
            Ok(Ok(Event::Responded(json!(1))))
        );
        let huge_unused = br#"{"type":"call.responded","id":"r","payload":{"output":1,"x":1e400}}"#;
        assert!(matches!(
            EventEnvelope::parse(huge_unused),
            Err(EnvelopeError::Json(message)) if message.contains("number out of range")
        ));
        assert_eq!(
            Incoming::parse(huge_unused).map(|incoming| incoming.event),
            Ok(Ok(Event::Responded(json!(1))))
        );
    }

    #[test]
    fn values_are_counted_from_the_tokens_that_start_them() {
        assert_eq!(value_count(r#"{}"#), 1);
        assert_eq!(value_count(r#"[0,0,0]"#), 4);
        assert_eq!(value_count(r#" { "a" : [ -1.5e3 , true , null ] } "#), 6);
        assert_eq!(value_count(r#"{"k\"[{,":"x\\","y":1}"#), 5);
    }

    #[test]
    fn a_payload_too_costly_to_decode_is_answered_without_decoding_it() {
        // 1 M small values in 2 MiB: 32 MiB once decoded, over the 16 MiB
        // any frame of that size may take.
        let zeros = format!("[{}0]", "0,".repeat(1 << 20));
        let frame = |kind: &str, member: &str| {
            format!(
                r#"{{"type":"{kind}","id":"big","payload":{{"operationId":"/x","{member}":{zeros}}}}}"#
            )
        };
        let request = Incoming::parse(frame("call.requested", "input").as_bytes()).unwrap();
        assert_eq!(request.id, "big");
        let error = request.event.unwrap_err();
        assert!(
            matches!(&error, PayloadError::Request(reason) if reason.starts_with("payload would decode to about"))
        );
        assert_eq!(error.to_call_error().code, ErrorCode::InvalidInput);
        let reply = Incoming::parse(frame("call.responded", "output").as_bytes()).unwrap();
        assert_eq!(reply.event, Err(PayloadError::Response));
        let abort = Incoming::parse(frame("call.aborted", "x").as_bytes()).unwrap();
        assert_eq!(abort.event, Ok(Event::Aborted));
        // The same frame is still checked to be an envelope first.
        assert!(matches!(
            Incoming::parse(&frame("call.requested", "input").as_bytes()[1..]),
            Err(EnvelopeError::Json(_) | EnvelopeError::NotObject)
        ));
        // As large a frame of one string is cheap to decode, and decoded.
        let text = format!(
            r#"{{"type":"call.requested","id":"s","payload":{{"operationId":"/x","input":"{}"}}}}"#,
            "x".repeat(4 << 20)
        );
        let request = Incoming::parse(text.as_bytes()).unwrap();
        assert!(matches!(request.event, Ok(Event::Requested(_))));
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
            assert_eq!(error.code, ErrorCode::InvalidInput);
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
                (error.code, error.message.as_str()),
                (ErrorCode::Internal, "invalid response payload")
            );
        }
        let null_output =
            parse(json!({"type":"call.responded","id":"r","payload":{"output":null}})).unwrap();
        assert_eq!(null_output.event(), Ok(Event::Responded(Value::Null)));
    }
}
