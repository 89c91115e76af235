//! The schema definitions the server serves and enforces: core User, enterprise User and
//! core Group (RFC 7643 §4 and §8.7.1). One table drives `/Schemas`, input validation
//! (types, `required`, `readOnly`) and output (`returned`), so what the server says about
//! an attribute is what it does.
//!
//! Two deliberate departures from §8.7.1, both to describe this server truthfully: Group
//! `displayName` is `required` (§4.2 says REQUIRED; the §8.7.1 listing says otherwise), and
//! `addresses` has the `primary` sub-attribute §4.1.2 gives it.

use serde_json::{Map, Value, json};

use crate::ports::{ENTERPRISE_USER_SCHEMA, GROUP_SCHEMA, ResourceKind, USER_SCHEMA};
use crate::scim::attr;

/// An attribute's data type (RFC 7643 §2.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AttrType {
    String,
    Boolean,
    Reference,
    Binary,
    Complex,
}

impl AttrType {
    fn as_str(self) -> &'static str {
        match self {
            AttrType::String => "string",
            AttrType::Boolean => "boolean",
            AttrType::Reference => "reference",
            AttrType::Binary => "binary",
            AttrType::Complex => "complex",
        }
    }
}

/// When an attribute may be written (RFC 7643 §7).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mutability {
    ReadWrite,
    ReadOnly,
    Immutable,
    WriteOnly,
}

/// When an attribute is returned (RFC 7643 §7).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Returned {
    Default,
    Never,
}

/// One attribute definition.
#[derive(Debug, Clone, Copy)]
pub(crate) struct AttrDef {
    pub name: &'static str,
    pub kind: AttrType,
    pub multi: bool,
    pub required: bool,
    pub case_exact: bool,
    pub mutability: Mutability,
    pub returned: Returned,
    pub unique: bool,
    pub canonical: &'static [&'static str],
    pub reference_types: &'static [&'static str],
    pub sub: &'static [AttrDef],
    pub description: &'static str,
}

const fn attr(name: &'static str, kind: AttrType, description: &'static str) -> AttrDef {
    AttrDef {
        name,
        kind,
        multi: false,
        required: false,
        case_exact: false,
        mutability: Mutability::ReadWrite,
        returned: Returned::Default,
        unique: false,
        canonical: &[],
        reference_types: &[],
        sub: &[],
        description,
    }
}

const fn string(name: &'static str, description: &'static str) -> AttrDef {
    attr(name, AttrType::String, description)
}

const fn boolean(name: &'static str, description: &'static str) -> AttrDef {
    attr(name, AttrType::Boolean, description)
}

const fn reference(
    name: &'static str,
    types: &'static [&'static str],
    description: &'static str,
) -> AttrDef {
    let mut a = attr(name, AttrType::Reference, description);
    a.reference_types = types;
    a
}

const fn complex(
    name: &'static str,
    sub: &'static [AttrDef],
    description: &'static str,
) -> AttrDef {
    let mut a = attr(name, AttrType::Complex, description);
    a.sub = sub;
    a
}

impl AttrDef {
    const fn multi(mut self) -> Self {
        self.multi = true;
        self
    }

    const fn required(mut self) -> Self {
        self.required = true;
        self
    }

    const fn unique(mut self) -> Self {
        self.unique = true;
        self
    }

    const fn mutability(mut self, m: Mutability) -> Self {
        self.mutability = m;
        self
    }

    const fn never_returned(mut self) -> Self {
        self.returned = Returned::Never;
        self
    }

    const fn canonical(mut self, values: &'static [&'static str]) -> Self {
        self.canonical = values;
        self
    }

    /// The sub-attribute of that name, case-insensitively.
    pub fn sub_attr(&self, name: &str) -> Option<&'static AttrDef> {
        self.sub.iter().find(|a| attr::name_eq(a.name, name))
    }

    /// The definition as `/Schemas` shows it.
    fn to_json(self) -> Value {
        let mut o = Map::new();
        o.insert("name".into(), json!(self.name));
        o.insert("type".into(), json!(self.kind.as_str()));
        o.insert("multiValued".into(), json!(self.multi));
        o.insert("description".into(), json!(self.description));
        o.insert("required".into(), json!(self.required));
        if self.kind != AttrType::Complex && self.kind != AttrType::Boolean {
            o.insert("caseExact".into(), json!(self.case_exact));
        }
        if !self.canonical.is_empty() {
            o.insert("canonicalValues".into(), json!(self.canonical));
        }
        if !self.reference_types.is_empty() {
            o.insert("referenceTypes".into(), json!(self.reference_types));
        }
        if !self.sub.is_empty() {
            let subs: Vec<Value> = self.sub.iter().map(|s| s.to_json()).collect();
            o.insert("subAttributes".into(), Value::Array(subs));
        }
        let mutability = match self.mutability {
            Mutability::ReadWrite => "readWrite",
            Mutability::ReadOnly => "readOnly",
            Mutability::Immutable => "immutable",
            Mutability::WriteOnly => "writeOnly",
        };
        o.insert("mutability".into(), json!(mutability));
        let returned = match self.returned {
            Returned::Default => "default",
            Returned::Never => "never",
        };
        o.insert("returned".into(), json!(returned));
        o.insert(
            "uniqueness".into(),
            json!(if self.unique { "server" } else { "none" }),
        );
        Value::Object(o)
    }
}

