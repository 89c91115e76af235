//! Which SCIM attributes a rule may fill, and where each lives in a User resource: the
//! core User schema (RFC 7643 §4.1), the Enterprise User extension (§4.3), and custom
//! extensions declared in the config. Target paths are parsed by [`AttrPath::parse`];
//! this module only gives the parsed path its meaning.

use serde_json::Value;

use super::value::Kinds;
use crate::scim::attr::{is_core_urn, name_eq};
use crate::scim::filter::{CompareOp, Filter};
use crate::scim::path::AttrPath;

/// The schema URN of the core User.
pub(crate) const CORE_USER_URN: &str = "urn:ietf:params:scim:schemas:core:2.0:User";

/// The schema URN of the Enterprise User extension.
pub(crate) const ENTERPRISE_URN: &str =
    "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";

/// What a target attribute holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AttrType {
    /// A single string; numbers are written as text.
    String,
    /// A single boolean.
    Boolean,
    /// The `value`s of a multi-valued attribute, filled from a list.
    Values,
    /// A custom extension attribute: the value keeps its own JSON type.
    Free,
}

impl AttrType {
    /// The value kinds the attribute can take.
    pub(crate) fn accepts(self) -> Kinds {
        match self {
            AttrType::String => Kinds::TEXT.or(Kinds::NUMBER),
            AttrType::Boolean => Kinds::BOOL,
            AttrType::Values => Kinds::TEXT.or(Kinds::NUMBER).or(Kinds::LIST),
            AttrType::Free => Kinds::ANY,
        }
    }
}

/// Where in the resource a target lives. Names are in their canonical spelling for known
/// attributes and as written for custom ones.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Place {
    /// A top-level attribute: `userName`.
    Top { attr: String },
    /// A sub-attribute of a complex top-level attribute: `name.givenName`.
    Sub { attr: String, sub: String },
    /// A sub-attribute of the element of a multi-valued attribute with a given `type`:
    /// `emails[type eq "work"].value`.
    Typed {
        attr: String,
        type_value: String,
        sub: String,
    },
    /// All elements of a multi-valued attribute, one per list item: `roles`.
    Values { attr: String },
    /// An attribute inside an extension object.
    Ext {
        urn: String,
        attr: String,
        sub: Option<String>,
    },
}

/// A resolved target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Target {
    /// Where the value goes.
    pub(crate) place: Place,
    /// What it holds.
    pub(crate) ty: AttrType,
    /// Whether the first element of this multi-valued attribute is marked `primary`.
    pub(crate) primary: bool,
}

impl Target {
    /// The canonical path, for messages and `MissingAttribute`.
    pub(crate) fn display(&self) -> String {
        match &self.place {
            Place::Top { attr } | Place::Values { attr } => attr.clone(),
            Place::Sub { attr, sub } => format!("{attr}.{sub}"),
            Place::Typed {
                attr,
                type_value,
                sub,
            } => format!(
                "{attr}[type eq {}].{sub}",
                crate::scim::filter::quote(type_value)
            ),
            Place::Ext { urn, attr, sub } => match sub {
                Some(sub) => format!("{urn}:{attr}.{sub}"),
                None => format!("{urn}:{attr}"),
            },
        }
    }

    /// Whether this is the `userName` target.
    pub(crate) fn is_user_name(&self) -> bool {
        matches!(&self.place, Place::Top { attr } if attr == "userName")
    }
}

const SIMPLE: &[(&str, AttrType)] = &[
    ("userName", AttrType::String),
    ("displayName", AttrType::String),
    ("nickName", AttrType::String),
    ("profileUrl", AttrType::String),
    ("title", AttrType::String),
    ("userType", AttrType::String),
    ("preferredLanguage", AttrType::String),
    ("locale", AttrType::String),
    ("timezone", AttrType::String),
    ("externalId", AttrType::String),
    ("active", AttrType::Boolean),
];

