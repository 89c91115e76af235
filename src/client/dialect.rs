//! What a connector learns about the SCIM server it talks to beyond `/ServiceProviderConfig`:
//! the attributes its `/Schemas` declares (and which it requires), whether PATCH, filters
//! and paging parameters really work. The host may keep it with the connection as an
//! opaque JSON document, so later connectors start out knowing.
//!
//! Everything here is pure: reading a `/Schemas` answer, shaping a resource to it,
//! listing the required attributes a mapping leaves empty, and the document format.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Map, Value, json};

use crate::client::capabilities::field;
use crate::scim::attr::is_core_urn;

/// The core User schema's URN.
pub const CORE_USER: &str = "urn:ietf:params:scim:schemas:core:2.0:User";

/// The format of [`Dialect::to_document`]; a change to it changes this number.
const DOCUMENT_VERSION: u32 = 1;

/// What a server lets a client do with an attribute (RFC 7643 §7 `mutability`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mutability {
    /// Set on creation and changed at will (the default).
    #[default]
    ReadWrite,
    /// Set by the server only: never sent.
    ReadOnly,
    /// Set on creation, never changed after.
    Immutable,
    /// Taken but never returned (a password): never compared with what the server says.
    WriteOnly,
}

impl Mutability {
    /// A declared `mutability`; anything unknown (or absent) is RFC 7643's default.
    fn parse(value: Option<&Value>) -> Self {
        match value
            .and_then(Value::as_str)
            .map(str::to_ascii_lowercase)
            .as_deref()
        {
            Some("readonly") => Mutability::ReadOnly,
            Some("immutable") => Mutability::Immutable,
            Some("writeonly") => Mutability::WriteOnly,
            _ => Mutability::ReadWrite,
        }
    }

    /// The name RFC 7643 gives it.
    pub fn as_str(self) -> &'static str {
        match self {
            Mutability::ReadWrite => "readWrite",
            Mutability::ReadOnly => "readOnly",
            Mutability::Immutable => "immutable",
            Mutability::WriteOnly => "writeOnly",
        }
    }
}

/// One declared attribute: its sub-attributes (lower-cased) when it is complex, whether it
/// is multi-valued, and which of its sub-attributes are required.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DeclaredAttribute {
    /// The name as the server spells it.
    pub name: String,
    /// `None` for a simple attribute; the declared sub-attributes, lower-cased, otherwise.
    pub sub_attributes: Option<BTreeSet<String>>,
    /// The attribute is required.
    pub required: bool,
    /// Its required sub-attributes, as the server spells them.
    pub required_subs: Vec<String>,
    /// Its declared mutability.
    pub mutability: Mutability,
    /// The mutability of each sub-attribute (lower-cased) that is not `readWrite`.
    pub sub_mutability: BTreeMap<String, Mutability>,
}

/// The User attributes a server declares: the core schema's, and each extension's that the
/// User resource type lists (or that `/Schemas` has, when `/ResourceTypes` could not be read).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DeclaredSchema {
    /// Attributes by lower-cased schema URN, then lower-cased attribute name.
    schemas: BTreeMap<String, BTreeMap<String, DeclaredAttribute>>,
}

/// Attributes every resource has (RFC 7643 §3.1), declared or not.
const COMMON: &[&str] = &["schemas", "id", "externalid", "meta"];

impl DeclaredSchema {
    /// Reads `/Schemas` (a ListResponse, or a bare list as some servers send) and, when
    /// there is one, `/ResourceTypes`. `None` when the answer has no core User schema: then
    /// RFC 7643's schema applies and nothing is left out.
    pub fn from_answers(schemas: &Value, resource_types: Option<&Value>) -> Option<Self> {
        let items = resources(schemas)?;
        let extensions: Option<Vec<String>> = resource_types.and_then(resources).map(|types| {
            types
                .iter()
                .filter(|t| {
                    field(t, "schema")
                        .and_then(Value::as_str)
                        .is_some_and(|s| s.eq_ignore_ascii_case(CORE_USER))
                })
                .filter_map(|t| field(t, "schemaExtensions").and_then(Value::as_array))
                .flatten()
                .filter_map(|e| field(e, "schema").and_then(Value::as_str))
                .map(str::to_ascii_lowercase)
                .collect()
        });
        let mut out = DeclaredSchema::default();
        for schema in items {
            let Some(id) = field(schema, "id").and_then(Value::as_str) else {
                continue;
            };
            let id = id.to_ascii_lowercase();
            let is_core = id == CORE_USER.to_ascii_lowercase();
            // Other core schemas (Group, ServiceProviderConfig…) are not the User's business.
            if !is_core && is_core_urn(&id) {
                continue;
            }
            if !is_core && extensions.as_ref().is_some_and(|e| !e.contains(&id)) {
                continue;
            }
            let Some(attrs) = field(schema, "attributes").and_then(Value::as_array) else {
                continue;
            };
            let declared = attrs
                .iter()
                .filter_map(declared_attribute)
                .map(|a| (a.name.to_ascii_lowercase(), a))
                .collect();
            out.schemas.insert(id, declared);
        }
        out.schemas
            .contains_key(&CORE_USER.to_ascii_lowercase())
            .then_some(out)
    }

