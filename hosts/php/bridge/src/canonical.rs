//! The canonical JSON form of component values, in both directions, driven by the WIT
//! types. It is jco's JavaScript representation written as JSON, so every non-Rust host
//! reads the same shapes:
//!
//! | WIT | JSON |
//! |---|---|
//! | `bool`, integers, floats | boolean, number |
//! | `string`, `char` | string |
//! | `list<u8>` | base64 string |
//! | other `list<T>`, `tuple<…>` | array |
//! | `record` | object keyed by the WIT field names (kebab-case) |
//! | `variant` | `{"tag": "case"}` or `{"tag": "case", "val": payload}` |
//! | `enum` | the case name |
//! | `option<T>` | `null` or `T` |
//! | `result<T, E>` | `{"tag": "ok" \| "err", "val": …}` (`val` absent when empty) |
//! | `flags` | array of the set flag names |
//! | `own<R>`, `borrow<R>` | an integer handle into the instance's [`Handles`] |
//!
//! Every error names where in the value it is (`args[1].fields[0][1]`), so a host's
//! mistake is found at once.

use anyhow::{Context, anyhow, bail};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde_json::{Map, Number, Value};
use wasmtime::component::{ResourceAny, Type, Val};

/// Where resources live while the host holds them as integers.
pub trait Handles {
    /// Keeps a resource and returns its handle.
    fn insert(&mut self, resource: ResourceAny) -> anyhow::Result<u64>;
    /// The resource behind a handle.
    fn get(&self, handle: u64) -> anyhow::Result<ResourceAny>;
}

/// For values that must not hold resources (the imports' arguments and results).
pub struct NoHandles;

impl Handles for NoHandles {
    fn insert(&mut self, _: ResourceAny) -> anyhow::Result<u64> {
        bail!("a resource cannot cross here")
    }
    fn get(&self, _: u64) -> anyhow::Result<ResourceAny> {
        bail!("a resource cannot cross here")
    }
}

/// A component value as canonical JSON.
pub fn to_json(val: &Val, ty: &Type, handles: &mut dyn Handles, at: &str) -> anyhow::Result<Value> {
    Ok(match (val, ty) {
        (Val::Bool(b), _) => Value::Bool(*b),
        (Val::S8(n), _) => Value::from(*n),
        (Val::U8(n), _) => Value::from(*n),
        (Val::S16(n), _) => Value::from(*n),
        (Val::U16(n), _) => Value::from(*n),
        (Val::S32(n), _) => Value::from(*n),
        (Val::U32(n), _) => Value::from(*n),
        (Val::S64(n), _) => Value::from(*n),
        (Val::U64(n), _) => Value::from(*n),
        (Val::Float32(f), _) => Number::from_f64(f64::from(*f)).map_or(Value::Null, Value::Number),
        (Val::Float64(f), _) => Number::from_f64(*f).map_or(Value::Null, Value::Number),
        (Val::Char(c), _) => Value::String(c.to_string()),
        (Val::String(s), _) => Value::String(s.clone()),
        (Val::List(items), Type::List(list)) => {
            let elem = list.ty();
            if matches!(elem, Type::U8) {
                let bytes: Vec<u8> = items
                    .iter()
                    .map(|v| match v {
                        Val::U8(b) => Ok(*b),
                        _ => Err(anyhow!("{at}: a list<u8> holds a non-byte")),
                    })
                    .collect::<anyhow::Result<_>>()?;
                Value::String(BASE64.encode(bytes))
            } else {
                let mut out = Vec::with_capacity(items.len());
                for (i, item) in items.iter().enumerate() {
                    out.push(to_json(item, &elem, handles, &format!("{at}[{i}]"))?);
                }
                Value::Array(out)
            }
        }
        (Val::Record(fields), Type::Record(record)) => {
            let mut out = Map::new();
            for ((name, v), field) in fields.iter().zip(record.fields()) {
                out.insert(
                    name.clone(),
                    to_json(v, &field.ty, handles, &format!("{at}.{name}"))?,
                );
            }
            Value::Object(out)
        }
        (Val::Tuple(items), Type::Tuple(tuple)) => {
            let mut out = Vec::with_capacity(items.len());
            for (i, (item, t)) in items.iter().zip(tuple.types()).enumerate() {
                out.push(to_json(item, &t, handles, &format!("{at}[{i}]"))?);
            }
            Value::Array(out)
        }
        (Val::Variant(case, payload), Type::Variant(variant)) => {
            let case_ty = variant.cases().find(|c| c.name == case).and_then(|c| c.ty);
            tagged(case, payload.as_deref(), case_ty, handles, at)?
        }
        (Val::Enum(case), _) => Value::String(case.clone()),
        (Val::Option(None), _) => Value::Null,
        (Val::Option(Some(v)), Type::Option(opt)) => to_json(v, &opt.ty(), handles, at)?,
        (Val::Result(Ok(payload)), Type::Result(r)) => {
            tagged("ok", payload.as_deref(), r.ok(), handles, at)?
        }
        (Val::Result(Err(payload)), Type::Result(r)) => {
            tagged("err", payload.as_deref(), r.err(), handles, at)?
        }
        (Val::Flags(names), _) => Value::Array(names.iter().cloned().map(Value::String).collect()),
        (Val::Resource(r), _) => Value::from(handles.insert(*r)?),
        (other, ty) => bail!("{at}: cannot express {other:?} of type {ty:?} as JSON"),
    })
}