const NAME_SUBS: &[&str] = &[
    "formatted",
    "familyName",
    "givenName",
    "middleName",
    "honorificPrefix",
    "honorificSuffix",
];

/// A multi-valued complex attribute of the core User.
struct Multi {
    name: &'static str,
    /// The sub-attributes a rule may fill; `type` and `primary` are written by the engine.
    subs: &'static [&'static str],
    /// Whether the elements have a `value`, so a list can fill the attribute directly.
    has_value: bool,
    /// Whether the first element is marked `primary`. Roles and entitlements are sets of
    /// permissions with no preferred one, so theirs is not.
    primary: bool,
}

const VALUE_SUBS: &[&str] = &["value", "display"];

const MULTI: &[Multi] = &[
    Multi {
        name: "emails",
        subs: VALUE_SUBS,
        has_value: true,
        primary: true,
    },
    Multi {
        name: "phoneNumbers",
        subs: VALUE_SUBS,
        has_value: true,
        primary: true,
    },
    Multi {
        name: "ims",
        subs: VALUE_SUBS,
        has_value: true,
        primary: true,
    },
    Multi {
        name: "photos",
        subs: VALUE_SUBS,
        has_value: true,
        primary: true,
    },
    Multi {
        name: "x509Certificates",
        subs: VALUE_SUBS,
        has_value: true,
        primary: true,
    },
    Multi {
        name: "addresses",
        subs: &[
            "formatted",
            "streetAddress",
            "locality",
            "region",
            "postalCode",
            "country",
        ],
        has_value: false,
        primary: true,
    },
    Multi {
        name: "entitlements",
        subs: VALUE_SUBS,
        has_value: true,
        primary: false,
    },
    Multi {
        name: "roles",
        subs: VALUE_SUBS,
        has_value: true,
        primary: false,
    },
];

/// Core attributes that exist but are not for mapping, with the reason.
const NOT_MAPPED: &[(&str, &str)] = &[
    (
        "groups",
        "group membership is read-only in SCIM and provisioned by the group feature",
    ),
    ("id", "the id is assigned by the service provider"),
    ("meta", "meta is maintained by the service provider"),
    (
        "schemas",
        "schemas is written by the engine from the attributes used",
    ),
    ("password", "passwords are not provisioned"),
];

const ENTERPRISE_SIMPLE: &[&str] = &[
    "employeeNumber",
    "costCenter",
    "organization",
    "division",
    "department",
];

/// Resolves a target path. `extensions` are the declared custom extension URNs.
pub(crate) fn resolve(text: &str, extensions: &[String]) -> Result<Target, String> {
    let path = AttrPath::parse(text.trim()).map_err(|e| format!("malformed path: {e}"))?;
    if path.is_schema_only() {
        return Err("the path names a schema, not an attribute".to_owned());
    }
    match path.urn.as_deref() {
        None => core(&path),
        Some(urn) if name_eq(urn, CORE_USER_URN) => core(&path),
        Some(urn) if is_core_urn(urn) => Err(format!(
            "`{urn}` is not the User schema; rules fill User resources"
        )),
        Some(urn) if name_eq(urn, ENTERPRISE_URN) => enterprise(&path),
        Some(urn) => match extensions.iter().find(|e| name_eq(e, urn)) {
            Some(declared) => custom(declared, &path),
            None => Err(format!(
                "extension schema `{urn}` is not declared in `extensions`"
            )),
        },
    }
}

fn canonical<'a>(names: &[&'a str], name: &str) -> Option<&'a str> {
    names.iter().copied().find(|n| name_eq(n, name))
}

fn no_filter(path: &AttrPath) -> Result<(), String> {
    match path.filter {
        Some(_) => Err(format!(
            "`{}` is not multi-valued and takes no value filter",
            path.attr
        )),
        None => Ok(()),
    }
}