    /// `resource` with every attribute and sub-attribute the server does not declare left
    /// out (extension URNs in `schemas` follow their objects). `left_out` receives each
    /// path dropped, such as `emails.primary`.
    pub fn shape(&self, resource: &Value, left_out: &mut Vec<String>) -> Value {
        let Some(obj) = resource.as_object() else {
            return resource.clone();
        };
        let core = self.schemas.get(&CORE_USER.to_ascii_lowercase());
        let mut out = Map::new();
        for (key, value) in obj {
            let lower = key.to_ascii_lowercase();
            if COMMON.contains(&lower.as_str()) {
                out.insert(key.clone(), value.clone());
            } else if lower.starts_with("urn:") {
                match (self.schemas.get(&lower), value.as_object()) {
                    (Some(attrs), Some(inner)) => {
                        let shaped = shape_attributes(attrs, inner, key, left_out);
                        if !shaped.is_empty() {
                            out.insert(key.clone(), Value::Object(shaped));
                        }
                    }
                    _ => left_out.push(key.clone()),
                }
            } else if let Some(core) = core {
                let mut single = Map::new();
                single.insert(key.clone(), value.clone());
                out.extend(shape_attributes(core, &single, "", left_out));
            } else {
                out.insert(key.clone(), value.clone());
            }
        }
        // An extension left out takes its URN out of `schemas` too.
        if let Some(Value::Array(urns)) = out.get("schemas").cloned() {
            let kept: Vec<Value> = urns
                .into_iter()
                .filter(|u| {
                    u.as_str().is_none_or(|u| {
                        u.eq_ignore_ascii_case(CORE_USER)
                            || out.keys().any(|k| k.eq_ignore_ascii_case(u))
                    })
                })
                .collect();
            out.insert("schemas".into(), Value::Array(kept));
        }
        Value::Object(out)
    }

    /// The mutability of `attr`, or of its sub-attribute `sub`, in the schema `urn` (the
    /// core User schema when `None`). A sub-attribute has its parent's mutability unless it
    /// declares its own, and a read-only parent makes it read-only; anything undeclared is
    /// `readWrite`.
    pub fn mutability(&self, urn: Option<&str>, attr: &str, sub: Option<&str>) -> Mutability {
        let urn = urn.map_or_else(|| CORE_USER.to_ascii_lowercase(), str::to_ascii_lowercase);
        let Some(a) = self
            .schemas
            .get(&urn)
            .and_then(|s| s.get(&attr.to_ascii_lowercase()))
        else {
            return Mutability::ReadWrite;
        };
        match sub {
            None => a.mutability,
            Some(_) if a.mutability == Mutability::ReadOnly => Mutability::ReadOnly,
            Some(sub) => a
                .sub_mutability
                .get(&sub.to_ascii_lowercase())
                .copied()
                .unwrap_or(a.mutability),
        }
    }

    /// Whether the schema declares any attribute or sub-attribute with a mutability `which`
    /// accepts, so that callers can skip the walk on servers that declare none.
    pub fn declares(&self, which: impl Fn(Mutability) -> bool) -> bool {
        self.schemas
            .values()
            .flat_map(BTreeMap::values)
            .any(|a| which(a.mutability) || a.sub_mutability.values().any(|m| which(*m)))
    }

