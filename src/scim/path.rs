//! SCIM attribute paths (RFC 7644 §3.10 and §3.5.2): `userName`, `name.givenName`,
//! `emails[type eq "work"].value`, URN-qualified names such as
//! `urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager.value`, and a bare
//! schema URN that names an extension as a whole.
//!
//! Both roles use it: the server parses the paths of PATCH requests, the client names the
//! attributes it maps. The attribute-name pieces a path shares with filters live in
//! [`crate::scim::attr`]; compare paths with the helpers there, never with `==` on the
//! strings, because attribute names are case-insensitive in SCIM.

use std::fmt;

use crate::scim::attr::{
    AttrName, Parsed, PathError, describe, is_core_urn, name_eq, parse_name_token, scan_attr_name,
};
use crate::scim::filter::{self, Filter};

/// A PATCH path: `attrPath / valuePath [subAttr]` (RFC 7644 §3.10), or a bare schema URN.
///
/// A bare schema URN such as `urn:ietf:params:scim:schemas:extension:enterprise:2.0:User`
/// (the extension as a whole) is represented with `urn` set and `attr` empty; see
/// [`AttrPath::is_schema_only`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttrPath {
    /// The schema URN the path was qualified with, if any.
    pub urn: Option<String>,
    /// The attribute name; empty when the path is only a schema URN.
    pub attr: String,
    /// The value filter between brackets, for `emails[type eq "work"]`.
    pub filter: Option<Filter>,
    /// The sub-attribute, for `name.givenName` or `emails[type eq "work"].value`.
    pub sub_attr: Option<String>,
}

impl AttrPath {
    /// Parses a PATCH path. Errors name the byte position and what was expected there.
    pub fn parse(s: &str) -> Result<AttrPath, PathError> {
        let Some(open) = s.find('[') else {
            return Ok(match parse_name_token(s, 0)? {
                Parsed::Name(n) => AttrPath {
                    urn: n.urn,
                    attr: n.attr,
                    filter: None,
                    sub_attr: n.sub_attr,
                },
                Parsed::SchemaOnly(urn) => AttrPath {
                    urn: Some(urn),
                    attr: String::new(),
                    filter: None,
                    sub_attr: None,
                },
            });
        };
        let head = &s[..open];
        let name = match parse_name_token(head, 0)? {
            Parsed::Name(n) => n,
            Parsed::SchemaOnly(_) => {
                return Err(PathError::new(
                    open,
                    "expected ':' and an attribute name before '['",
                ));
            }
        };
        if name.sub_attr.is_some() {
            return Err(PathError::new(
                open,
                "a value filter '[...]' must follow the attribute name, not a sub-attribute",
            ));
        }
        let (inner, close) = filter::parse_value_filter(s, open + 1)
            .map_err(|e| PathError::new(e.position, e.message))?;
        let after = s.get(close..).unwrap_or("");
        if !after.starts_with(']') {
            return Err(PathError::new(
                close,
                format!(
                    "expected ']' to close the value filter opened at position {open}, found {}",
                    describe(after)
                ),
            ));
        }
        let rest_at = close + 1;
        let rest = s.get(rest_at..).unwrap_or("");
        let sub_attr = if rest.is_empty() {
            None
        } else if let Some(sub) = rest.strip_prefix('.') {
            let end = scan_attr_name(sub).ok_or_else(|| {
                PathError::new(
                    rest_at + 1,
                    format!("expected a sub-attribute name, found {}", describe(sub)),
                )
            })?;
            if end != sub.len() {
                return Err(PathError::new(
                    rest_at + 1 + end,
                    format!("expected end of path, found {}", describe(&sub[end..])),
                ));
            }
            Some(sub.to_string())
        } else {
            return Err(PathError::new(
                rest_at,
                format!(
                    "expected '.' or end of path after ']', found {}",
                    describe(rest)
                ),
            ));
        };
        Ok(AttrPath {
            urn: name.urn,
            attr: name.attr,
            filter: Some(inner),
            sub_attr,
        })
    }

    /// True when the path is a bare schema URN naming an extension as a whole.
    pub fn is_schema_only(&self) -> bool {
        self.attr.is_empty()
    }

    /// The path without its value filter: URN, attribute and sub-attribute.
    pub fn name(&self) -> AttrName {
        AttrName {
            urn: self.urn.clone(),
            attr: self.attr.clone(),
            sub_attr: self.sub_attr.clone(),
        }
    }

    /// True when the path names the attribute `attr` (case-insensitively), at any depth.
    pub fn is_attr(&self, attr: &str) -> bool {
        name_eq(&self.attr, attr)
    }

    /// True when the path is unqualified or qualified with a core schema URN.
    pub fn is_top_level(&self) -> bool {
        self.urn.as_deref().is_none_or(is_core_urn)
    }
}

