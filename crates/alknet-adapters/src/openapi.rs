//! `from_openapi` and `from_jsonschema` (docs/protocol.md §14.2): HTTP APIs as
//! operations.
//!
//! An OpenAPI 3.0 or 3.1 document (JSON, or YAML when it is not JSON) becomes
//! one operation per path and method. Everything a request could trip over is
//! worked out here, once, at import: `$ref`s are inlined (internal ones only —
//! fetching other documents at import would make the node's surface depend on
//! a third server), 3.0 schema dialect is rewritten to JSON Schema 2020-12
//! (`nullable`, boolean `exclusiveMinimum`), and the resulting specs are
//! compiled by the registry like any other. A document that cannot be
//! imported whole is refused whole, with an error naming the place.
//!
//! `from_jsonschema` is the one-endpoint form: a full OperationSpec, a method
//! and a path template, forwarded the same way (see [`crate::forward`]).
//!
//! The importers return [`OperationDef`]s without registering them, so the
//! node grants each its credential ([`OperationDef::capability`], keyed by the
//! namespace) and registers them all or none.

use std::collections::BTreeSet;
use std::sync::Arc;

use alknet_call::registry::{ErrorSchema, OpType, OperationDef, OperationSpec, Visibility};
use reqwest::Method;
use serde_json::{Map, Value, json};

use crate::forward::{Auth, Endpoint, ParamIn, Target};
use crate::outbound::Outbound;

/// The largest OpenAPI document read.
pub const MAX_DOCUMENT: usize = 16 * 1024 * 1024;

/// Nodes a document may expand to once its `$ref`s are inlined.
const MAX_EXPANDED_NODES: usize = 2_000_000;

/// `$ref` chains deeper than this are refused.
const MAX_REF_DEPTH: usize = 64;

/// The methods §14.2 imports, in document order of preference.
const METHODS: [&str; 7] = ["get", "post", "put", "patch", "delete", "head", "options"];

/// One HTTP import: where its operations go and how they reach the API.
#[derive(Clone, Debug)]
pub struct HttpImport {
    /// The first segment of every imported name, and the capability key of
    /// the credential.
    pub namespace: String,
    /// The API's base URL; `from_openapi` falls back to the document's first
    /// absolute `servers` URL.
    pub base_url: Option<String>,
    /// How the credential is sent.
    pub auth: Auth,
    /// `Internal` unless configured external.
    pub visibility: Visibility,
    /// Skip server certificate verification.
    pub insecure: bool,
}

/// Why a document or spec cannot be imported.
#[derive(Debug, thiserror::Error)]
pub enum OpenApiError {
    /// Neither JSON nor YAML.
    #[error("not a JSON or YAML document (as JSON: {json}; as YAML: {yaml})")]
    Syntax {
        /// The JSON parser's complaint.
        json: String,
        /// The YAML parser's complaint.
        yaml: String,
    },
    /// Over [`MAX_DOCUMENT`] bytes.
    #[error("document larger than {MAX_DOCUMENT} bytes")]
    TooLarge,
    /// Not OpenAPI 3.0 or 3.1.
    #[error("not an OpenAPI 3.0 or 3.1 document (`openapi` is {0})")]
    Version(String),
    /// A `$ref` to another document.
    #[error("external $ref `{0}` is not supported: only references inside the document (`#/…`)")]
    ExternalRef(String),
    /// A `$ref` to nothing.
    #[error("$ref `{0}` points at nothing in the document")]
    UnresolvedRef(String),
    /// Too deep or too large once expanded.
    #[error("document too complex: {0}")]
    TooComplex(&'static str),
    /// No base URL configured or found in `servers`.
    #[error("no base URL: configure `base_url` (the document has no absolute `servers` URL)")]
    NoBaseUrl,
    /// The document's structure is wrong somewhere.
    #[error("{at}: {reason}")]
    Invalid {
        /// JSON-pointer-like location.
        at: String,
        /// What is wrong.
        reason: String,
    },
    /// A namespace that is not one name segment.
    #[error("namespace `{0}` must be one segment of [A-Za-z0-9._-]")]
    Namespace(String),
}

/// Parses an OpenAPI document: JSON first, then YAML.
pub fn parse_document(bytes: &[u8]) -> Result<Value, OpenApiError> {
    if bytes.len() > MAX_DOCUMENT {
        return Err(OpenApiError::TooLarge);
    }
    let doc: Value = match serde_json::from_slice(bytes) {
        Ok(doc) => doc,
        Err(json_error) => {
            serde_norway::from_slice(bytes).map_err(|yaml| OpenApiError::Syntax {
                json: json_error.to_string(),
                yaml: yaml.to_string(),
            })?
        }
    };
    let version = doc
        .get("openapi")
        .and_then(Value::as_str)
        .map(str::to_owned);
    match version.as_deref() {
        Some(v) if v.starts_with("3.0") || v.starts_with("3.1") => Ok(doc),
        Some(v) => Err(OpenApiError::Version(format!("`{v}`"))),
        None => Err(OpenApiError::Version("missing".to_owned())),
    }
}

/// Replaces characters outside the name grammar with `_` (§6.1).
pub fn sanitize(segment: &str) -> String {
    let cleaned: String = segment
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._-".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    if cleaned.is_empty() {
        "_".to_owned()
    } else {
        cleaned
    }
}