    /// `resource` without the attributes and sub-attributes whose mutability `drop`
    /// accepts; `removed` receives each path taken out (`externalId`, `name.givenName`,
    /// `urn:…:User:employeeNumber`). `schemas`, `id` and `meta` are left as they are.
    pub fn without(
        &self,
        resource: &Value,
        drop: impl Fn(Mutability) -> bool,
        removed: &mut Vec<String>,
    ) -> Value {
        let Some(obj) = resource.as_object() else {
            return resource.clone();
        };
        let mut out = Map::new();
        for (key, value) in obj {
            let lower = key.to_ascii_lowercase();
            if matches!(lower.as_str(), "schemas" | "id" | "meta") {
                out.insert(key.clone(), value.clone());
            } else if lower.starts_with("urn:") {
                match value.as_object() {
                    Some(inner) if self.schemas.contains_key(&lower) => {
                        let kept = self.without_in(Some(&lower), inner, key, &drop, removed);
                        if !kept.is_empty() {
                            out.insert(key.clone(), Value::Object(kept));
                        }
                    }
                    _ => {
                        out.insert(key.clone(), value.clone());
                    }
                }
            } else {
                let mut single = Map::new();
                single.insert(key.clone(), value.clone());
                out.extend(self.without_in(None, &single, "", &drop, removed));
            }
        }
        Value::Object(out)
    }

    fn without_in(
        &self,
        urn: Option<&str>,
        obj: &Map<String, Value>,
        prefix: &str,
        drop: &impl Fn(Mutability) -> bool,
        removed: &mut Vec<String>,
    ) -> Map<String, Value> {
        let label = |name: &str| attribute_label(prefix, name);
        let mut out = Map::new();
        for (key, value) in obj {
            if drop(self.mutability(urn, key, None)) {
                removed.push(label(key));
                continue;
            }
            let mut cut = |item: &Map<String, Value>| -> Map<String, Value> {
                let mut kept = Map::new();
                for (k, v) in item {
                    if drop(self.mutability(urn, key, Some(k))) {
                        let path = label(&format!("{key}.{k}"));
                        if !removed.contains(&path) {
                            removed.push(path);
                        }
                    } else {
                        kept.insert(k.clone(), v.clone());
                    }
                }
                kept
            };
            let kept = match value {
                Value::Object(item) => {
                    let kept = cut(item);
                    if kept.is_empty() && !item.is_empty() {
                        continue;
                    }
                    Value::Object(kept)
                }
                Value::Array(items) => Value::Array(
                    items
                        .iter()
                        .filter_map(|i| match i {
                            Value::Object(item) => {
                                let kept = cut(item);
                                (kept.is_empty() == item.is_empty()).then_some(Value::Object(kept))
                            }
                            other => Some(other.clone()),
                        })
                        .collect(),
                ),
                other => other.clone(),
            };
            out.insert(key.clone(), kept);
        }
        out
    }

    /// The immutable attributes and sub-attributes of single-valued complex attributes
    /// whose value in `new` differs from the one in `old`: each path with the value `old`
    /// has (`None` when it has none). Multi-valued attributes are not compared.
    pub fn immutable_changes(&self, old: &Value, new: &Value) -> Vec<(String, Option<Value>)> {
        let mut out = Vec::new();
        let (Some(old), Some(new)) = (old.as_object(), new.as_object()) else {
            return out;
        };
        let mut compare = |urn: Option<&str>,
                           prefix: &str,
                           old: Option<&Map<String, Value>>,
                           new: &Map<String, Value>| {
            let label = |name: &str| attribute_label(prefix, name);
            for (key, value) in new {
                let was = old.and_then(|o| get_ci(o, key));
                if self.mutability(urn, key, None) == Mutability::Immutable {
                    if was != Some(value) {
                        out.push((label(key), was.cloned()));
                    }
                    continue;
                }
                let Value::Object(subs) = value else {
                    continue;
                };
                for (sub, v) in subs {
                    if self.mutability(urn, key, Some(sub)) != Mutability::Immutable {
                        continue;
                    }
                    let was_sub = was.and_then(Value::as_object).and_then(|o| get_ci(o, sub));
                    if was_sub != Some(v) {
                        out.push((label(&format!("{key}.{sub}")), was_sub.cloned()));
                    }
                }
            }
        };
        for (key, value) in new {
            let lower = key.to_ascii_lowercase();
            if matches!(lower.as_str(), "schemas" | "id" | "meta") {
                continue;
            }
            if lower.starts_with("urn:") {
                if let Some(inner) = value.as_object() {
                    let was = get_ci(old, key).and_then(Value::as_object);
                    compare(Some(&lower), key, was, inner);
                }
            } else {
                let mut single = Map::new();
                single.insert(key.clone(), value.clone());
                compare(None, "", Some(old), &single);
            }
        }
        out
    }

