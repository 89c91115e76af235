//! The reverse mapping: from a SCIM User resource back to CMS fields, for the server role
//! and two-way sync.
//!
//! Only rules with a `source` reverse; constants and templates have no field to write.
//! Transforms are undone in reverse order where they can be (see `Transform::reverse`):
//! `split`/`join` invert each other and `not` negates back, while `lower`, `upper`, `trim`
//! and `regex_replace` are skipped, so the field gets the SCIM value as it is.

use serde_json::Value;

use super::Mapping;
use super::resource;
use super::rule::{Origin, Rule};
use super::value::{ACTIVE_FIELD, ID_FIELD, coerce_bool};
use crate::user::FieldValue;

impl Mapping {
    /// The CMS fields a resource holds, one entry per source field in rule order.
    ///
    /// An attribute the resource lacks gives `FieldValue::Null`, so a caller replacing a
    /// user can clear the field. When several rules read the same field, the first one
    /// with a value wins. The pseudo-fields are not listed: `@active` is read by
    /// [`Mapping::reverse_active`], and `@id` is the CMS's own key, not a field to write.
    pub fn reverse(&self, resource: &Value) -> Vec<(String, FieldValue)> {
        let mut fields: Vec<(String, FieldValue)> = Vec::new();
        for rule in &self.rules {
            let Origin::Field(name) = &rule.origin else {
                continue;
            };
            if name == ID_FIELD || name == ACTIVE_FIELD {
                continue;
            }
            let value = reverse_value(rule, resource);
            match fields.iter_mut().find(|(n, _)| n == name) {
                Some((_, existing)) if existing.is_empty() => *existing = value,
                Some(_) => {}
                None => fields.push((name.clone(), value)),
            }
        }
        fields
    }

    /// The active flag a resource holds, through the rule whose source is `@active`;
    /// `None` when no such rule exists or the resource has no usable value there.
    pub fn reverse_active(&self, resource: &Value) -> Option<bool> {
        self.rules
            .iter()
            .filter(|r| matches!(&r.origin, Origin::Field(name) if name == ACTIVE_FIELD))
            .find_map(|r| coerce_bool(&reverse_value(r, resource)))
    }
}

fn reverse_value(rule: &Rule, resource: &Value) -> FieldValue {
    rule.transforms
        .iter()
        .rev()
        .fold(resource::get(resource, &rule.target), |v, t| t.reverse(v))
}