fn check_namespace(namespace: &str) -> Result<(), OpenApiError> {
    if namespace.is_empty() || sanitize(namespace) != namespace {
        return Err(OpenApiError::Namespace(namespace.to_owned()));
    }
    Ok(())
}

/// Imports every operation of an OpenAPI document.
pub fn from_openapi(
    bytes: &[u8],
    import: &HttpImport,
    outbound: Arc<Outbound>,
) -> Result<Vec<OperationDef>, OpenApiError> {
    check_namespace(&import.namespace)?;
    let doc = parse_document(bytes)?;
    let is_30 = doc["openapi"]
        .as_str()
        .is_some_and(|v| v.starts_with("3.0"));
    let mut resolver = Resolver {
        doc: &doc,
        stack: Vec::new(),
        budget: MAX_EXPANDED_NODES,
    };
    let base_url = match &import.base_url {
        Some(url) => url.clone(),
        None => doc["servers"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|server| server["url"].as_str())
            .find(|url| url.starts_with("http://") || url.starts_with("https://"))
            .ok_or(OpenApiError::NoBaseUrl)?
            .to_owned(),
    };
    let target = Target {
        outbound,
        auth: import.auth.clone(),
        capability: import.namespace.clone(),
        insecure: import.insecure,
    };
    let Some(paths) = doc.get("paths").and_then(Value::as_object) else {
        return Err(OpenApiError::Invalid {
            at: "/paths".to_owned(),
            reason: "missing or not an object".to_owned(),
        });
    };
    let mut defs = Vec::new();
    for (path, item) in paths {
        let at = format!("/paths/{}", path.replace('~', "~0").replace('/', "~1"));
        let item = resolver.resolve(item)?;
        let shared_params = item
            .get("parameters")
            .cloned()
            .unwrap_or(Value::Array(Vec::new()));
        for method in METHODS {
            let Some(operation) = item.get(method) else {
                continue;
            };
            let at = format!("{at}/{method}");
            let spec = Operation {
                path,
                method,
                operation,
                shared_params: &shared_params,
                is_30,
                at: &at,
            };
            defs.push(spec.build(import, &base_url, &target)?);
        }
    }
    Ok(defs)
}

/// Inlines internal `$ref`s, bounded in depth and total size; a recursive
/// reference becomes `{}` (anything) at the point where it recurs.
struct Resolver<'a> {
    doc: &'a Value,
    stack: Vec<String>,
    budget: usize,
}