fn core(path: &AttrPath) -> Result<Target, String> {
    let single = |place, ty| Target {
        place,
        ty,
        primary: false,
    };
    if let Some(&(attr, ty)) = SIMPLE.iter().find(|(n, _)| name_eq(n, &path.attr)) {
        no_filter(path)?;
        if let Some(sub) = &path.sub_attr {
            return Err(format!("`{attr}` has no sub-attribute `{sub}`"));
        }
        return Ok(single(
            Place::Top {
                attr: attr.to_owned(),
            },
            ty,
        ));
    }
    if name_eq(&path.attr, "name") {
        no_filter(path)?;
        let Some(sub) = &path.sub_attr else {
            return Err(format!(
                "`name` is complex; map its sub-attributes ({})",
                NAME_SUBS.join(", ")
            ));
        };
        let sub = canonical(NAME_SUBS, sub)
            .ok_or_else(|| format!("unknown attribute `name.{sub}` of the core User schema"))?;
        return Ok(single(
            Place::Sub {
                attr: "name".to_owned(),
                sub: sub.to_owned(),
            },
            AttrType::String,
        ));
    }
    if let Some(multi) = MULTI.iter().find(|m| name_eq(m.name, &path.attr)) {
        return multi_valued(multi, path);
    }
    if let Some((attr, why)) = NOT_MAPPED.iter().find(|(n, _)| name_eq(n, &path.attr)) {
        return Err(format!("`{attr}` cannot be mapped: {why}"));
    }
    Err(format!(
        "unknown attribute `{}` of the core User schema",
        path.attr
    ))
}

fn multi_valued(multi: &Multi, path: &AttrPath) -> Result<Target, String> {
    let attr = multi.name.to_owned();
    let sub = match &path.sub_attr {
        Some(sub) => Some(canonical(multi.subs, sub).ok_or_else(|| {
            format!(
                "unknown sub-attribute `{sub}` of `{attr}` (known: {})",
                multi.subs.join(", ")
            )
        })?),
        None => None,
    };
    let Some(filter) = &path.filter else {
        return match sub {
            None | Some("value") if multi.has_value => Ok(Target {
                place: Place::Values { attr },
                ty: AttrType::Values,
                primary: multi.primary,
            }),
            _ => Err(format!(
                "`{}` needs a value filter such as `{attr}[type eq \"work\"].{}`",
                path.name(),
                sub.unwrap_or(multi.subs.first().copied().unwrap_or("value"))
            )),
        };
    };
    let type_value = type_filter(filter).ok_or_else(|| {
        format!("the value filter of `{attr}` must have the form `type eq \"<type>\"`")
    })?;
    let sub = match sub {
        Some(sub) => sub,
        None if multi.has_value => "value",
        None => {
            return Err(format!(
                "`{attr}[…]` needs a sub-attribute ({})",
                multi.subs.join(", ")
            ));
        }
    };
    Ok(Target {
        place: Place::Typed {
            attr,
            type_value,
            sub: sub.to_owned(),
        },
        ty: AttrType::String,
        primary: multi.primary,
    })
}

/// The `<x>` of a `type eq "<x>"` filter.
fn type_filter(filter: &Filter) -> Option<String> {
    match filter {
        Filter::Compare {
            path,
            op: CompareOp::Eq,
            value: Value::String(v),
        } if path.urn.is_none()
            && path.sub_attr.is_none()
            && name_eq(&path.attr, "type")
            && !v.trim().is_empty() =>
        {
            Some(v.clone())
        }
        _ => None,
    }
}

fn enterprise(path: &AttrPath) -> Result<Target, String> {
    no_filter(path)?;
    let ext = |attr: &str, sub: Option<&str>| Target {
        place: Place::Ext {
            urn: ENTERPRISE_URN.to_owned(),
            attr: attr.to_owned(),
            sub: sub.map(str::to_owned),
        },
        ty: AttrType::String,
        primary: false,
    };
    if let Some(attr) = canonical(ENTERPRISE_SIMPLE, &path.attr) {
        return match &path.sub_attr {
            None => Ok(ext(attr, None)),
            Some(sub) => Err(format!("`{attr}` has no sub-attribute `{sub}`")),
        };
    }
    if name_eq(&path.attr, "manager") {
        return match path.sub_attr.as_deref() {
            Some(sub) if name_eq(sub, "value") => Ok(ext("manager", Some("value"))),
            _ => Err(
                "only `manager.value` (the manager's id) can be mapped; the rest is read-only"
                    .to_owned(),
            ),
        };
    }
    Err(format!(
        "unknown attribute `{}` of the Enterprise User extension",
        path.attr
    ))
}