/// A schema: its URN, name and attributes.
#[derive(Debug, Clone)]
pub(crate) struct SchemaDef {
    pub id: &'static str,
    pub name: &'static str,
    pub description: &'static str,
    pub attributes: &'static [AttrDef],
}

impl SchemaDef {
    /// The attribute of that name, case-insensitively.
    pub fn attr(&self, name: &str) -> Option<&'static AttrDef> {
        self.attributes.iter().find(|a| attr::name_eq(a.name, name))
    }

    /// The schema resource (RFC 7643 §7), with `meta.location` under `base_url`.
    pub fn to_json(&self, base_url: &str) -> Value {
        let attributes: Vec<Value> = self.attributes.iter().map(|a| a.to_json()).collect();
        json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Schema"],
            "id": self.id,
            "name": self.name,
            "description": self.description,
            "attributes": attributes,
            "meta": {
                "resourceType": "Schema",
                "location": format!("{base_url}/Schemas/{}", self.id),
            },
        })
    }
}

/// The schemas in the order `/Schemas` lists them.
pub(crate) const ALL: [&SchemaDef; 3] = [&USER, &ENTERPRISE_USER, &GROUP];

/// The schema with that URN, case-insensitively.
pub(crate) fn find(urn: &str) -> Option<&'static SchemaDef> {
    ALL.into_iter().find(|s| attr::name_eq(s.id, urn))
}

/// The core schema of a resource type.
pub(crate) fn core(kind: ResourceKind) -> &'static SchemaDef {
    match kind {
        ResourceKind::User => &USER,
        ResourceKind::Group => &GROUP,
    }
}

/// The extension schemas a resource type may carry.
pub(crate) fn extensions(kind: ResourceKind) -> &'static [&'static SchemaDef] {
    match kind {
        ResourceKind::User => &[&ENTERPRISE_USER],
        ResourceKind::Group => &[],
    }
}

const TYPE: &str = "A label indicating the attribute's function.";
const PRIMARY: &str = "A Boolean value indicating the 'primary' or preferred attribute value \
for this attribute. The primary attribute value 'true' MUST appear no more than once.";
const DISPLAY: &str = "A human-readable name, primarily used for display purposes. READ-ONLY.";

/// `value`, `display`, `type` and `primary`, the shape most multi-valued attributes share.
macro_rules! multi_subs {
    ($value:expr, $types:expr) => {
        [
            $value,
            string("display", DISPLAY),
            string("type", TYPE).canonical($types),
            boolean("primary", PRIMARY),
        ]
    };
}

const NAME_SUBS: [AttrDef; 6] = [
    string(
        "formatted",
        "The full name, including all middle names, titles, and suffixes as appropriate, \
formatted for display (e.g., 'Ms. Barbara J Jensen, III').",
    ),
    string(
        "familyName",
        "The family name of the User, or last name in most Western languages.",
    ),
    string(
        "givenName",
        "The given name of the User, or first name in most Western languages.",
    ),
    string("middleName", "The middle name(s) of the User."),
    string(
        "honorificPrefix",
        "The honorific prefix(es) of the User, or title in most Western languages.",
    ),
    string(
        "honorificSuffix",
        "The honorific suffix(es) of the User, or suffix in most Western languages.",
    ),
];

const EMAIL_SUBS: [AttrDef; 4] = multi_subs!(
    string("value", "Email address for the User."),
    &["work", "home", "other"]
);
const PHONE_SUBS: [AttrDef; 4] = multi_subs!(
    string("value", "Phone number of the User."),
    &["work", "home", "mobile", "fax", "pager", "other"]
);
const IM_SUBS: [AttrDef; 4] = multi_subs!(
    string("value", "Instant messaging address for the User."),
    &["aim", "gtalk", "icq", "xmpp", "msn", "skype", "qq", "yahoo"]
);
const PHOTO_SUBS: [AttrDef; 4] = multi_subs!(
    reference("value", &["external"], "URL of a photo of the User."),
    &["photo", "thumbnail"]
);
const ENTITLEMENT_SUBS: [AttrDef; 4] =
    multi_subs!(string("value", "The value of an entitlement."), &[]);
