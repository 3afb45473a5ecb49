//! A session's overlay (docs/protocol.md §10.5): the operations its remote end
//! registered with `session/register`, and the bounds on them.
//!
//! Registration is open to anyone who can open a session, so what a session
//! may make the node keep is bounded three ways: operations per session, JSON
//! bytes per session, and JSON bytes over all sessions of the node
//! ([`OverlayBudget`]), of which anonymous sessions together get at most half
//! so that they can never crowd out authenticated ones. A registration over a
//! bound is refused whole with `INVALID_INPUT` naming the bound.
//!
//! Sizes are counted as the entries' JSON text. What the node keeps per byte
//! is a small multiple of it: the spec as parsed JSON, and no compiled schema —
//! a schema is compiled to check it at registration and again for each call
//! the node makes through the overlay, which only node-side code does.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, PoisonError, RwLock};

use alknet_core::ConnectionInfo;
use serde::Deserialize;
use serde_json::Value;

use crate::access::AccessControl;
use crate::error::CallError;
use crate::names;
use crate::operation::{ErrorSchema, OpType, OperationSpec, Visibility};
use crate::schema::InputSchema;

/// What one session may register, and the node-wide budget it draws from.
#[derive(Clone, Debug)]
pub struct OverlayLimits {
    /// Operations one session's overlay holds at once.
    pub max_operations: usize,
    /// JSON bytes of one session's registered entries.
    pub max_bytes: usize,
    /// What all sessions sharing these limits hold together.
    pub budget: Arc<OverlayBudget>,
}

/// Default of [`OverlayLimits::max_operations`].
pub const DEFAULT_MAX_OPERATIONS: usize = 256;
/// Default of [`OverlayLimits::max_bytes`] (256 KiB).
pub const DEFAULT_MAX_BYTES: usize = 256 * 1024;
/// Default node-wide budget (16 MiB).
pub const DEFAULT_MAX_TOTAL_BYTES: usize = 16 * 1024 * 1024;

impl Default for OverlayLimits {
    fn default() -> Self {
        Self {
            max_operations: DEFAULT_MAX_OPERATIONS,
            max_bytes: DEFAULT_MAX_BYTES,
            budget: OverlayBudget::new(DEFAULT_MAX_TOTAL_BYTES),
        }
    }
}

/// JSON bytes of overlay entries held over all sessions of a node; sessions
/// without an identity share at most half of it.
#[derive(Debug)]
pub struct OverlayBudget {
    max_bytes: usize,
    used: AtomicUsize,
    anonymous_used: AtomicUsize,
}

impl OverlayBudget {
    /// A budget of `max_bytes`.
    pub fn new(max_bytes: usize) -> Arc<Self> {
        Arc::new(Self {
            max_bytes,
            used: AtomicUsize::new(0),
            anonymous_used: AtomicUsize::new(0),
        })
    }

    /// Bytes held now, by all sessions.
    pub fn used(&self) -> usize {
        self.used.load(Ordering::Acquire)
    }

    fn try_take(&self, bytes: usize, anonymous: bool) -> bool {
        if anonymous && !take(&self.anonymous_used, bytes, self.max_bytes / 2) {
            return false;
        }
        if !take(&self.used, bytes, self.max_bytes) {
            if anonymous {
                self.anonymous_used.fetch_sub(bytes, Ordering::AcqRel);
            }
            return false;
        }
        true
    }

    fn give_back(&self, bytes: usize, anonymous: bool) {
        self.used.fetch_sub(bytes, Ordering::AcqRel);
        if anonymous {
            self.anonymous_used.fetch_sub(bytes, Ordering::AcqRel);
        }
    }
}

/// Adds `bytes` to `counter` unless that passes `limit`.
fn take(counter: &AtomicUsize, bytes: usize, limit: usize) -> bool {
    counter
        .fetch_update(Ordering::AcqRel, Ordering::Acquire, |held| {
            held.checked_add(bytes).filter(|total| *total <= limit)
        })
        .is_ok()
}