    /// Copies into `old` (what the server returned, projected) the write-only values of
    /// `new` it lacks: a server never returns them, so they are never compared with it.
    pub fn fill_unreturned(&self, old: &mut Value, new: &Value) {
        let (Some(old), Some(new)) = (old.as_object_mut(), new.as_object()) else {
            return;
        };
        let write_only = Mutability::WriteOnly;
        for (key, value) in new {
            let lower = key.to_ascii_lowercase();
            let urn = lower.starts_with("urn:").then_some(lower.as_str());
            if let (Some(urn), Some(inner)) = (urn, value.as_object()) {
                for (k, v) in inner {
                    if self.mutability(Some(urn), k, None) == write_only {
                        let entry = old
                            .entry(key.clone())
                            .or_insert_with(|| Value::Object(Map::new()));
                        if let Some(o) = entry.as_object_mut()
                            && get_ci(o, k).is_none()
                        {
                            o.insert(k.clone(), v.clone());
                        }
                    }
                }
                continue;
            }
            if self.mutability(None, key, None) == write_only {
                if get_ci(old, key).is_none() {
                    old.insert(key.clone(), value.clone());
                }
                continue;
            }
            let Value::Object(subs) = value else {
                continue;
            };
            for (sub, v) in subs {
                if self.mutability(None, key, Some(sub)) != write_only {
                    continue;
                }
                let entry = old
                    .entry(key.clone())
                    .or_insert_with(|| Value::Object(Map::new()));
                if let Some(o) = entry.as_object_mut()
                    && get_ci(o, sub).is_none()
                {
                    o.insert(sub.clone(), v.clone());
                }
            }
        }
    }

    /// The required attributes (`userName`, `name.familyName`, `urn:…:employeeNumber`) that
    /// none of `targets` (the mapping's target paths) fills.
    pub fn unfilled_required(&self, targets: &[String]) -> Vec<String> {
        let targets: Vec<String> = targets.iter().map(|t| t.to_ascii_lowercase()).collect();
        let fills = |path: &str| {
            targets.iter().any(|t| {
                t == path
                    || t.strip_prefix(path)
                        .is_some_and(|rest| rest.starts_with('.') || rest.starts_with('['))
            })
        };
        let mut out = Vec::new();
        for (urn, attrs) in &self.schemas {
            let prefix = if *urn == CORE_USER.to_ascii_lowercase() {
                String::new()
            } else {
                format!("{urn}:")
            };
            for (lower, attr) in attrs {
                let base = format!("{prefix}{lower}");
                let label = |name: &str| {
                    if prefix.is_empty() {
                        name.to_string()
                    } else {
                        format!("{urn}:{name}")
                    }
                };
                if attr.required && !fills(&base) && lower != "id" {
                    out.push(label(&attr.name));
                    continue;
                }
                if !attr.required && !fills(&base) {
                    continue;
                }
                for sub in &attr.required_subs {
                    let sub_lower = sub.to_ascii_lowercase();
                    let filled = targets.iter().any(|t| {
                        t == &format!("{base}.{sub_lower}")
                            || (t.starts_with(&format!("{base}["))
                                && t.ends_with(&format!("].{sub_lower}")))
                    });
                    if !filled {
                        out.push(label(&format!("{}.{sub}", attr.name)));
                    }
                }
            }
        }
        out
    }

    /// The mapping targets (as the mapping prints them) that the server does not declare,
    /// each with the part it lacks: `emails[type eq "work"].value (emails.type)`.
    pub fn undeclared_targets(&self, targets: &[String]) -> Vec<String> {
        let mut out = Vec::new();
        for target in targets {
            let Ok(path) = crate::scim::path::AttrPath::parse(target) else {
                continue;
            };
            let urn = match &path.urn {
                Some(u) if !is_core_urn(u) => u.to_ascii_lowercase(),
                _ => CORE_USER.to_ascii_lowercase(),
            };
            let Some(attrs) = self.schemas.get(&urn) else {
                out.push(format!("{target} (schema {urn})"));
                continue;
            };
            let Some(attr) = attrs.get(&path.attr.to_ascii_lowercase()) else {
                out.push(format!("{target} ({})", path.attr));
                continue;
            };
            let Some(subs) = &attr.sub_attributes else {
                continue;
            };
            let mut needed: Vec<&str> = Vec::new();
            if path.filter.is_some() {
                needed.push("type");
            }
            needed.push(path.sub_attr.as_deref().unwrap_or("value"));
            if path.filter.is_none() && path.sub_attr.is_none() && subs.is_empty() {
                continue;
            }
            for sub in needed {
                if !subs.contains(&sub.to_ascii_lowercase()) {
                    out.push(format!("{target} ({}.{sub})", path.attr));
                }
            }
        }
        out
    }

