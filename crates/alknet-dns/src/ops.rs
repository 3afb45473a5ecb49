//! The call operations `dns/*`: change and read the node's zones.
//!
//! - `dns/set {name, type, values, ttl?}` replaces the record set of that
//!   name and type (values in zone-file text: `"192.0.2.1"`,
//!   `"10 mail.example.net."`, `"\"v=spf1 -all\""`);
//! - `dns/delete {name, type?}` deletes one set, or every record at the name;
//! - `dns/list {zone?}` lists the records of the zones the caller may read.
//!
//! Changing a zone needs the scope `dns:write:<zone>`, reading it through
//! `dns/list` `dns:read:<zone>` or write (`*` patterns; `admin` grants
//! all). Every change is on disk before it is acknowledged or served.

use alknet_call::CallError;
use alknet_call::registry::{Context, OperationDef, RegistrationError, Registry};
use alknet_core::Identity;
use alknet_core::pattern::matches;
use hickory_proto::rr::{LowerName, Name, RData, RecordType};
use serde_json::{Value, json};

use crate::config::zone_origin;
use crate::store::{StoreError, parse_value, present, record_type};
use crate::zone::{MAX_SET, MAX_TTL, Zone, ZoneError, fqdn};
use crate::{Dns, locate};

/// The TTL of a set whose `ttl` is not given.
pub const DEFAULT_TTL: u32 = 3600;

/// Registers `dns/set`, `dns/delete`, `dns/list` and `dns/resolve`.
pub fn register(registry: &Registry, dns: &Dns) -> Result<(), RegistrationError> {
    registry.register_all(vec![
        set(dns.clone()),
        delete(dns.clone()),
        list(dns.clone()),
        resolve(dns.clone()),
    ])
}

/// What a caller may do to one zone.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Grant {
    None,
    Read,
    Write,
}

/// The grant `identity`'s scopes give on the zone `origin`
/// (`example.net.`; patterns are written without the final dot).
fn grant(identity: Option<&Identity>, origin: &Name) -> Grant {
    let Some(identity) = identity else {
        return Grant::None;
    };
    let zone = origin.to_ascii();
    let zone = zone.trim_end_matches('.');
    let mut best = Grant::None;
    for scope in &identity.scopes {
        let found = if scope == "admin" {
            Grant::Write
        } else if let Some(pattern) = scope.strip_prefix("dns:write:") {
            if matches(pattern.trim_end_matches('.'), zone) {
                Grant::Write
            } else {
                Grant::None
            }
        } else if let Some(pattern) = scope.strip_prefix("dns:read:") {
            if matches(pattern.trim_end_matches('.'), zone) {
                Grant::Read
            } else {
                Grant::None
            }
        } else {
            Grant::None
        };
        best = best.max(found);
    }
    best
}

fn parse_name(input: &Value) -> Result<Name, CallError> {
    let text = input["name"].as_str().unwrap_or_default();
    let name: Name = text
        .parse()
        .map_err(|error| CallError::invalid_input(format!("name {text:?}: {error}")))?;
    Ok(fqdn(&name))
}

fn zone_error(error: ZoneError) -> CallError {
    CallError::invalid_input(error.to_string())
}

fn store_error(error: StoreError) -> CallError {
    match error {
        StoreError::Zone(error) => zone_error(error),
        StoreError::NoZone(_) => CallError::not_found(error.to_string()),
        StoreError::NotRepresentable(_) => CallError::invalid_input(error.to_string()),
        StoreError::Io { .. } | StoreError::Corrupt { .. } => {
            tracing::warn!("DNS zone change failed: {error}");
            CallError::internal(error.to_string())
        }
    }
}

/// The zone `name` is in, if the caller may write it.
fn writable_zone(dns: &Dns, cx: &Context, name: &Name) -> Result<Name, CallError> {
    let zones = dns.store().current();
    let Some(zone) = zones.zone_for(&LowerName::new(name)) else {
        return Err(CallError::not_found(format!(
            "{name} is not inside any zone of this node"
        )));
    };
    let origin = zone.origin().clone();
    if grant(cx.identity.as_deref(), &origin) < Grant::Write {
        let zone = origin.to_ascii();
        return Err(CallError::forbidden(format!(
            "changing the zone {zone} needs the scope dns:write:{}",
            zone.trim_end_matches('.')
        )));
    }
    Ok(origin)
}