fn custom(urn: &str, path: &AttrPath) -> Result<Target, String> {
    if path.filter.is_some() {
        return Err("value filters are supported on core multi-valued attributes only".to_owned());
    }
    Ok(Target {
        place: Place::Ext {
            urn: urn.to_owned(),
            attr: path.attr.clone(),
            sub: path.sub_attr.clone(),
        },
        ty: AttrType::Free,
        primary: false,
    })
}

/// Checks a declared extension URN.
pub(crate) fn check_extension(urn: &str) -> Result<(), String> {
    let looks_like_urn = urn.get(..4).is_some_and(|p| p.eq_ignore_ascii_case("urn:"))
        && urn.len() > 4
        && !urn.ends_with(':')
        && !urn.contains(|c: char| c.is_whitespace() || "[]\"()".contains(c));
    if !looks_like_urn {
        return Err(format!("extension `{urn}` is not a schema URN"));
    }
    if is_core_urn(urn) {
        return Err(format!(
            "extension `{urn}` is a core schema, not an extension"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const ACME: &str = "urn:example:params:scim:schemas:extension:acme:2.0:User";

    fn ok(text: &str) -> Target {
        match resolve(text, &[ACME.to_owned()]) {
            Ok(t) => t,
            Err(e) => panic!("{text}: {e}"),
        }
    }

    #[test]
    fn every_path_form_resolves() {
        let cases: &[(&str, &str, AttrType)] = &[
            ("userName", "userName", AttrType::String),
            ("USERNAME", "userName", AttrType::String),
            ("active", "active", AttrType::Boolean),
            ("displayName", "displayName", AttrType::String),
            ("nickName", "nickName", AttrType::String),
            ("title", "title", AttrType::String),
            ("userType", "userType", AttrType::String),
            ("locale", "locale", AttrType::String),
            ("timezone", "timezone", AttrType::String),
            ("preferredLanguage", "preferredLanguage", AttrType::String),
            ("profileUrl", "profileUrl", AttrType::String),
            ("externalId", "externalId", AttrType::String),
            (
                "urn:ietf:params:scim:schemas:core:2.0:User:nickName",
                "nickName",
                AttrType::String,
            ),
            ("name.givenName", "name.givenName", AttrType::String),
            ("name.familyname", "name.familyName", AttrType::String),
            ("name.formatted", "name.formatted", AttrType::String),
            ("name.middleName", "name.middleName", AttrType::String),
            (
                "name.honorificPrefix",
                "name.honorificPrefix",
                AttrType::String,
            ),
            (
                "name.honorificSuffix",
                "name.honorificSuffix",
                AttrType::String,
            ),
            (
                "emails[type eq \"work\"].value",
                "emails[type eq \"work\"].value",
                AttrType::String,
            ),
            (
                "emails[type eq \"home\"]",
                "emails[type eq \"home\"].value",
                AttrType::String,
            ),
            (
                "phoneNumbers[type eq \"mobile\"].value",
                "phoneNumbers[type eq \"mobile\"].value",
                AttrType::String,
            ),
            (
                "addresses[type eq \"work\"].locality",
                "addresses[type eq \"work\"].locality",
                AttrType::String,
            ),
            (
                "addresses[TYPE EQ \"work\"].postalcode",
                "addresses[type eq \"work\"].postalCode",
                AttrType::String,
            ),
            (
                "ims[type eq \"xmpp\"].value",
                "ims[type eq \"xmpp\"].value",
                AttrType::String,
            ),
            (
                "photos[type eq \"photo\"].value",
                "photos[type eq \"photo\"].value",
                AttrType::String,
            ),
            (
                "x509Certificates[type eq \"signing\"].value",
                "x509Certificates[type eq \"signing\"].value",
                AttrType::String,
            ),
            ("roles", "roles", AttrType::Values),
            ("roles.value", "roles", AttrType::Values),
            ("entitlements", "entitlements", AttrType::Values),
            ("emails", "emails", AttrType::Values),
            (
                "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department",
                "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department",
                AttrType::String,
            ),
            (
                "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:employeenumber",
                "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:employeeNumber",
                AttrType::String,
            ),
            (
                "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager.value",
                "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager.value",
                AttrType::String,
            ),
            (
                "urn:example:params:scim:schemas:extension:acme:2.0:User:badge",
                "urn:example:params:scim:schemas:extension:acme:2.0:User:badge",
                AttrType::Free,
            ),
            (
                "URN:EXAMPLE:params:scim:schemas:extension:acme:2.0:User:badge.id",
                "urn:example:params:scim:schemas:extension:acme:2.0:User:badge.id",
                AttrType::Free,
            ),
        ];
        for (text, display, ty) in cases {
            let target = ok(text);
            assert_eq!(&target.display(), display, "{text}");
            assert_eq!(target.ty, *ty, "{text}");
        }
        assert!(ok("userName").is_user_name());
        assert!(ok("emails[type eq \"work\"].value").primary);
        assert!(!ok("roles").primary);
    }

    #[test]
    fn bad_paths_are_refused() {
        let cases: &[(&str, &str)] = &[
            ("", "malformed path"),
            ("emails[type eq \"work\"", "malformed path"),
            ("name..givenName", "malformed path"),
            ("nickname2", "unknown attribute"),
            ("name", "complex"),
            ("name.nickName", "unknown attribute"),
            ("userName.x", "no sub-attribute"),
            ("active[type eq \"x\"]", "not multi-valued"),
            ("emails[value eq \"x\"].value", "type eq"),
            ("emails[type eq \"\"].value", "type eq"),
            ("emails[type ne \"x\"].value", "type eq"),
            ("emails[type eq \"w\" and primary eq true].value", "type eq"),
            ("emails[type eq \"work\"].primary", "unknown sub-attribute"),
            ("emails.display", "needs a value filter"),
            ("addresses", "needs a value filter"),
            ("addresses[type eq \"work\"]", "needs a sub-attribute"),
            ("groups", "group feature"),
            ("password", "not provisioned"),
            ("id", "service provider"),
            (
                "urn:ietf:params:scim:schemas:core:2.0:Group:displayName",
                "not the User schema",
            ),
            (
                "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:badge",
                "unknown attribute",
            ),
            (
                "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager",
                "manager.value",
            ),
            (
                "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager.displayName",
                "manager.value",
            ),
            (
                "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department.x",
                "no sub-attribute",
            ),
            (
                "urn:other:params:scim:schemas:extension:x:2.0:User:badge",
                "not declared",
            ),
            (
                "urn:example:params:scim:schemas:extension:acme:2.0:User:badges[type eq \"a\"]",
                "value filters",
            ),
            (
                "urn:example:params:scim:schemas:extension:acme:2.0:User",
                "names a schema",
            ),
        ];
        for (text, expected) in cases {
            match resolve(text, &[ACME.to_owned()]) {
                Ok(t) => panic!("{text:?} resolved to {t:?}"),
                Err(e) => assert!(e.contains(expected), "{text:?}: {e}"),
            }
        }
    }

    #[test]
    fn extension_urns_are_checked() {
        assert!(check_extension(ACME).is_ok());
        assert!(check_extension("urn:acme:User").is_ok());
        for bad in [
            "acme",
            "urn:",
            "urn:acme:",
            "urn:a b",
            "urn:ietf:params:scim:schemas:core:2.0:User",
        ] {
            assert!(check_extension(bad).is_err(), "{bad}");
        }
    }
}