impl Resolver<'_> {
    fn resolve(&mut self, value: &Value) -> Result<Value, OpenApiError> {
        self.budget = self.budget.checked_sub(1).ok_or(OpenApiError::TooComplex(
            "too large once $refs are expanded",
        ))?;
        match value {
            Value::Object(map) => {
                if let Some(Value::String(reference)) = map.get("$ref") {
                    return self.follow(reference);
                }
                let mut out = Map::with_capacity(map.len());
                for (key, value) in map {
                    out.insert(key.clone(), self.resolve(value)?);
                }
                Ok(Value::Object(out))
            }
            Value::Array(items) => items
                .iter()
                .map(|item| self.resolve(item))
                .collect::<Result<Vec<_>, _>>()
                .map(Value::Array),
            other => Ok(other.clone()),
        }
    }

    fn follow(&mut self, reference: &str) -> Result<Value, OpenApiError> {
        let Some(pointer) = reference.strip_prefix('#') else {
            return Err(OpenApiError::ExternalRef(reference.to_owned()));
        };
        if self.stack.iter().any(|r| r == reference) {
            return Ok(json!({}));
        }
        if self.stack.len() >= MAX_REF_DEPTH {
            return Err(OpenApiError::TooComplex("$ref chain too deep"));
        }
        let target = self
            .doc
            .pointer(&percent_decode(pointer))
            .ok_or_else(|| OpenApiError::UnresolvedRef(reference.to_owned()))?;
        self.stack.push(reference.to_owned());
        let resolved = self.resolve(target);
        self.stack.pop();
        resolved
    }
}