    fn to_value(&self) -> Value {
        let schemas: Map<String, Value> = self
            .schemas
            .iter()
            .map(|(urn, attrs)| {
                let list: Vec<Value> = attrs
                    .values()
                    .map(|a| {
                        json!({
                            "name": a.name,
                            "subAttributes": a.sub_attributes,
                            "required": a.required,
                            "requiredSubAttributes": a.required_subs,
                            "mutability": a.mutability.as_str(),
                            "subMutability": a.sub_mutability.iter()
                                .map(|(k, m)| (k.clone(), Value::from(m.as_str())))
                                .collect::<Map<String, Value>>(),
                        })
                    })
                    .collect();
                (urn.clone(), Value::Array(list))
            })
            .collect();
        Value::Object(schemas)
    }

    fn from_value(value: &Value) -> Option<Self> {
        let mut out = DeclaredSchema::default();
        for (urn, list) in value.as_object()? {
            let mut attrs = BTreeMap::new();
            for a in list.as_array()? {
                let name = a.get("name")?.as_str()?.to_string();
                let sub_attributes = match a.get("subAttributes") {
                    Some(Value::Array(subs)) => Some(
                        subs.iter()
                            .filter_map(Value::as_str)
                            .map(str::to_ascii_lowercase)
                            .collect(),
                    ),
                    _ => None,
                };
                let required_subs = a
                    .get("requiredSubAttributes")
                    .and_then(Value::as_array)
                    .map(|s| {
                        s.iter()
                            .filter_map(Value::as_str)
                            .map(String::from)
                            .collect()
                    })
                    .unwrap_or_default();
                attrs.insert(
                    name.to_ascii_lowercase(),
                    DeclaredAttribute {
                        name,
                        sub_attributes,
                        required: a.get("required") == Some(&Value::Bool(true)),
                        required_subs,
                        mutability: Mutability::parse(a.get("mutability")),
                        sub_mutability: a
                            .get("subMutability")
                            .and_then(Value::as_object)
                            .map(|m| {
                                m.iter()
                                    .map(|(k, v)| {
                                        (k.to_ascii_lowercase(), Mutability::parse(Some(v)))
                                    })
                                    .filter(|(_, m)| *m != Mutability::ReadWrite)
                                    .collect()
                            })
                            .unwrap_or_default(),
                    },
                );
            }
            out.schemas.insert(urn.to_ascii_lowercase(), attrs);
        }
        out.schemas
            .contains_key(&CORE_USER.to_ascii_lowercase())
            .then_some(out)
    }
}

/// The member `key` of `obj`, matched without regard to case (SCIM attribute names are
/// case-insensitive).
fn get_ci<'a>(obj: &'a Map<String, Value>, key: &str) -> Option<&'a Value> {
    obj.get(key).or_else(|| {
        obj.iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(key))
            .map(|(_, v)| v)
    })
}

/// `Resources` of a ListResponse, or the items of a bare list.
fn resources(answer: &Value) -> Option<&Vec<Value>> {
    match answer {
        Value::Array(items) => Some(items),
        other => field(other, "Resources").and_then(Value::as_array),
    }
}

/// An attribute name as RFC 7643 §2.1 allows it (`$ref` included); anything else a server
/// declares is ignored, so that its text never reaches a payload or a log line.
fn is_attr_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 128
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '$'))
}