/// One registered operation and its size.
struct Entry {
    spec: Arc<OperationSpec>,
    bytes: usize,
}

struct Held {
    entries: BTreeMap<String, Entry>,
    bytes: usize,
    /// Who the budget was charged as: fixed by the first registration, so
    /// that what is given back matches what was taken.
    anonymous: bool,
}

/// One session's overlay. Whatever it holds is given back to the node's
/// budget when it is cleared or dropped.
pub(crate) struct Overlay {
    limits: OverlayLimits,
    held: RwLock<Held>,
    /// Where operators see what the overlay holds (`admin/tree`).
    stats: Option<Arc<ConnectionInfo>>,
}

/// A registration the bounds refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum OverlayRefusal {
    /// The session would hold more operations than allowed.
    #[error("overlay limit: at most {limit} operations per session")]
    TooManyOperations {
        /// `max_operations`.
        limit: usize,
    },
    /// The session would hold more bytes than allowed.
    #[error("overlay limit: at most {limit} bytes of operations per session")]
    SessionBytes {
        /// `max_bytes`.
        limit: usize,
    },
    /// The node's budget (or anonymous sessions' half of it) is spent.
    #[error("overlay limit: the node holds all the registered operations it may")]
    NodeBytes,
}

impl Overlay {
    pub(crate) fn new(limits: OverlayLimits, stats: Option<Arc<ConnectionInfo>>) -> Self {
        Self {
            limits,
            stats,
            held: RwLock::new(Held {
                entries: BTreeMap::new(),
                bytes: 0,
                anonymous: true,
            }),
        }
    }

    /// Registers the entries of a `session/register` input's `operations`
    /// (all or nothing), replacing entries of the same name; `anonymous` is
    /// whether the registering request has no identity. The bounds that can
    /// be checked on the input as it is are checked first, so that a flood is
    /// refused before any of it is copied or compiled.
    pub(crate) fn register(
        &self,
        operations: Value,
        anonymous: bool,
    ) -> Result<Vec<String>, CallError> {
        let Value::Array(items) = operations else {
            return Err(CallError::invalid_input(
                "invalid operation entry: `operations` is not an array",
            ));
        };
        if items.len() > self.limits.max_operations {
            return Err(refused(OverlayRefusal::TooManyOperations {
                limit: self.limits.max_operations,
            }));
        }
        let sizes: Vec<usize> = items.iter().map(json_len).collect();
        if sizes.iter().sum::<usize>() > self.limits.max_bytes {
            return Err(refused(OverlayRefusal::SessionBytes {
                limit: self.limits.max_bytes,
            }));
        }
        let mut added: BTreeMap<String, Entry> = BTreeMap::new();
        for (item, bytes) in items.into_iter().zip(sizes) {
            let spec = entry_spec(item)?;
            added.insert(
                spec.name.clone(),
                Entry {
                    spec: Arc::new(spec),
                    bytes,
                },
            );
        }
        let mut held = self.held.write().unwrap_or_else(PoisonError::into_inner);
        let replaced: usize = added
            .keys()
            .filter_map(|name| held.entries.get(name))
            .map(|entry| entry.bytes)
            .sum();
        let kept = held.entries.len()
            - added
                .keys()
                .filter(|name| held.entries.contains_key(*name))
                .count();
        if kept + added.len() > self.limits.max_operations {
            return Err(refused(OverlayRefusal::TooManyOperations {
                limit: self.limits.max_operations,
            }));
        }
        let adding: usize = added.values().map(|entry| entry.bytes).sum();
        let total = held.bytes - replaced + adding;
        if total > self.limits.max_bytes {
            return Err(refused(OverlayRefusal::SessionBytes {
                limit: self.limits.max_bytes,
            }));
        }
        if held.entries.is_empty() {
            held.anonymous = anonymous;
        }
        let budget = &self.limits.budget;
        if total > held.bytes {
            if !budget.try_take(total - held.bytes, held.anonymous) {
                return Err(refused(OverlayRefusal::NodeBytes));
            }
        } else {
            budget.give_back(held.bytes - total, held.anonymous);
        }
        held.bytes = total;
        self.show(total);
        let names = added.keys().cloned().collect();
        held.entries.extend(added);
        Ok(names)
    }