/// `%XX` escapes of a URI fragment (JSON pointers in `$ref`s may use them).
fn percent_decode(input: &str) -> String {
    let bytes = input.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let Some(hex) = bytes.get(i + 1..i + 3)
            && let Some(byte) = std::str::from_utf8(hex)
                .ok()
                .and_then(|hex| u8::from_str_radix(hex, 16).ok())
        {
            out.push(byte);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// One path + method of the document.
struct Operation<'a> {
    path: &'a str,
    method: &'a str,
    operation: &'a Value,
    shared_params: &'a Value,
    is_30: bool,
    at: &'a str,
}

impl Operation<'_> {
    fn invalid(&self, reason: impl Into<String>) -> OpenApiError {
        OpenApiError::Invalid {
            at: self.at.to_owned(),
            reason: reason.into(),
        }
    }

    fn name(&self, namespace: &str) -> String {
        let local = match self.operation.get("operationId").and_then(Value::as_str) {
            Some(id) if !id.is_empty() => sanitize(id),
            _ => {
                let parts: Vec<String> = self
                    .path
                    .split('/')
                    .filter(|s| !(s.is_empty() || s.starts_with('{') && s.ends_with('}')))
                    .map(sanitize)
                    .collect();
                if parts.is_empty() {
                    format!("{}_root", self.method)
                } else {
                    format!("{}_{}", self.method, parts.join("_"))
                }
            }
        };
        format!("{namespace}/{local}")
    }

    fn build(
        &self,
        import: &HttpImport,
        base_url: &str,
        target: &Target,
    ) -> Result<OperationDef, OpenApiError> {
        // Parameters: the path item's, overridden by the operation's (same
        // name and location).
        let mut params: Vec<Value> = Vec::new();
        for list in [
            self.shared_params,
            self.operation.get("parameters").unwrap_or(&Value::Null),
        ] {
            let Some(list) = list.as_array() else {
                if !list.is_null() {
                    return Err(self.invalid("`parameters` is not an array"));
                }
                continue;
            };
            for param in list {
                let key = (param.get("name"), param.get("in"));
                params.retain(|p| (p.get("name"), p.get("in")) != key);
                params.push(param.clone());
            }
        }
        let mut properties = Map::new();
        let mut required = Vec::new();
        let mut declared = Vec::new();
        for param in &params {
            let (Some(name), Some(location)) = (
                param.get("name").and_then(Value::as_str),
                param.get("in").and_then(Value::as_str),
            ) else {
                return Err(self.invalid("a parameter lacks `name` or `in`"));
            };
            let location = match location {
                "path" => ParamIn::Path,
                "query" => ParamIn::Query,
                "header" => ParamIn::Header,
                "cookie" => ParamIn::Cookie,
                other => return Err(self.invalid(format!("parameter `{name}` is `in: {other}`"))),
            };
            let mut schema = param
                .get("schema")
                .cloned()
                .unwrap_or_else(|| json!({"type": "string"}));
            if self.is_30 {
                normalize_30(&mut schema);
            }
            if let (Some(description), Value::Object(map)) = (
                param.get("description").and_then(Value::as_str),
                &mut schema,
            ) {
                map.entry("description")
                    .or_insert_with(|| Value::String(description.to_owned()));
            }
            let is_required = location == ParamIn::Path
                || param.get("required").and_then(Value::as_bool) == Some(true);
            if is_required {
                required.push(Value::String(name.to_owned()));
            }
            properties.insert(name.to_owned(), schema);
            declared.push((name.to_owned(), location));
        }
        if let Some(body) = self.operation.get("requestBody")
            && let Some(mut schema) = json_schema_of(body.get("content"))
        {
            if self.is_30 {
                normalize_30(&mut schema);
            }
            properties.insert("body".to_owned(), schema);
            required.push(Value::String("body".to_owned()));
        }
        let mut input_schema = json!({"type": "object", "properties": properties});
        if !required.is_empty() {
            input_schema["required"] = Value::Array(required);
        }

        let responses = self.operation.get("responses").and_then(Value::as_object);
        let mut op_type = if self.method == "get" {
            OpType::Query
        } else {
            OpType::Mutation
        };
        let mut output_schema = json!({});
        let mut errors = Vec::new();
        let mut codes = BTreeSet::new();
        for (status, response) in responses.into_iter().flatten() {
            let content = response.get("content");
            if status == "200" || status == "201" {
                if content.and_then(|c| c.get("text/event-stream")).is_some() {
                    op_type = OpType::Subscription;
                }
                if let Some(mut schema) = json_schema_of(content) {
                    if self.is_30 {
                        normalize_30(&mut schema);
                    }
                    output_schema = schema;
                }
            }
            if let Ok(code) = status.parse::<u16>()
                && (400..=599).contains(&code)
                && codes.insert(code)
            {
                errors.push(ErrorSchema {
                    code: format!("HTTP_{code}"),
                    description: format!("HTTP {code} response"),
                    schema: json!({
                        "type": "object",
                        "properties": {"retry_after": {"type": "integer"}}
                    }),
                    http_status: Some(code),
                });
            }
        }
        let description = ["summary", "description"]
            .iter()
            .filter_map(|key| self.operation.get(*key).and_then(Value::as_str))
            .find(|text| !text.trim().is_empty())
            .unwrap_or("")
            .to_owned();
        let spec = OperationSpec {
            name: self.name(&import.namespace),
            namespace: import.namespace.clone(),
            op_type,
            visibility: import.visibility,
            description,
            input_schema,
            output_schema,
            error_schemas: errors,
            access_control: Default::default(),
        };
        let method = Method::from_bytes(self.method.to_ascii_uppercase().as_bytes())
            .map_err(|_| self.invalid("invalid method"))?;
        let endpoint = Endpoint {
            method,
            base_url: base_url.to_owned(),
            path: self.path.to_owned(),
            params: declared
                .into_iter()
                .filter(|(_, location)| *location != ParamIn::Query)
                .collect(),
        };
        Ok(forwarder(spec, endpoint, target.clone()))
    }
}