const ROLE_SUBS: [AttrDef; 4] = multi_subs!(string("value", "The value of a role."), &[]);
const X509_SUBS: [AttrDef; 4] = multi_subs!(
    attr(
        "value",
        AttrType::Binary,
        "The value of an X.509 certificate."
    ),
    &[]
);

const ADDRESS_SUBS: [AttrDef; 8] = [
    string(
        "formatted",
        "The full mailing address, formatted for display or use with a mailing label.",
    ),
    string(
        "streetAddress",
        "The full street address component, which may include house number, street name, \
P.O. box, and multi-line extended street address information.",
    ),
    string("locality", "The city or locality component."),
    string("region", "The state or region component."),
    string("postalCode", "The zip code or postal code component."),
    string("country", "The country name component."),
    string("type", TYPE).canonical(&["work", "home", "other"]),
    boolean("primary", PRIMARY),
];

const GROUPS_SUBS: [AttrDef; 4] = [
    string("value", "The identifier of the User's group.").mutability(Mutability::ReadOnly),
    reference(
        "$ref",
        &["User", "Group"],
        "The URI of the corresponding 'Group' resource to which the user belongs.",
    )
    .mutability(Mutability::ReadOnly),
    string("display", DISPLAY).mutability(Mutability::ReadOnly),
    string(
        "type",
        "A label indicating the attribute's function, e.g., 'direct' or 'indirect'.",
    )
    .canonical(&["direct", "indirect"])
    .mutability(Mutability::ReadOnly),
];

/// `urn:ietf:params:scim:schemas:core:2.0:User` (RFC 7643 §4.1).
pub(crate) const USER: SchemaDef = SchemaDef {
    id: USER_SCHEMA,
    name: "User",
    description: "User Account",
    attributes: &[
        string(
            "userName",
            "Unique identifier for the User, typically used by the user to directly \
authenticate to the service provider. Each User MUST include a non-empty userName value. \
This identifier MUST be unique across the service provider's entire set of Users. REQUIRED.",
        )
        .required()
        .unique(),
        complex(
            "name",
            &NAME_SUBS,
            "The components of the user's real name.",
        ),
        string(
            "displayName",
            "The name of the User, suitable for display to end-users.",
        ),
        string(
            "nickName",
            "The casual way to address the user in real life.",
        ),
        reference(
            "profileUrl",
            &["external"],
            "A fully qualified URL pointing to a page representing the User's online profile.",
        ),
        string("title", "The user's title, such as \"Vice President.\""),
        string(
            "userType",
            "Used to identify the relationship between the organization and the user.",
        ),
        string(
            "preferredLanguage",
            "Indicates the User's preferred written or spoken language.",
        ),
        string(
            "locale",
            "Used to indicate the User's default location for purposes of localizing items \
such as currency, date time format, or numerical representations.",
        ),
        string(
            "timezone",
            "The User's time zone in the 'Olson' time zone database format, e.g., \
'America/Los_Angeles'.",
        ),
        boolean(
            "active",
            "A Boolean value indicating the User's administrative status.",
        ),
        string(
            "password",
            "The User's cleartext password. This attribute is intended to be used as a means \
to specify an initial password when creating a new User or to reset an existing User's \
password.",
        )
        .mutability(Mutability::WriteOnly)
        .never_returned(),
        complex("emails", &EMAIL_SUBS, "Email addresses for the user.").multi(),
        complex("phoneNumbers", &PHONE_SUBS, "Phone numbers for the User.").multi(),
        complex("ims", &IM_SUBS, "Instant messaging addresses for the User.").multi(),
        complex("photos", &PHOTO_SUBS, "URLs of photos of the User.").multi(),
        complex(
            "addresses",
            &ADDRESS_SUBS,
            "A physical mailing address for this User.",
        )
        .multi(),
        complex(
            "groups",
            &GROUPS_SUBS,
            "A list of groups to which the user belongs, either through direct membership, \
through nested groups, or dynamically calculated.",
        )
        .multi()
        .mutability(Mutability::ReadOnly),
        complex(
            "entitlements",
            &ENTITLEMENT_SUBS,
            "A list of entitlements for the User that represent a thing the User has.",
        )
        .multi(),
        complex(
            "roles",
            &ROLE_SUBS,
            "A list of roles for the User that collectively represent who the User is, \
e.g., 'Student', 'Faculty'.",
        )
        .multi(),
        complex(
            "x509Certificates",
            &X509_SUBS,
            "A list of certificates issued to the User.",
        )
        .multi(),
    ],
};