fn declared_attribute(a: &Value) -> Option<DeclaredAttribute> {
    let name = field(a, "name")?
        .as_str()
        .filter(|n| is_attr_name(n))?
        .to_string();
    let required =
        |v: &Value| field(v, "required").and_then(crate::scim::lenient::lenient_bool) == Some(true);
    let subs = field(a, "subAttributes").and_then(Value::as_array);
    let complex = subs.is_some()
        || field(a, "type")
            .and_then(Value::as_str)
            .is_some_and(|t| t.eq_ignore_ascii_case("complex"));
    Some(DeclaredAttribute {
        sub_attributes: complex.then(|| {
            subs.into_iter()
                .flatten()
                .filter_map(|s| field(s, "name").and_then(Value::as_str))
                .filter(|n| is_attr_name(n))
                .map(str::to_ascii_lowercase)
                .collect()
        }),
        required: required(a),
        required_subs: subs
            .into_iter()
            .flatten()
            .filter(|s| required(s))
            .filter_map(|s| field(s, "name").and_then(Value::as_str))
            .filter(|n| is_attr_name(n))
            .map(String::from)
            .collect(),
        mutability: Mutability::parse(field(a, "mutability")),
        sub_mutability: subs
            .into_iter()
            .flatten()
            .filter_map(|s| {
                let name = field(s, "name")
                    .and_then(Value::as_str)
                    .filter(|n| is_attr_name(n))?;
                let m = Mutability::parse(field(s, "mutability"));
                (m != Mutability::ReadWrite).then(|| (name.to_ascii_lowercase(), m))
            })
            .collect(),
        name,
    })
}

/// How an attribute is named in a warning: `name`, or `prefix:name` inside an extension.
fn attribute_label(prefix: &str, name: &str) -> String {
    if prefix.is_empty() {
        name.to_string()
    } else {
        format!("{prefix}:{name}")
    }
}

/// The members of `obj` that `attrs` declares, each complex value cut to its declared
/// sub-attributes; what is dropped goes to `left_out` as `prefix…attr[.sub]`.
fn shape_attributes(
    attrs: &BTreeMap<String, DeclaredAttribute>,
    obj: &Map<String, Value>,
    prefix: &str,
    left_out: &mut Vec<String>,
) -> Map<String, Value> {
    let label = |name: &str| attribute_label(prefix, name);
    let mut out = Map::new();
    for (key, value) in obj {
        let Some(attr) = attrs.get(&key.to_ascii_lowercase()) else {
            left_out.push(label(key));
            continue;
        };
        let Some(subs) = &attr.sub_attributes else {
            out.insert(key.clone(), value.clone());
            continue;
        };
        let mut cut = |item: &Map<String, Value>| -> Map<String, Value> {
            let mut kept = Map::new();
            for (k, v) in item {
                if subs.contains(&k.to_ascii_lowercase()) {
                    kept.insert(k.clone(), v.clone());
                } else {
                    left_out.push(label(&format!("{key}.{k}")));
                }
            }
            kept
        };
        let shaped = match value {
            Value::Object(item) => Value::Object(cut(item)),
            Value::Array(items) => Value::Array(
                items
                    .iter()
                    .map(|i| match i {
                        Value::Object(item) => Value::Object(cut(item)),
                        other => other.clone(),
                    })
                    .filter(|i| i.as_object().is_none_or(|o| !o.is_empty()))
                    .collect(),
            ),
            other => other.clone(),
        };
        out.insert(key.clone(), shaped);
    }
    out
}

/// What a connector has learned about its server.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Dialect {
    /// `Some` once `/Schemas` was read; the inner `None` when it had no usable User schema
    /// (RFC 7643's applies).
    pub schema: Option<Option<DeclaredSchema>>,
    /// PATCH was refused (501, 405, 400 `noTarget`/`invalidPath`): updates go as PUT, for
    /// the whole server, because PUT is the one update every SCIM server must take.
    pub patch_refused: bool,
    /// Filters are not supported, refused or ignored: matching lists the remote users.
    pub filters_unusable: bool,
    /// A list request with `startIndex`/`count` failed while one without worked.
    pub paging_unusable: bool,
    /// What the last connection test found, one line each, for people.
    pub findings: Vec<String>,
    /// Attributes already warned about: one warning per attribute, kept in the document
    /// so that later sessions do not warn again.
    pub warned: BTreeSet<String>,
    /// The adaptive rate control's last good setting for this server, kept for the host
    /// (`client::rate`; the component itself sends one request at a time and never reads it).
    pub rate: Option<crate::client::rate::RateSetting>,
    /// The most group members one PATCH was accepted with after the server refused more
    /// (400 `tooMany`, 413): membership changes are cut to it.
    pub members_per_patch: Option<u32>,
}

