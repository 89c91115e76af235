//! SCIM attribute names (RFC 7644 §3.10's `[URN ":"] ATTRNAME ["." subAttr]`), the pieces
//! that both filters and PATCH paths are made of: the name token and its parser, the
//! case-insensitive comparison and lookup SCIM requires, and the error both report. Both
//! roles use it.
//!
//! It is a leaf on purpose: [`crate::scim::filter`] compares attribute names and
//! [`crate::scim::path`] holds filters, so what both need lives here and `path` depends on
//! `filter`, never the other way round.
//!
//! Attribute names are case-insensitive in SCIM. The parsed types keep the spelling they
//! were given, so a name prints back as it came in; compare them with [`name_eq`],
//! [`AttrName::same_as`] or [`find_key`], never with `==` on the strings.

use std::fmt;

use serde_json::{Map, Value};

/// The URN prefix of the SCIM core schemas. Attributes qualified with a core schema URN
/// live at the top level of a resource; every other URN names an extension object.
pub const CORE_SCHEMA_PREFIX: &str = "urn:ietf:params:scim:schemas:core:";

/// Why a path could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathError {
    /// The byte offset in the input where the problem was found.
    pub position: usize,
    /// What was expected and what was found.
    pub message: String,
}

impl PathError {
    pub(crate) fn new(position: usize, message: impl Into<String>) -> Self {
        PathError {
            position,
            message: message.into(),
        }
    }
}

impl fmt::Display for PathError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invalid attribute path at position {}: {}",
            self.position, self.message
        )
    }
}

impl std::error::Error for PathError {}

/// Compares two attribute names (or URNs) the way SCIM does: ASCII case-insensitively.
pub fn name_eq(a: &str, b: &str) -> bool {
    a.eq_ignore_ascii_case(b)
}

/// True when the URN names one of the core schemas (see [`CORE_SCHEMA_PREFIX`]), whose
/// attributes sit at the top level of a resource rather than inside an extension object.
pub fn is_core_urn(urn: &str) -> bool {
    urn.len() >= CORE_SCHEMA_PREFIX.len()
        && urn
            .get(..CORE_SCHEMA_PREFIX.len())
            .is_some_and(|p| p.eq_ignore_ascii_case(CORE_SCHEMA_PREFIX))
}

/// The key of `obj` that names the attribute `name`: an exact match if there is one,
/// otherwise the first case-insensitive match.
pub fn find_key<'a>(obj: &'a Map<String, Value>, name: &str) -> Option<&'a str> {
    if let Some((k, _)) = obj.get_key_value(name) {
        return Some(k.as_str());
    }
    obj.keys().find(|k| name_eq(k, name)).map(String::as_str)
}

/// The value of the attribute `name` in `obj`, looked up case-insensitively.
pub fn get_ci<'a>(obj: &'a Map<String, Value>, name: &str) -> Option<&'a Value> {
    find_key(obj, name).and_then(|k| obj.get(k))
}

/// A plain attribute reference, `[URN ":"] ATTRNAME ["." subAttr]`, without a value filter.
/// This is what filters compare against.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct AttrName {
    /// The schema URN the name was qualified with, if any.
    pub urn: Option<String>,
    /// The attribute name.
    pub attr: String,
    /// The sub-attribute name, for `name.givenName`.
    pub sub_attr: Option<String>,
}

impl AttrName {
    /// An unqualified attribute name with no sub-attribute.
    pub fn simple(attr: impl Into<String>) -> Self {
        AttrName {
            urn: None,
            attr: attr.into(),
            sub_attr: None,
        }
    }

    /// Parses `[URN ":"] ATTRNAME ["." subAttr]`.
    pub fn parse(s: &str) -> Result<AttrName, PathError> {
        match parse_name_token(s, 0)? {
            Parsed::Name(n) => Ok(n),
            Parsed::SchemaOnly(_) => Err(PathError::new(
                s.len(),
                "expected ':' and an attribute name after the schema URN",
            )),
        }
    }

    /// True when both name the same attribute, comparing every part case-insensitively.
    pub fn same_as(&self, other: &AttrName) -> bool {
        let urn_eq = match (&self.urn, &other.urn) {
            (None, None) => true,
            (Some(a), Some(b)) => name_eq(a, b),
            _ => false,
        };
        let sub_eq = match (&self.sub_attr, &other.sub_attr) {
            (None, None) => true,
            (Some(a), Some(b)) => name_eq(a, b),
            _ => false,
        };
        urn_eq && sub_eq && name_eq(&self.attr, &other.attr)
    }

    /// True when the name is unqualified or qualified with a core schema URN, so it
    /// resolves at the top level of a resource.
    pub fn is_top_level(&self) -> bool {
        self.urn.as_deref().is_none_or(is_core_urn)
    }
}

impl fmt::Display for AttrName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(urn) = &self.urn {
            f.write_str(urn)?;
            f.write_str(":")?;
        }
        f.write_str(&self.attr)?;
        if let Some(sub) = &self.sub_attr {
            write!(f, ".{sub}")?;
        }
        Ok(())
    }
}

/// What a name token turned out to be.
pub(crate) enum Parsed {
    /// An attribute reference.
    Name(AttrName),
    /// A schema URN with no attribute after it.
    SchemaOnly(String),
}