impl fmt::Display for AttrPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(urn) = &self.urn {
            f.write_str(urn)?;
            if self.attr.is_empty() {
                return Ok(());
            }
            f.write_str(":")?;
        }
        f.write_str(&self.attr)?;
        if let Some(filter) = &self.filter {
            write!(f, "[{filter}]")?;
        }
        if let Some(sub) = &self.sub_attr {
            write!(f, ".{sub}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> AttrPath {
        match AttrPath::parse(s) {
            Ok(p) => p,
            Err(e) => panic!("{s}: {e}"),
        }
    }

    #[test]
    fn simple_and_sub_attributes() {
        let a = p("userName");
        assert_eq!(a.urn, None);
        assert_eq!(a.attr, "userName");
        assert_eq!(a.filter, None);
        assert_eq!(a.sub_attr, None);
        let b = p("name.givenName");
        assert_eq!(b.attr, "name");
        assert_eq!(b.sub_attr.as_deref(), Some("givenName"));
        assert!(p("members.$ref").sub_attr.is_some());
        assert!(p("x-y_z9").is_attr("X-Y_Z9"));
    }

    #[test]
    fn urn_qualified() {
        let e = p("urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:employeeNumber");
        assert_eq!(
            e.urn.as_deref(),
            Some("urn:ietf:params:scim:schemas:extension:enterprise:2.0:User")
        );
        assert_eq!(e.attr, "employeeNumber");
        assert!(!e.is_top_level());
        let m = p("urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager.value");
        assert_eq!(m.attr, "manager");
        assert_eq!(m.sub_attr.as_deref(), Some("value"));
        let c = p("urn:ietf:params:scim:schemas:core:2.0:User:userName");
        assert_eq!(c.attr, "userName");
        assert!(c.is_top_level());
        let x = p("urn:example:params:scim:schemas:extension:acme:2.0:User:badge");
        assert_eq!(
            x.urn.as_deref(),
            Some("urn:example:params:scim:schemas:extension:acme:2.0:User")
        );
        assert_eq!(x.attr, "badge");
        let f = p(
            "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:emails[type eq \"work\"].value",
        );
        assert_eq!(f.attr, "emails");
        assert!(f.filter.is_some());
    }

    #[test]
    fn schema_only() {
        let s = p("urn:ietf:params:scim:schemas:extension:enterprise:2.0:User");
        assert!(s.is_schema_only());
        assert_eq!(
            s.urn.as_deref(),
            Some("urn:ietf:params:scim:schemas:extension:enterprise:2.0:User")
        );
        assert_eq!(s.attr, "");
        assert_eq!(
            s.to_string(),
            "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
        );
        assert!(AttrName::parse("urn:ietf:params:scim:schemas:core:2.0:User").is_err());
    }

    #[test]
    fn value_paths() {
        for s in [
            "emails[type eq \"work\"].value",
            "emails[type eq \"work\" and value co \"@example.com\"]",
            "members[value eq \"2819c223-7f76-453a-919d-413861904646\"]",
            "addresses[type eq \"work\"].locality",
            "phoneNumbers[type eq \"mobile\"].value",
        ] {
            let a = p(s);
            assert!(a.filter.is_some(), "{s}");
            assert_eq!(a.to_string(), s);
            assert_eq!(p(&a.to_string()), a);
        }
        let a = p("addresses[type eq \"work\"].locality");
        assert_eq!(a.attr, "addresses");
        assert_eq!(a.sub_attr.as_deref(), Some("locality"));
    }

    #[test]
    fn round_trips() {
        for s in [
            "userName",
            "name.givenName",
            "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager.value",
            "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User",
            "emails[type eq \"w\\\"o\\\\rk\"].value",
        ] {
            let a = p(s);
            assert_eq!(a.to_string(), s);
            assert_eq!(p(&a.to_string()), a);
        }
        // Canonical form lowercases keywords.
        assert_eq!(
            p("emails[TYPE EQ \"work\" AND primary Eq true]").to_string(),
            "emails[TYPE eq \"work\" and primary eq true]"
        );
    }

    #[test]
    fn malformed() {
        let cases: [(&str, usize, &str); 9] = [
            ("", 0, "expected an attribute name"),
            ("emails[type eq \"work\"", 21, "expected ']'"),
            ("name..givenName", 5, "sub-attribute name"),
            ("1abc", 0, "starting with a letter"),
            ("emails[]", 7, "expected an attribute path"),
            ("emails[type eq \"work\"]x", 22, "expected '.' or end"),
            ("name.givenName.x", 14, "expected end"),
            ("urn::x", 4, "URN segment"),
            ("user name", 4, "expected '.', '['"),
        ];
        for (s, pos, msg) in cases {
            match AttrPath::parse(s) {
                Ok(a) => panic!("{s:?} parsed as {a:?}"),
                Err(e) => {
                    assert_eq!(e.position, pos, "{s:?}: {e}");
                    assert!(e.message.contains(msg), "{s:?}: {e}");
                }
            }
        }
    }

    #[cfg(not(target_arch = "wasm32"))]
    proptest::proptest! {
        #[test]
        fn never_panics_and_round_trips(s in "\\PC{0,30}|[a-zA-Z.:\\[\\]\" $0-9]{0,30}") {
            if let Ok(parsed) = AttrPath::parse(&s) {
                proptest::prop_assert_eq!(AttrPath::parse(&parsed.to_string()), Ok(parsed));
            }
        }
    }
}