fn tagged(
    tag: &str,
    payload: Option<&Val>,
    ty: Option<Type>,
    handles: &mut dyn Handles,
    at: &str,
) -> anyhow::Result<Value> {
    let mut out = Map::new();
    out.insert("tag".into(), Value::String(tag.to_string()));
    if let (Some(v), Some(t)) = (payload, ty) {
        out.insert(
            "val".into(),
            to_json(v, &t, handles, &format!("{at}.{tag}"))?,
        );
    }
    Ok(Value::Object(out))
}

fn kind(json: &Value) -> &'static str {
    match json {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn int<T: TryFrom<i64> + TryFrom<u64>>(json: &Value, at: &str, name: &str) -> anyhow::Result<T> {
    let n = match json.as_u64() {
        Some(u) => T::try_from(u).ok(),
        None => json.as_i64().and_then(|i| T::try_from(i).ok()),
    };
    n.ok_or_else(|| anyhow!("{at}: expected {name}, got {}", short(json)))
}

/// The JSON in an error message: short, so a large body never floods a log.
fn short(json: &Value) -> String {
    let text = json.to_string();
    if text.len() <= 60 {
        return text;
    }
    let mut end = 57;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &text[..end])
}

/// Canonical JSON as a component value of type `ty`.
pub fn from_json(json: &Value, ty: &Type, handles: &dyn Handles, at: &str) -> anyhow::Result<Val> {
    Ok(match ty {
        Type::Bool => Val::Bool(
            json.as_bool()
                .ok_or_else(|| anyhow!("{at}: expected a boolean, got {}", kind(json)))?,
        ),
        Type::S8 => Val::S8(int(json, at, "an s8")?),
        Type::U8 => Val::U8(int(json, at, "a u8")?),
        Type::S16 => Val::S16(int(json, at, "an s16")?),
        Type::U16 => Val::U16(int(json, at, "a u16")?),
        Type::S32 => Val::S32(int(json, at, "an s32")?),
        Type::U32 => Val::U32(int(json, at, "a u32")?),
        Type::S64 => Val::S64(int(json, at, "an s64")?),
        Type::U64 => Val::U64(int(json, at, "a u64")?),
        // f32 has no lossless path from JSON's f64; the narrowing is the WIT's.
        Type::Float32 => Val::Float32(
            json.as_f64()
                .ok_or_else(|| anyhow!("{at}: expected a number, got {}", kind(json)))?
                as f32,
        ),
        Type::Float64 => Val::Float64(
            json.as_f64()
                .ok_or_else(|| anyhow!("{at}: expected a number, got {}", kind(json)))?,
        ),
        Type::Char => {
            let s = json
                .as_str()
                .ok_or_else(|| anyhow!("{at}: expected a one-character string"))?;
            let mut chars = s.chars();
            match (chars.next(), chars.next()) {
                (Some(c), None) => Val::Char(c),
                _ => bail!("{at}: expected a one-character string"),
            }
        }
        Type::String => Val::String(
            json.as_str()
                .ok_or_else(|| anyhow!("{at}: expected a string, got {}", kind(json)))?
                .to_string(),
        ),
        Type::List(list) => {
            let elem = list.ty();
            match (json, &elem) {
                (Value::String(s), Type::U8) => Val::List(
                    BASE64
                        .decode(s)
                        .with_context(|| format!("{at}: expected base64 bytes"))?
                        .into_iter()
                        .map(Val::U8)
                        .collect(),
                ),
                (Value::Array(items), _) => {
                    let mut out = Vec::with_capacity(items.len());
                    for (i, item) in items.iter().enumerate() {
                        out.push(from_json(item, &elem, handles, &format!("{at}[{i}]"))?);
                    }
                    Val::List(out)
                }
                _ => bail!("{at}: expected an array, got {}", kind(json)),
            }
        }
        Type::Record(record) => {
            let obj = json
                .as_object()
                .ok_or_else(|| anyhow!("{at}: expected an object, got {}", kind(json)))?;
            let mut out = Vec::new();
            for field in record.fields() {
                let here = format!("{at}.{}", field.name);
                let v = match obj.get(field.name) {
                    Some(v) => from_json(v, &field.ty, handles, &here)?,
                    None if matches!(field.ty, Type::Option(_)) => Val::Option(None),
                    None => bail!("{here}: missing"),
                };
                out.push((field.name.to_string(), v));
            }
            if let Some(extra) = obj.keys().find(|k| !record.fields().any(|f| f.name == *k)) {
                bail!("{at}: unknown field {extra:?}");
            }
            Val::Record(out)
        }
        Type::Tuple(tuple) => {
            let items = json
                .as_array()
                .ok_or_else(|| anyhow!("{at}: expected an array, got {}", kind(json)))?;
            if items.len() != tuple.types().len() {
                bail!(
                    "{at}: expected {} elements, got {}",
                    tuple.types().len(),
                    items.len()
                );
            }
            let mut out = Vec::with_capacity(items.len());
            for (i, (item, t)) in items.iter().zip(tuple.types()).enumerate() {
                out.push(from_json(item, &t, handles, &format!("{at}[{i}]"))?);
            }
            Val::Tuple(out)
        }
        Type::Variant(variant) => {
            let (tag, val) = tag_and_val(json, at)?;
            let case = variant.cases().find(|c| c.name == tag).ok_or_else(|| {
                let names: Vec<&str> = variant.cases().map(|c| c.name).collect();
                anyhow!("{at}: unknown case {tag:?} (expected one of {names:?})")
            })?;
            let payload = payload(val, case.ty.as_ref(), handles, &format!("{at}.{tag}"))?;
            Val::Variant(tag.to_string(), payload)
        }
        Type::Enum(e) => {
            let name = json
                .as_str()
                .ok_or_else(|| anyhow!("{at}: expected a string, got {}", kind(json)))?;
            if !e.names().any(|n| n == name) {
                let names: Vec<&str> = e.names().collect();
                bail!("{at}: unknown case {name:?} (expected one of {names:?})");
            }
            Val::Enum(name.to_string())
        }
        Type::Option(opt) => match json {
            Value::Null => Val::Option(None),
            v => Val::Option(Some(Box::new(from_json(v, &opt.ty(), handles, at)?))),
        },
        Type::Result(r) => {
            let (tag, val) = tag_and_val(json, at)?;
            let here = format!("{at}.{tag}");
            match tag {
                "ok" => Val::Result(Ok(payload(val, r.ok().as_ref(), handles, &here)?)),
                "err" => Val::Result(Err(payload(val, r.err().as_ref(), handles, &here)?)),
                other => bail!("{at}: a result's tag is \"ok\" or \"err\", not {other:?}"),
            }
        }
        Type::Flags(flags) => {
            let items = json
                .as_array()
                .ok_or_else(|| anyhow!("{at}: expected an array of flag names"))?;
            let mut out = Vec::new();
            for item in items {
                let name = item.as_str().unwrap_or_default();
                if !flags.names().any(|n| n == name) {
                    bail!("{at}: unknown flag {}", short(item));
                }
                out.push(name.to_string());
            }
            Val::Flags(out)
        }
        Type::Own(_) | Type::Borrow(_) => {
            let handle: u64 = int(json, at, "a resource handle")?;
            Val::Resource(handles.get(handle).with_context(|| at.to_string())?)
        }
        other => bail!("{at}: values of type {other:?} cannot be given as JSON"),
    })
}

fn tag_and_val<'a>(json: &'a Value, at: &str) -> anyhow::Result<(&'a str, Option<&'a Value>)> {
    let obj = json
        .as_object()
        .ok_or_else(|| anyhow!("{at}: expected {{\"tag\": …}}, got {}", kind(json)))?;
    let tag = obj
        .get("tag")
        .and_then(Value::as_str)
        .ok_or_else(|| anyhow!("{at}: missing \"tag\""))?;
    Ok((tag, obj.get("val")))
}

fn payload(
    val: Option<&Value>,
    ty: Option<&Type>,
    handles: &dyn Handles,
    at: &str,
) -> anyhow::Result<Option<Box<Val>>> {
    match (ty, val) {
        (None, None | Some(Value::Null)) => Ok(None),
        (None, Some(_)) => bail!("{at}: this case carries no value"),
        (Some(t), Some(v)) => Ok(Some(Box::new(from_json(v, t, handles, at)?))),
        (Some(Type::Option(_)), None) => Ok(Some(Box::new(Val::Option(None)))),
        (Some(_), None) => bail!("{at}: missing \"val\""),
    }
}