impl Dialect {
    /// The dialect as a document the host stores with the connection.
    pub fn to_document(&self) -> String {
        json!({
            "version": DOCUMENT_VERSION,
            "schemaRead": self.schema.is_some(),
            "schema": self.schema.as_ref().and_then(Option::as_ref).map(DeclaredSchema::to_value),
            "patchRefused": self.patch_refused,
            "filtersUnusable": self.filters_unusable,
            "pagingUnusable": self.paging_unusable,
            "findings": self.findings,
            "warned": self.warned,
            "rate": self.rate,
            "membersPerPatch": self.members_per_patch,
        })
        .to_string()
    }

    /// Reads what [`Dialect::to_document`] wrote.
    pub fn from_document(document: &str) -> Result<Self, String> {
        let value: Value = serde_json::from_str(document).map_err(|e| format!("not JSON: {e}"))?;
        if value.get("version") != Some(&json!(DOCUMENT_VERSION)) {
            return Err("not a dialect document of this version".into());
        }
        let flag = |name: &str| value.get(name) == Some(&Value::Bool(true));
        let schema = if flag("schemaRead") {
            match value.get("schema") {
                None | Some(Value::Null) => Some(None),
                Some(v) => Some(Some(
                    DeclaredSchema::from_value(v)
                        .ok_or("the schema in the document is malformed")?,
                )),
            }
        } else {
            None
        };
        Ok(Dialect {
            schema,
            patch_refused: flag("patchRefused"),
            filters_unusable: flag("filtersUnusable"),
            paging_unusable: flag("pagingUnusable"),
            findings: value
                .get("findings")
                .and_then(Value::as_array)
                .map(|f| {
                    f.iter()
                        .filter_map(Value::as_str)
                        .map(String::from)
                        .collect()
                })
                .unwrap_or_default(),
            warned: value
                .get("warned")
                .and_then(Value::as_array)
                .map(|w| {
                    w.iter()
                        .filter_map(Value::as_str)
                        .map(String::from)
                        .collect()
                })
                .unwrap_or_default(),
            rate: crate::client::rate::remembered(document),
            members_per_patch: value
                .get("membersPerPatch")
                .and_then(Value::as_u64)
                .and_then(|n| u32::try_from(n).ok())
                .filter(|n| *n > 0),
        })
    }