    /// The registered operations, sorted by name.
    pub(crate) fn specs(&self) -> Vec<OperationSpec> {
        self.read()
            .entries
            .values()
            .map(|entry| OperationSpec::clone(&entry.spec))
            .collect()
    }

    /// One registered operation.
    pub(crate) fn get(&self, name: &str) -> Option<Arc<OperationSpec>> {
        self.read()
            .entries
            .get(name)
            .map(|entry| entry.spec.clone())
    }

    /// JSON bytes held.
    pub(crate) fn bytes(&self) -> usize {
        self.read().bytes
    }

    /// Drops every entry and gives their bytes back.
    pub(crate) fn clear(&self) {
        let mut held = self.held.write().unwrap_or_else(PoisonError::into_inner);
        self.limits.budget.give_back(held.bytes, held.anonymous);
        held.entries.clear();
        held.bytes = 0;
        self.show(0);
    }

    fn show(&self, bytes: usize) {
        if let Some(info) = &self.stats {
            info.stats().set_held(bytes as u64);
        }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Held> {
        self.held.read().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Drop for Overlay {
    fn drop(&mut self) {
        self.clear();
    }
}

fn refused(refusal: OverlayRefusal) -> CallError {
    CallError::invalid_input(refusal.to_string())
}

/// One entry of `session/register`: only `name` and `op_type` are required.
#[derive(Debug, Deserialize)]
struct EntryFields {
    name: String,
    op_type: OpType,
    #[serde(default)]
    description: String,
    #[serde(default = "empty_object")]
    input_schema: Value,
    #[serde(default = "empty_object")]
    output_schema: Value,
    #[serde(default)]
    error_schemas: Vec<ErrorSchema>,
    #[serde(default)]
    access_control: AccessControl,
}

fn empty_object() -> Value {
    Value::Object(serde_json::Map::new())
}

/// Reads one entry (taking its JSON, not copying it) and checks its name and
/// input schema.
fn entry_spec(item: Value) -> Result<OperationSpec, CallError> {
    let fields: EntryFields = serde_json::from_value(item)
        .map_err(|e| CallError::invalid_input(format!("invalid operation entry: {e}")))?;
    names::validate(&fields.name).map_err(|e| CallError::invalid_input(e.to_string()))?;
    // Compiled only to refuse a schema that does not compile; the node keeps
    // the JSON (see the module doc).
    InputSchema::compile(&fields.input_schema)
        .map_err(|e| CallError::invalid_input(format!("operation `{}`: {e}", fields.name)))?;
    Ok(OperationSpec {
        namespace: names::namespace(&fields.name).to_owned(),
        name: fields.name,
        op_type: fields.op_type,
        visibility: Visibility::Internal,
        description: fields.description,
        input_schema: fields.input_schema,
        output_schema: fields.output_schema,
        error_schemas: fields.error_schemas,
        access_control: fields.access_control,
    })
}

/// The length of `value` as compact JSON, without building the text.
fn json_len(value: &Value) -> usize {
    struct Counter(usize);
    impl std::io::Write for Counter {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut counter = Counter(0);
    serde_json::to_writer(&mut counter, value).expect("a Value always serializes");
    counter.0
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn entries(names: &[&str], padding: usize) -> Value {
        names
            .iter()
            .map(|name| {
                json!({"name": name, "op_type": "query", "description": "x".repeat(padding)})
            })
            .collect()
    }

    fn limits(max_operations: usize, max_bytes: usize, total: usize) -> OverlayLimits {
        OverlayLimits {
            max_operations,
            max_bytes,
            budget: OverlayBudget::new(total),
        }
    }

    impl Overlay {
        fn new_unseen(limits: OverlayLimits) -> Self {
            Self::new(limits, None)
        }
    }

    #[test]
    fn sizes_are_the_entries_json_text() {
        let item = json!({"name": "ui/ping", "op_type": "query"});
        let overlay = Overlay::new_unseen(OverlayLimits::default());
        overlay.register(json!([item]), true).unwrap();
        assert_eq!(overlay.bytes(), item.to_string().len());
        assert_eq!(json_len(&item), item.to_string().len());
    }

    #[test]
    fn refuses_more_operations_than_a_session_may_hold_all_or_nothing() {
        let overlay = Overlay::new_unseen(limits(2, 1 << 20, 1 << 20));
        overlay.register(entries(&["a/x"], 0), false).unwrap();
        let error = overlay
            .register(entries(&["a/y", "a/z"], 0), false)
            .unwrap_err();
        assert_eq!(
            error,
            CallError::invalid_input("overlay limit: at most 2 operations per session")
        );
        assert_eq!(overlay.specs().len(), 1);
        // Replacing a name adds nothing.
        overlay
            .register(entries(&["a/x", "a/y"], 0), false)
            .unwrap();
        assert_eq!(overlay.specs().len(), 2);
    }

    #[test]
    fn refuses_more_bytes_than_a_session_may_hold() {
        let overlay = Overlay::new_unseen(limits(100, 1000, 1 << 20));
        overlay.register(entries(&["a/x"], 500), false).unwrap();
        let held = overlay.bytes();
        assert!(held > 500, "{held}");
        let error = overlay.register(entries(&["a/y"], 500), false).unwrap_err();
        assert!(error.message.contains("at most 1000 bytes"), "{error:?}");
        // Replacing the big entry by a small one frees its bytes.
        overlay.register(entries(&["a/x"], 0), false).unwrap();
        assert!(overlay.bytes() < held);
        overlay.register(entries(&["a/y"], 500), false).unwrap();
    }

    #[test]
    fn anonymous_sessions_share_half_the_node_budget_and_give_it_back() {
        let budget = OverlayBudget::new(4000);
        let limits = OverlayLimits {
            max_operations: 100,
            max_bytes: 10_000,
            budget: budget.clone(),
        };
        let anonymous = Overlay::new_unseen(limits.clone());
        anonymous.register(entries(&["a/x"], 1500), true).unwrap();
        let other_anonymous = Overlay::new_unseen(limits.clone());
        let error = other_anonymous
            .register(entries(&["a/x"], 1500), true)
            .unwrap_err();
        assert_eq!(
            error.message,
            "overlay limit: the node holds all the registered operations it may"
        );
        // An authenticated session still has the other half.
        let authenticated = Overlay::new_unseen(limits.clone());
        authenticated
            .register(entries(&["a/x"], 1500), false)
            .unwrap();
        assert_eq!(budget.used(), anonymous.bytes() + authenticated.bytes());
        drop(anonymous);
        other_anonymous
            .register(entries(&["a/x"], 1500), true)
            .unwrap();
        authenticated.clear();
        drop(other_anonymous);
        assert_eq!(budget.used(), 0);
        assert_eq!(budget.anonymous_used.load(Ordering::Acquire), 0);
    }

    #[test]
    fn an_invalid_entry_registers_nothing() {
        let overlay = Overlay::new_unseen(OverlayLimits::default());
        let items = json!([
            {"name": "a/ok", "op_type": "query"},
            {"name": "a/bad", "op_type": "query", "input_schema": {"type": 12}}
        ]);
        let error = overlay.register(items, true).unwrap_err();
        assert_eq!(error.code, crate::error::ErrorCode::InvalidInput);
        assert!(overlay.specs().is_empty());
        assert_eq!(overlay.limits.budget.used(), 0);
    }
}