/// The JSON schema of a `content` map: `application/json` or any `+json`
/// media type; `None` when the body is not JSON (form, XML, files).
fn json_schema_of(content: Option<&Value>) -> Option<Value> {
    let content = content?.as_object()?;
    let (_, media) = content.iter().find(|(media_type, _)| {
        let essence = media_type.split(';').next().unwrap_or("").trim();
        essence == "application/json" || essence.ends_with("+json")
    })?;
    Some(media.get("schema").cloned().unwrap_or_else(|| json!({})))
}

/// Rewrites OpenAPI 3.0 schema dialect to JSON Schema 2020-12: `nullable`
/// adds `null` to `type`, boolean `exclusiveMinimum`/`exclusiveMaximum`
/// become numeric bounds.
fn normalize_30(schema: &mut Value) {
    match schema {
        Value::Object(map) => {
            if map.remove("nullable") == Some(Value::Bool(true)) {
                match map.get_mut("type") {
                    Some(Value::String(t)) => {
                        let t = t.clone();
                        map.insert("type".to_owned(), json!([t, "null"]));
                    }
                    Some(Value::Array(types)) => types.push(json!("null")),
                    _ => {}
                }
            }
            for (flag, bound) in [
                ("exclusiveMinimum", "minimum"),
                ("exclusiveMaximum", "maximum"),
            ] {
                if let Some(Value::Bool(exclusive)) = map.get(flag).cloned() {
                    map.remove(flag);
                    if exclusive && let Some(value) = map.remove(bound) {
                        map.insert(flag.to_owned(), value);
                    }
                }
            }
            for value in map.values_mut() {
                normalize_30(value);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(normalize_30),
        _ => {}
    }
}

/// An operation forwarding to `endpoint`.
fn forwarder(spec: OperationSpec, endpoint: Endpoint, target: Target) -> OperationDef {
    let op_type = spec.op_type;
    let def = OperationDef::from_spec(spec);
    let endpoint = Arc::new(endpoint);
    match op_type {
        OpType::Subscription => def.stream(move |cx, input| target.stream(&cx, &endpoint, input)),
        OpType::Query | OpType::Mutation => def.unary(move |cx, input| {
            let target = target.clone();
            let endpoint = endpoint.clone();
            async move { target.unary(&cx, &endpoint, input).await }
        }),
    }
}

/// `from_jsonschema`: one operation from a full spec, a method and a path
/// template (`{name}` placeholders filled from the input). The spec's name is
/// placed under the import's namespace unless it already starts with it.
pub fn from_jsonschema(
    spec: OperationSpec,
    method: &str,
    path: &str,
    import: &HttpImport,
    outbound: Arc<Outbound>,
) -> Result<OperationDef, OpenApiError> {
    check_namespace(&import.namespace)?;
    let invalid = |reason: String| OpenApiError::Invalid {
        at: spec.name.clone(),
        reason,
    };
    let method = Method::from_bytes(method.to_ascii_uppercase().as_bytes())
        .map_err(|_| invalid(format!("invalid method `{method}`")))?;
    if !path.starts_with('/') {
        return Err(invalid(format!("path `{path}` must start with `/`")));
    }
    let base_url = import.base_url.clone().ok_or(OpenApiError::NoBaseUrl)?;
    let params = path
        .split('/')
        .filter_map(|s| s.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
        .map(|name| (name.to_owned(), ParamIn::Path))
        .collect();
    let prefix = format!("{}/", import.namespace);
    let name = if spec.name.starts_with(&prefix) {
        spec.name.clone()
    } else {
        format!("{prefix}{}", spec.name.trim_start_matches('/'))
    };
    let spec = OperationSpec {
        name,
        namespace: import.namespace.clone(),
        visibility: import.visibility,
        ..spec
    };
    let target = Target {
        outbound,
        auth: import.auth.clone(),
        capability: import.namespace.clone(),
        insecure: import.insecure,
    };
    Ok(forwarder(
        spec,
        Endpoint {
            method,
            base_url,
            path: path.to_owned(),
            params,
        },
        target,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn import() -> HttpImport {
        HttpImport {
            namespace: "pets".to_owned(),
            base_url: Some("http://127.0.0.1:9".to_owned()),
            auth: Auth::None,
            visibility: Visibility::Internal,
            insecure: false,
        }
    }

    fn outbound() -> Arc<Outbound> {
        Arc::new(Outbound::new(Default::default()).unwrap())
    }

    fn specs(doc: &str) -> Result<Vec<OperationSpec>, OpenApiError> {
        Ok(from_openapi(doc.as_bytes(), &import(), outbound())?
            .into_iter()
            .map(|d| d.spec().clone())
            .collect())
    }

    #[test]
    fn names_fall_back_to_method_and_path() {
        let doc = r#"{"openapi":"3.1.0","paths":{
            "/":{"get":{}},
            "/widgets/{id}/parts":{"delete":{}},
            "/x":{"post":{"operationId":"make x!"}}}}"#;
        let names: Vec<String> = specs(doc).unwrap().into_iter().map(|s| s.name).collect();
        assert_eq!(
            names,
            ["pets/get_root", "pets/delete_widgets_parts", "pets/make_x_"]
        );
    }

    #[test]
    fn yaml_is_read_when_json_fails_and_refs_are_inlined() {
        let doc = "openapi: 3.0.3\npaths:\n  /a/{id}:\n    parameters:\n      - $ref: '#/components/parameters/Id'\n    put:\n      requestBody:\n        content:\n          application/json:\n            schema: {$ref: '#/components/schemas/Node'}\n      responses:\n        '404': {description: gone}\ncomponents:\n  parameters:\n    Id: {name: id, in: path, required: true, schema: {type: integer, minimum: 0, exclusiveMinimum: true}}\n  schemas:\n    Node:\n      type: object\n      nullable: true\n      properties:\n        child: {$ref: '#/components/schemas/Node'}\n";
        let spec = specs(doc).unwrap().remove(0);
        assert_eq!(spec.op_type, OpType::Mutation);
        assert_eq!(
            spec.input_schema["properties"]["id"],
            json!({"type": "integer", "exclusiveMinimum": 0})
        );
        assert_eq!(
            spec.input_schema["properties"]["body"]["type"],
            json!(["object", "null"])
        );
        assert_eq!(
            spec.input_schema["properties"]["body"]["properties"]["child"],
            json!({})
        );
        assert_eq!(spec.input_schema["required"], json!(["id", "body"]));
        assert_eq!(spec.error_schemas[0].code, "HTTP_404");
        assert_eq!(spec.error_schemas[0].http_status, Some(404));
    }

    #[test]
    fn bad_documents_are_refused_with_the_reason() {
        let external = r##"{"openapi":"3.1.0","paths":{"/a":{"get":{"parameters":[{"$ref":"other.json#/p"}]}}}}"##;
        assert!(
            matches!(specs(external), Err(OpenApiError::ExternalRef(r)) if r == "other.json#/p")
        );
        let dangling =
            r##"{"openapi":"3.1.0","paths":{"/a":{"get":{"parameters":[{"$ref":"#/nope"}]}}}}"##;
        assert!(matches!(
            specs(dangling),
            Err(OpenApiError::UnresolvedRef(_))
        ));
        assert!(matches!(
            specs(r#"{"swagger":"2.0"}"#),
            Err(OpenApiError::Version(_))
        ));
        assert!(matches!(specs("{ nope"), Err(OpenApiError::Syntax { .. })));
        let too_big = vec![b' '; MAX_DOCUMENT + 1];
        assert!(matches!(
            parse_document(&too_big),
            Err(OpenApiError::TooLarge)
        ));
    }

    #[test]
    fn an_sse_response_makes_a_subscription() {
        let doc = r#"{"openapi":"3.1.0","paths":{"/events":{"get":{"operationId":"events",
            "responses":{"200":{"description":"x","content":{"text/event-stream":{}}}}}}}}"#;
        assert_eq!(specs(doc).unwrap()[0].op_type, OpType::Subscription);
    }
}