fn identity_of(cx: &Context) -> &str {
    cx.identity
        .as_ref()
        .map_or("anonymous", |identity| identity.id.as_str())
}

fn set(dns: Dns) -> OperationDef {
    OperationDef::mutation("dns/set")
        .description(
            "Replace the record set of a name and type in one of the node's zones \
             (values in zone-file text); needs dns:write:<zone>",
        )
        .input_schema(json!({
            "type": "object",
            "properties": {
                "name": {"type": "string", "minLength": 1, "maxLength": 255},
                "type": {"type": "string", "minLength": 1, "maxLength": 10},
                "values": {
                    "type": "array",
                    "minItems": 1,
                    "maxItems": MAX_SET,
                    "items": {"type": "string", "minLength": 1, "maxLength": 4096}
                },
                "ttl": {"type": "integer", "minimum": 0, "maximum": MAX_TTL}
            },
            "required": ["name", "type", "values"],
            "additionalProperties": false
        }))
        .unary(move |cx, input| {
            let dns = dns.clone();
            async move {
                let name = parse_name(&input)?;
                let kind =
                    record_type(input["type"].as_str().unwrap_or_default()).map_err(zone_error)?;
                let ttl = input["ttl"]
                    .as_u64()
                    .map_or(DEFAULT_TTL, |ttl| ttl.min(u64::from(MAX_TTL)) as u32);
                let values = input["values"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|value| parse_value(kind, value.as_str().unwrap_or_default()))
                    .collect::<Result<Vec<RData>, _>>()
                    .map_err(zone_error)?;
                writable_zone(&dns, &cx, &name)?;
                let zone = dns
                    .store()
                    .change(&name, |zone| zone.with_set(&name, kind, ttl, values))
                    .await
                    .map_err(store_error)?;
                tracing::info!(%name, %kind, identity = identity_of(&cx), "DNS record set changed");
                Ok(json!({
                    "zone": zone.origin().to_string(),
                    "serial": zone.soa_data().map(|soa| soa.serial),
                    "records": records_at(&zone, &name, Some(kind)),
                }))
            }
        })
}

fn delete(dns: Dns) -> OperationDef {
    OperationDef::mutation("dns/delete")
        .description(
            "Delete a name's record set of one type, or every record at the name \
             (the zone's SOA stays); needs dns:write:<zone>",
        )
        .input_schema(json!({
            "type": "object",
            "properties": {
                "name": {"type": "string", "minLength": 1, "maxLength": 255},
                "type": {"type": "string", "minLength": 1, "maxLength": 10}
            },
            "required": ["name"],
            "additionalProperties": false
        }))
        .unary(move |cx, input| {
            let dns = dns.clone();
            async move {
                let name = parse_name(&input)?;
                let kind = input["type"]
                    .as_str()
                    .map(record_type)
                    .transpose()
                    .map_err(zone_error)?;
                writable_zone(&dns, &cx, &name)?;
                let before = dns.store().current();
                let deleted = before
                    .zone_for(&LowerName::new(&name))
                    .map_or(0, |zone| records_at(zone, &name, kind).len());
                let zone = dns
                    .store()
                    .change(&name, |zone| zone.without(&name, kind))
                    .await
                    .map_err(store_error)?;
                tracing::info!(%name, kind = ?kind, identity = identity_of(&cx), "DNS records deleted");
                Ok(json!({
                    "zone": zone.origin().to_string(),
                    "serial": zone.soa_data().map(|soa| soa.serial),
                    "deleted": deleted.saturating_sub(records_at(&zone, &name, kind).len()),
                }))
            }
        })
}

fn list(dns: Dns) -> OperationDef {
    OperationDef::query("dns/list")
        .description(
            "The records of the node's zones the caller may read (dns:read:<zone>), \
             or of one zone",
        )
        .input_schema(json!({
            "type": "object",
            "properties": {"zone": {"type": "string", "minLength": 1, "maxLength": 255}},
            "additionalProperties": false
        }))
        .unary(move |cx, input| {
            let dns = dns.clone();
            async move {
                let only = input["zone"]
                    .as_str()
                    .map(zone_origin)
                    .transpose()
                    .map_err(CallError::invalid_input)?;
                let zones = dns.store().current();
                let mut listed: Vec<&Zone> = zones
                    .zones()
                    .map(AsRef::as_ref)
                    .filter(|zone| only.as_ref().is_none_or(|o| o == zone.origin()))
                    .filter(|zone| grant(cx.identity.as_deref(), zone.origin()) >= Grant::Read)
                    .collect();
                if let Some(only) = &only
                    && listed.is_empty()
                {
                    return Err(CallError::not_found(format!(
                        "no zone {only} that this caller may read"
                    )));
                }
                listed.sort_by(|a, b| a.origin().cmp(b.origin()));
                let zones: Vec<Value> = listed
                    .into_iter()
                    .map(|zone| {
                        json!({
                            "zone": zone.origin().to_string(),
                            "serial": zone.soa_data().map(|soa| soa.serial),
                            "records": zone.records().into_iter().map(record_json).collect::<Vec<_>>(),
                        })
                    })
                    .collect();
                Ok(json!({"zones": zones}))
            }
        })
}