/// Describes the start of the remaining input for an error message.
pub(crate) fn describe(rest: &str) -> String {
    match rest.chars().next() {
        None => "end of input".to_string(),
        Some(c) => format!("'{c}'"),
    }
}

/// The byte length of the ATTRNAME at the start of `s` (`ALPHA *(nameChar)`, or the
/// reserved `$ref`), or `None` if `s` does not start with one.
pub(crate) fn scan_attr_name(s: &str) -> Option<usize> {
    if s.len() >= 4 && s.get(..4).is_some_and(|p| p.eq_ignore_ascii_case("$ref")) {
        return Some(4);
    }
    let bytes = s.as_bytes();
    match bytes.first() {
        Some(b) if b.is_ascii_alphabetic() => {}
        _ => return None,
    }
    let len = bytes
        .iter()
        .position(|b| !(b.is_ascii_alphanumeric() || *b == b'-' || *b == b'_'))
        .unwrap_or(bytes.len());
    Some(len)
}

/// True for a URN segment that looks like a schema version (`2.0`, `1`), which in the
/// SCIM URN convention `...:<version>:<ResourceType>` marks the end of a schema URN.
fn is_version_segment(seg: &str) -> bool {
    seg.as_bytes().first().is_some_and(u8::is_ascii_digit)
        && seg.bytes().all(|b| b.is_ascii_digit() || b == b'.')
}

/// Parses a whole token `[URN ":"] ATTRNAME ["." subAttr]` or a bare schema URN; `base` is
/// the token's byte offset in the full input, for error positions.
///
/// The URN is everything up to the last ':'. When the segment before the last one is a
/// version (`...:2.0:User`), the whole token is a schema URN with no attribute; otherwise
/// the last segment is the attribute (`...:2.0:User:employeeNumber`).
pub(crate) fn parse_name_token(s: &str, base: usize) -> Result<Parsed, PathError> {
    if s.is_empty() {
        return Err(PathError::new(
            base,
            "expected an attribute name, found end of input",
        ));
    }
    let is_urn = s.len() >= 4 && s.get(..4).is_some_and(|p| p.eq_ignore_ascii_case("urn:"));
    let (urn, rest, rest_at) = if is_urn {
        // Every segment of the URN must be non-empty; point at the first empty one.
        let mut at = 0;
        for seg in s.split(':') {
            if seg.is_empty() {
                return Err(PathError::new(
                    base + at,
                    format!(
                        "expected a URN segment or attribute name after ':', found {}",
                        describe(&s[at..])
                    ),
                ));
            }
            at += seg.len() + 1;
        }
        let last_colon = s.rfind(':').unwrap_or(0); // ok: is_urn means s contains ':'
        let urn = &s[..last_colon];
        let last = &s[last_colon + 1..];
        let before_last = urn.rsplit(':').next().unwrap_or("");
        if is_version_segment(before_last) && !last.contains('.') {
            if let Some(bad) = s.find(|c: char| c.is_whitespace() || "()[]\"".contains(c)) {
                return Err(PathError::new(
                    base + bad,
                    format!("unexpected {} in a schema URN", describe(&s[bad..])),
                ));
            }
            return Ok(Parsed::SchemaOnly(s.to_string()));
        }
        (Some(urn.to_string()), last, last_colon + 1)
    } else {
        (None, s, 0)
    };
    let attr_len = scan_attr_name(rest).ok_or_else(|| {
        PathError::new(
            base + rest_at,
            format!(
                "expected an attribute name starting with a letter, found {}",
                describe(rest)
            ),
        )
    })?;
    let attr = &rest[..attr_len];
    let after = &rest[attr_len..];
    let after_at = rest_at + attr_len;
    let sub_attr = if after.is_empty() {
        None
    } else if let Some(sub) = after.strip_prefix('.') {
        let sub_len = scan_attr_name(sub).ok_or_else(|| {
            PathError::new(
                base + after_at + 1,
                format!(
                    "expected a sub-attribute name after '.', found {}",
                    describe(sub)
                ),
            )
        })?;
        if sub_len != sub.len() {
            return Err(PathError::new(
                base + after_at + 1 + sub_len,
                format!(
                    "expected end of attribute path, found {}",
                    describe(&sub[sub_len..])
                ),
            ));
        }
        Some(sub.to_string())
    } else {
        return Err(PathError::new(
            base + after_at,
            format!(
                "expected '.', '[' or end of attribute path, found {}",
                describe(after)
            ),
        ));
    };
    Ok(Parsed::Name(AttrName {
        urn,
        attr: attr.to_string(),
        sub_attr,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn case_insensitive_helpers() {
        let a = AttrName::parse("Name.GivenName").ok();
        let b = AttrName::parse("name.givenname").ok();
        assert!(a.zip(b).is_some_and(|(a, b)| a.same_as(&b)));
        let obj = serde_json::json!({"userName": "a", "Active": true});
        let map = obj.as_object().cloned().unwrap_or_default();
        assert_eq!(find_key(&map, "username"), Some("userName"));
        assert_eq!(get_ci(&map, "active"), Some(&serde_json::json!(true)));
        assert!(is_core_urn("URN:ietf:params:scim:schemas:core:2.0:Group"));
    }
}