const MANAGER_SUBS: [AttrDef; 3] = [
    string(
        "value",
        "The id of the SCIM resource representing the User's manager.",
    ),
    reference(
        "$ref",
        &["User"],
        "The URI of the SCIM resource representing the User's manager.",
    ),
    string(
        "displayName",
        "The displayName of the User's manager. OPTIONAL and READ-ONLY.",
    )
    .mutability(Mutability::ReadOnly),
];

/// `urn:ietf:params:scim:schemas:extension:enterprise:2.0:User` (RFC 7643 §4.3).
pub(crate) const ENTERPRISE_USER: SchemaDef = SchemaDef {
    id: ENTERPRISE_USER_SCHEMA,
    name: "EnterpriseUser",
    description: "Enterprise User",
    attributes: &[
        string(
            "employeeNumber",
            "Numeric or alphanumeric identifier assigned to a person, typically based on \
order of hire or association with an organization.",
        ),
        string("costCenter", "Identifies the name of a cost center."),
        string("organization", "Identifies the name of an organization."),
        string("division", "Identifies the name of a division."),
        string("department", "Identifies the name of a department."),
        complex("manager", &MANAGER_SUBS, "The User's manager."),
    ],
};

const MEMBER_SUBS: [AttrDef; 3] = [
    string("value", "Identifier of the member of this Group.").mutability(Mutability::Immutable),
    reference(
        "$ref",
        &["User", "Group"],
        "The URI corresponding to a SCIM resource that is a member of this Group.",
    )
    .mutability(Mutability::Immutable),
    string(
        "type",
        "A label indicating the type of resource, e.g., 'User' or 'Group'.",
    )
    .canonical(&["User", "Group"])
    .mutability(Mutability::Immutable),
];

/// `urn:ietf:params:scim:schemas:core:2.0:Group` (RFC 7643 §4.2).
pub(crate) const GROUP: SchemaDef = SchemaDef {
    id: GROUP_SCHEMA,
    name: "Group",
    description: "Group",
    attributes: &[
        string(
            "displayName",
            "A human-readable name for the Group. REQUIRED.",
        )
        .required(),
        complex("members", &MEMBER_SUBS, "A list of members of the Group.").multi(),
    ],
};

#[cfg(test)]
mod tests {
    use super::*;

    /// Every attribute carries the characteristics a strict parser needs, with legal
    /// values, and complex attributes have sub-attributes that are not complex.
    #[test]
    fn definitions_are_well_formed() {
        fn check(a: &Value, top: bool) {
            let name = a["name"].as_str().unwrap_or("");
            assert!(!name.is_empty());
            let t = a["type"].as_str().unwrap_or("");
            assert!(
                ["string", "boolean", "reference", "binary", "complex"].contains(&t),
                "{name}"
            );
            for k in ["multiValued", "required"] {
                assert!(a[k].is_boolean(), "{name}.{k}");
            }
            assert!(a["description"].is_string());
            assert!(
                ["readWrite", "readOnly", "immutable", "writeOnly"]
                    .contains(&a["mutability"].as_str().unwrap_or("")),
                "{name}"
            );
            assert!(["default", "never"].contains(&a["returned"].as_str().unwrap_or("")));
            assert!(["none", "server"].contains(&a["uniqueness"].as_str().unwrap_or("")));
            if t == "reference" {
                assert!(a["referenceTypes"].is_array(), "{name}");
            }
            if t == "complex" {
                assert!(top, "{name}: complex sub-attribute");
                let subs = a["subAttributes"].as_array().cloned().unwrap_or_default();
                assert!(!subs.is_empty(), "{name}");
                for s in &subs {
                    check(s, false);
                }
            } else {
                assert!(a.get("subAttributes").is_none());
            }
        }
        for s in ALL {
            let j = s.to_json("https://x/scim/v2");
            assert_eq!(j["id"], s.id);
            for a in j["attributes"].as_array().cloned().unwrap_or_default() {
                check(&a, true);
            }
        }
        assert_eq!(USER.attributes.len(), 21);
        assert!(find("URN:ietf:params:scim:schemas:core:2.0:group").is_some());
        assert!(
            USER.attr("USERNAME")
                .is_some_and(|a| a.required && a.unique)
        );
        assert!(
            USER.attr("password")
                .is_some_and(|a| a.returned == Returned::Never)
        );
    }
}
