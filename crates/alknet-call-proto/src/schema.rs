//! Input validation against an operation's JSON Schema (docs/protocol.md §6.4).
//!
//! Schemas are compiled once, at registration (draft 2020-12; `format` is an
//! annotation, not an assertion), so an invalid schema fails registration and
//! never a request. Validation produces the protocol's exact error shape:
//! `INVALID_INPUT`, a message naming the first missing required field when
//! there is one, and up to 32 `{pointer, message}` entries in `details.errors`.

use std::sync::Arc;

use jsonschema::{Draft, Validator};
use serde_json::{Value, json};

use crate::error::CallError;

/// At most this many entries in `details.errors`.
pub const MAX_REPORTED_ERRORS: usize = 32;

/// A schema that does not compile.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid JSON Schema: {0}")]
pub struct SchemaError(pub String);

/// A compiled input schema.
#[derive(Clone)]
pub struct InputSchema {
    raw: Value,
    required: Vec<String>,
    validator: Arc<Validator>,
}

impl std::fmt::Debug for InputSchema {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("InputSchema").field(&self.raw).finish()
    }
}

impl InputSchema {
    /// Compiles `schema`.
    pub fn compile(schema: &Value) -> Result<Self, SchemaError> {
        let validator = jsonschema::options()
            .with_draft(Draft::Draft202012)
            .should_validate_formats(false)
            .build(schema)
            .map_err(|e| SchemaError(e.to_string()))?;
        let required = schema
            .get("required")
            .and_then(Value::as_array)
            .map(|names| {
                names
                    .iter()
                    .filter_map(Value::as_str)
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default();
        Ok(Self {
            raw: schema.clone(),
            required,
            validator: Arc::new(validator),
        })
    }

    /// The schema `{}`: anything is valid.
    pub fn any() -> Self {
        Self::compile(&json!({})).expect("the empty schema compiles")
    }

    /// The schema as registered.
    pub fn raw(&self) -> &Value {
        &self.raw
    }

    /// Validates `input`; the error is the `INVALID_INPUT` a caller receives.
    pub fn validate(&self, input: &Value) -> Result<(), CallError> {
        if self.validator.is_valid(input) {
            return Ok(());
        }
        let errors: Vec<Value> = self
            .validator
            .iter_errors(input)
            .take(MAX_REPORTED_ERRORS)
            .map(|error| {
                json!({
                    "pointer": error.instance_path().as_str(),
                    "message": error.to_string(),
                })
            })
            .collect();
        let missing = input.as_object().and_then(|object| {
            self.required
                .iter()
                .find(|name| !object.contains_key(name.as_str()))
        });
        let message = match (missing, errors.first()) {
            (Some(name), _) => format!("missing required field: {name}"),
            (None, Some(first)) => mismatch_message(
                first["pointer"].as_str().unwrap_or_default(),
                first["message"].as_str().unwrap_or_default(),
            ),
            (None, None) => "input does not match schema".to_owned(),
        };
        Err(CallError::invalid_input(message).with_details(json!({ "errors": errors })))
    }
}

/// The longest validator text quoted in the message: it can quote the
/// failing value, which the caller sent and may be large.
const MAX_QUOTED: usize = 160;

/// `input does not match schema at /path: 42 is not of type "string"`: the
/// first failure, so a person sees which field and which constraint without
/// reading `details`.
fn mismatch_message(pointer: &str, reason: &str) -> String {
    let reason = match reason.char_indices().nth(MAX_QUOTED) {
        Some((cut, _)) => format!("{}…", &reason[..cut]),
        None => reason.to_owned(),
    };
    if pointer.is_empty() {
        format!("input does not match schema: {reason}")
    } else {
        format!("input does not match schema at {pointer}: {reason}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorCode;

    fn path_schema() -> InputSchema {
        InputSchema::compile(&json!({
            "type": "object",
            "properties": {"path": {"type": "string"}, "mode": {"type": "integer"}},
            "required": ["path", "mode"]
        }))
        .unwrap()
    }

    #[test]
    fn failures_name_the_failing_value_by_json_pointer() {
        // docs/protocol.md §16 item 14.
        let error = path_schema()
            .validate(&json!({"path": 42, "mode": 1}))
            .unwrap_err();
        assert_eq!(error.code, ErrorCode::InvalidInput);
        assert_eq!(
            error.message,
            "input does not match schema at /path: 42 is not of type \"string\""
        );
        let errors = &error.details.as_ref().unwrap()["errors"];
        assert_eq!(errors[0]["pointer"], "/path");
        assert_eq!(errors[0]["message"], "42 is not of type \"string\"");
    }

    #[test]
    fn a_long_failing_value_is_cut_short_in_the_message() {
        let long = "x".repeat(10_000);
        let error = path_schema()
            .validate(&json!({"path": "/x", "mode": long}))
            .unwrap_err();
        assert!(
            error
                .message
                .starts_with("input does not match schema at /mode: \"xxx"),
            "{}",
            error.message
        );
        assert!(error.message.ends_with('…') && error.message.len() < 300);
        let root = path_schema().validate(&json!(7)).unwrap_err();
        assert_eq!(
            root.message,
            "input does not match schema: 7 is not of type \"object\""
        );
    }

    #[test]
    fn the_first_missing_required_field_in_order_is_named() {
        let error = path_schema().validate(&json!({})).unwrap_err();
        assert_eq!(error.message, "missing required field: path");
        let error = path_schema().validate(&json!({"path": "/x"})).unwrap_err();
        assert_eq!(error.message, "missing required field: mode");
        let errors = error.details.unwrap()["errors"].as_array().unwrap().clone();
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0]["pointer"], "");
    }

    #[test]
    fn valid_input_passes_and_the_empty_schema_accepts_anything() {
        assert_eq!(
            path_schema().validate(&json!({"path": "/x", "mode": 7})),
            Ok(())
        );
        for value in [json!(null), json!(1), json!([1, 2]), json!({"a": {}})] {
            assert_eq!(InputSchema::any().validate(&value), Ok(()));
        }
    }

    #[test]
    fn at_most_32_errors_are_reported() {
        let schema =
            InputSchema::compile(&json!({"type": "array", "items": {"type": "string"}})).unwrap();
        let input = Value::Array((0..100).map(|i| json!(i)).collect());
        let error = schema.validate(&input).unwrap_err();
        assert_eq!(
            error.details.unwrap()["errors"].as_array().unwrap().len(),
            MAX_REPORTED_ERRORS
        );
    }

    #[test]
    fn format_is_an_annotation_not_an_assertion() {
        let schema = InputSchema::compile(&json!({"type": "string", "format": "email"})).unwrap();
        assert_eq!(schema.validate(&json!("not an email")), Ok(()));
    }

    #[test]
    fn an_invalid_schema_fails_to_compile() {
        assert!(InputSchema::compile(&json!({"type": 12})).is_err());
        assert!(InputSchema::compile(&json!({"type": "no-such-type"})).is_err());
    }
}
