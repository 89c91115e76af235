//! Attribute mapping: from a CMS user to a SCIM User resource, and back.
//!
//! A [`MappingConfig`] (the policy's `mapping`, `extensions` and `scope`) is compiled once
//! into a [`Mapping`], which checks every rule up front (paths, attribute names, transforms,
//! types, duplicates) so that mapping a user can fail only on the user's own data.
//!
//! - [`Mapping::map`] builds the resource, with `schemas` listing the core User schema and
//!   the extensions the resource uses;
//! - [`Mapping::in_scope`] says whether a user is provisioned at all;
//! - [`Mapping::reverse`] and [`Mapping::reverse_active`] read a resource back into CMS
//!   fields, for the server role and two-way sync.
//!
//! The configuration reference is `docs/configuration.md`.

mod config;
pub(crate) mod date;
pub(crate) mod regex;
mod resource;
mod reverse;
mod rule;
mod schema;
mod scope;
mod template;
mod transform;
mod value;

// The end-to-end tests use proptest, a dev-dependency only off wasm32.
#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests;

pub use config::{Apply, MappingConfig, RuleConfig, ScopeConfig, TransformConfig};

use serde_json::{Map, Value};

use crate::error::ProvisioningError;
use crate::scim::attr::name_eq;
use crate::user::CmsUser;
use rule::Rule;
use schema::{ENTERPRISE_URN, Place};
use scope::Scope;

/// Which request a resource is mapped for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MapMode {
    /// The remote user is being created: every rule applies.
    Create,
    /// The remote user exists: rules with `apply: "create"` are left out.
    Update,
}

/// A compiled, validated mapping.
#[derive(Debug, Clone)]
pub struct Mapping {
    rules: Vec<Rule>,
    /// The extension URNs in the order they are listed in `schemas`: Enterprise first, then
    /// the declared ones.
    extensions: Vec<String>,
    scope: Option<Scope>,
}

impl Mapping {
    /// Checks and compiles a configuration.
    ///
    /// Every problem found is reported, each naming its rule by index and target, in one
    /// [`ProvisioningError::InvalidConfig`] with the messages separated by `"; "`.
    pub fn compile(config: &MappingConfig) -> Result<Mapping, ProvisioningError> {
        let mut errors = Vec::new();
        let mut extensions = vec![ENTERPRISE_URN.to_owned()];
        for urn in &config.extensions {
            let urn = urn.trim();
            if let Err(e) = schema::check_extension(urn) {
                errors.push(format!("extensions: {e}"));
            } else if !extensions.iter().any(|e| name_eq(e, urn)) {
                extensions.push(urn.to_owned());
            }
        }
        let declared = extensions.get(1..).unwrap_or_default();
        let mut rules: Vec<Rule> = Vec::with_capacity(config.mapping.len());
        for (index, rule_config) in config.mapping.iter().enumerate() {
            match Rule::compile(index, rule_config, declared) {
                Ok(rule) => {
                    if let Some(clash) = clash(&rules, &rule) {
                        errors.push(rule::label(index, &rule_config.target, &clash));
                    }
                    rules.push(rule);
                }
                Err(e) => errors.push(e),
            }
        }
        let has_user_name = config
            .mapping
            .iter()
            .any(|r| schema::resolve(&r.target, declared).is_ok_and(|t| t.is_user_name()));
        if !has_user_name {
            errors.push("mapping: no rule fills `userName`, which every User needs".to_owned());
        }
        let scope = match &config.scope {
            None => None,
            Some(s) => match Scope::compile(s, "scope") {
                Ok(s) => Some(s),
                Err(e) => {
                    errors.push(e);
                    None
                }
            },
        };
        if !errors.is_empty() {
            return Err(ProvisioningError::InvalidConfig(errors.join("; ")));
        }
        Ok(Mapping {
            rules,
            extensions,
            scope,
        })
    }

    /// Maps a user to a SCIM User resource.
    ///
    /// Rules that yield nothing leave their attribute out. A required rule (and the
    /// `userName` rule always) that yields nothing fails with
    /// [`ProvisioningError::MissingAttribute`]; a value a transform or the target cannot
    /// take (`bool` on `"maybe"`, two values for a single-valued attribute) fails with
    /// [`ProvisioningError::Other`] naming the user, the attribute and the rule. Either way
    /// nothing is produced.
    pub fn map(&self, user: &CmsUser, mode: MapMode) -> Result<Value, ProvisioningError> {
        let mut root = Map::new();
        for rule in &self.rules {
            if mode == MapMode::Update && rule.apply == Apply::Create {
                continue;
            }
            let bad_value = |e: String| {
                ProvisioningError::Other(format!(
                    "user {}: cannot map {}: {e}",
                    user.id,
                    rule.label()
                ))
            };
            let value = rule.value(user).map_err(bad_value)?;
            match resource::to_json(value, rule.target.ty).map_err(bad_value)? {
                Some(json) => resource::put(&mut root, &rule.target, json),
                None if rule.required => {
                    return Err(ProvisioningError::MissingAttribute {
                        user_id: user.id.clone(),
                        attribute: rule.target.display(),
                    });
                }
                None => {}
            }
        }
        Ok(resource::finish(root, &self.extensions))
    }

    /// The attribute paths the rules fill, as written in SCIM (`name.givenName`,
    /// `emails[type eq "work"].value`), for checking them against a server's schema.
    pub fn targets(&self) -> Vec<String> {
        self.rules.iter().map(|r| r.target.display()).collect()
    }

    /// The fields the scope reads, each once: CMS field names, and `@id` when it reads the
    /// user's id. Empty without a scope. [`Mapping::in_scope`] reads nothing else of a user
    /// but its active flag.
    pub fn scope_fields(&self) -> Vec<String> {
        let mut fields = Vec::new();
        if let Some(scope) = &self.scope {
            scope.fields_read(&mut fields);
        }
        fields
    }

    /// Whether the user is provisioned; without a scope, everyone is.
    pub fn in_scope(&self, user: &CmsUser) -> bool {
        self.scope.as_ref().is_none_or(|s| s.holds(user))
    }
}

/// Why `rule` cannot sit beside the rules already compiled, if it cannot.
fn clash(rules: &[Rule], rule: &Rule) -> Option<String> {
    let display = rule.target.display();
    rules.iter().find_map(|other| {
        if other.target.display().eq_ignore_ascii_case(&display) {
            return Some(format!(
                "`{display}` is already filled by mapping[{}]",
                other.index
            ));
        }
        // A custom extension attribute cannot be both a value and an object with
        // sub-attributes.
        match (&other.target.place, &rule.target.place) {
            (
                Place::Ext {
                    urn: u1,
                    attr: a1,
                    sub: s1,
                },
                Place::Ext {
                    urn: u2,
                    attr: a2,
                    sub: s2,
                },
            ) if name_eq(u1, u2) && name_eq(a1, a2) && s1.is_some() != s2.is_some() => {
                Some(format!(
                    "`{display}` conflicts with mapping[{}] ({}): an attribute is either a \
                     value or has sub-attributes",
                    other.index,
                    other.target.display()
                ))
            }
            _ => None,
        }
    })
}