fn resolve(dns: Dns) -> OperationDef {
    OperationDef::query("dns/resolve")
        .description(
            "What this node sees for a name: a node id (ed25519:<hex>), a pkarr key \
             (<z32>) or a name under one, or a name in one of its zones; with where \
             the node of a pkarr key is reached",
        )
        .input_schema(json!({
            "type": "object",
            "properties": {"name": {"type": "string", "minLength": 1, "maxLength": 255}},
            "required": ["name"],
            "additionalProperties": false
        }))
        .unary(move |_cx, input| {
            let dns = dns.clone();
            async move {
                let text = input["name"].as_str().unwrap_or_default();
                if let (Some(key), Some(resolver)) = (locate::key_of(text), dns.resolver()) {
                    let packet = resolver
                        .resolve(&key)
                        .await
                        .map_err(|error| CallError::unavailable(error.to_string(), 5))?
                        .ok_or_else(|| {
                            CallError::not_found(format!(
                                "no pkarr packet is published for {}.",
                                key.to_z32()
                            ))
                        })?;
                    let records: Vec<Value> =
                        hickory_proto::op::Message::from_vec(&packet.encoded_packet())
                            .map(|message| message.answers.iter().map(record_json).collect())
                            .unwrap_or_default();
                    let node = locate::locate(resolver, &key).await.ok();
                    return Ok(json!({
                        "name": format!("{}.", key.to_z32()),
                        "records": records,
                        "node": node,
                    }));
                }
                let name = parse_name(&input)?;
                let zones = dns.store().current();
                let zone = zones.zone_for(&LowerName::new(&name)).ok_or_else(|| {
                    CallError::not_found(format!(
                        "{name} is neither a pkarr name nor inside a zone of this node"
                    ))
                })?;
                Ok(json!({
                    "name": name.to_string(),
                    "records": records_at(zone, &name, None),
                    "node": null,
                }))
            }
        })
}

fn record_json(record: &hickory_proto::rr::Record) -> Value {
    json!({
        "name": record.name.to_string(),
        "type": record.record_type().to_string(),
        "ttl": record.ttl,
        "value": present(&record.data),
    })
}

/// The records at `name` (of `kind`, if given), as `dns/list` shows them.
fn records_at(zone: &Zone, name: &Name, kind: Option<RecordType>) -> Vec<Value> {
    let key = LowerName::new(name);
    zone.records()
        .into_iter()
        .filter(|record| LowerName::new(&record.name) == key)
        .filter(|record| kind.is_none_or(|kind| record.record_type() == kind))
        .map(record_json)
        .collect()
}

#[cfg(test)]
mod tests {
    use std::str::FromStr;

    use super::*;

    fn identity(scopes: &[&str]) -> Identity {
        Identity::new("someone", scopes.iter().copied())
    }

    #[test]
    fn scopes_grant_per_zone() {
        let zone = Name::from_str("example.net.").unwrap();
        assert_eq!(grant(None, &zone), Grant::None);
        assert_eq!(grant(Some(&identity(&["admin"])), &zone), Grant::Write);
        assert_eq!(
            grant(Some(&identity(&["dns:write:example.net"])), &zone),
            Grant::Write
        );
        assert_eq!(
            grant(Some(&identity(&["dns:write:*.net"])), &zone),
            Grant::Write
        );
        assert_eq!(grant(Some(&identity(&["dns:read:*"])), &zone), Grant::Read);
        assert_eq!(
            grant(Some(&identity(&["dns:write:example.org"])), &zone),
            Grant::None
        );
        assert_eq!(grant(Some(&identity(&["git:write:*"])), &zone), Grant::None);
    }
}