    /// The declared schema, when one was read.
    pub fn declared(&self) -> Option<&DeclaredSchema> {
        self.schema.as_ref().and_then(Option::as_ref)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn narrow() -> Value {
        json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:ListResponse"], "totalResults": 1,
               "Resources": [{"id": CORE_USER, "attributes": [
                   {"name": "userName", "type": "string", "required": true},
                   {"name": "name", "type": "complex", "required": true, "subAttributes": [
                       {"name": "formatted", "type": "string", "required": true},
                       {"name": "familyName", "type": "string", "required": true},
                       {"name": "givenName", "type": "string"}]},
                   {"name": "active", "type": "boolean"},
                   {"name": "emails", "type": "complex", "multiValued": true,
                    "subAttributes": [{"name": "value", "type": "string"}]}]},
                 {"id": "urn:ietf:params:scim:schemas:core:2.0:Group", "attributes": []}]})
    }

    #[test]
    fn shapes_to_the_declared_attributes_and_names_what_it_leaves_out() {
        let schema = DeclaredSchema::from_answers(&narrow(), None).unwrap();
        let mut left_out = Vec::new();
        let shaped = schema.shape(
            &json!({"schemas": [CORE_USER, "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"],
                    "userName": "b", "externalId": "42", "displayName": "B J",
                    "name": {"givenName": "B", "familyName": "J"},
                    "emails": [{"type": "work", "value": "b@x", "primary": true}],
                    "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {"department": "d"}}),
            &mut left_out,
        );
        assert_eq!(
            shaped,
            json!({"schemas": [CORE_USER], "userName": "b", "externalId": "42",
                   "name": {"givenName": "B", "familyName": "J"}, "emails": [{"value": "b@x"}]})
        );
        assert_eq!(
            left_out,
            vec![
                "displayName",
                "emails.primary",
                "emails.type",
                "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
            ]
        );
    }

    #[test]
    fn required_attributes_the_mapping_leaves_empty() {
        let schema = DeclaredSchema::from_answers(&narrow(), None).unwrap();
        let targets: Vec<String> = ["userName", "name.givenName", "name.familyName"]
            .iter()
            .map(|s| (*s).to_string())
            .collect();
        assert_eq!(schema.unfilled_required(&targets), vec!["name.formatted"]);
        assert_eq!(schema.unfilled_required(&["userName".into()]), vec!["name"]);
    }

    #[test]
    fn targets_the_server_does_not_declare() {
        let schema = DeclaredSchema::from_answers(&narrow(), None).unwrap();
        let targets: Vec<String> = [
            "userName",
            "emails[type eq \"work\"].value",
            "displayName",
            "name.middleName",
            "urn:x:ext:a",
        ]
        .iter()
        .map(|s| (*s).to_string())
        .collect();
        assert_eq!(
            schema.undeclared_targets(&targets),
            vec![
                "emails[type eq \"work\"].value (emails.type)",
                "displayName (displayName)",
                "name.middleName (name.middleName)",
                "urn:x:ext:a (schema urn:x:ext)"
            ]
        );
    }

    #[test]
    fn extensions_follow_the_resource_types_and_unusable_answers_are_none() {
        let with_ext = json!([{"id": CORE_USER, "attributes": [{"name": "userName"}]},
                              {"id": "urn:x:ext", "attributes": [{"name": "a"}]}]);
        let types = json!({"Resources": [{"schema": CORE_USER, "schemaExtensions": []}]});
        let schema = DeclaredSchema::from_answers(&with_ext, Some(&types)).unwrap();
        let mut left_out = Vec::new();
        let shaped = schema.shape(
            &json!({"userName": "u", "urn:x:ext": {"a": 1}}),
            &mut left_out,
        );
        assert_eq!(shaped, json!({"userName": "u"}));
        let schema = DeclaredSchema::from_answers(&with_ext, None).unwrap();
        let shaped = schema.shape(&json!({"urn:x:ext": {"a": 1, "b": 2}}), &mut left_out);
        assert_eq!(shaped, json!({"urn:x:ext": {"a": 1}}));
        assert!(left_out.contains(&"urn:x:ext:b".to_string()));
        assert_eq!(
            DeclaredSchema::from_answers(&json!({"Resources": []}), None),
            None
        );
        assert_eq!(DeclaredSchema::from_answers(&json!("junk"), None), None);
        assert_eq!(
            DeclaredSchema::from_answers(&json!([{"id": 5}]), None),
            None
        );
    }

    #[test]
    fn hostile_schemas_are_read_without_panic_and_odd_names_ignored() {
        for answer in [
            json!({"Resources": [{"id": CORE_USER, "attributes": "x"}]}),
            json!({"Resources": [{"id": CORE_USER, "attributes": [1, null, {"name": 5},
                {"name": "bad\nname"}, {"name": "emails", "subAttributes": [{"name": "\u{7}"}, 3]}]}]}),
            json!({"Resources": [{"id": CORE_USER}], "totalResults": "many"}),
            json!(null),
        ] {
            let schema = DeclaredSchema::from_answers(&answer, Some(&json!({"Resources": 7})));
            let mut left_out = Vec::new();
            if let Some(schema) = schema {
                let shaped = schema.shape(
                    &json!({"userName": "u", "emails": [{"value": "v"}, 3]}),
                    &mut left_out,
                );
                assert!(shaped.is_object());
                assert!(left_out.iter().all(|l| !l.chars().any(char::is_control)));
                let _ = schema.unfilled_required(&["userName".into()]);
                let _ = schema.undeclared_targets(&["emails[type eq \"work\"].value".into()]);
            }
        }
    }

    #[test]
    fn the_document_round_trips() {
        let dialect = Dialect {
            schema: Some(DeclaredSchema::from_answers(&narrow(), None)),
            patch_refused: true,
            filters_unusable: true,
            paging_unusable: false,
            findings: vec!["filters: ignored".into()],
            warned: BTreeSet::from(["emails.primary".to_string()]),
            rate: Some(crate::client::rate::RateSetting {
                concurrency: 3,
                requests_per_second: Some(45),
                bulk_size: Some(20),
            }),
            members_per_patch: Some(7),
        };
        let back = Dialect::from_document(&dialect.to_document()).unwrap();
        assert_eq!(back, dialect);
        let unread = Dialect::default();
        assert_eq!(
            Dialect::from_document(&unread.to_document()).unwrap(),
            unread
        );
        assert!(Dialect::from_document("{}").is_err());
        assert!(Dialect::from_document("nope").is_err());
        assert!(
            Dialect::from_document(r#"{"version":1,"schemaRead":true,"schema":{"x":1}}"#).is_err()
        );
    }
}
