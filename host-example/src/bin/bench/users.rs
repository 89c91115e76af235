//! The users the benches work with: Drupal-style users, natively and in their WIT form.

use host_example::types as wit;
use scim_provisioner::user::{CmsUser, FieldValue, UserEvent};

/// A Drupal-style user: account name, mail (mixed case, padded, so the transforms work),
/// first and last name, roles; every seventh user is blocked.
pub fn drupal_user(i: usize) -> CmsUser {
    let text = |s: String| FieldValue::Text(s);
    let mut roles = vec!["authenticated".to_string()];
    if i.is_multiple_of(3) {
        roles.push("editor".into());
    }
    if i.is_multiple_of(11) {
        roles.push("administrator".into());
    }
    CmsUser {
        id: (1000 + i).to_string(),
        fields: vec![
            ("name".into(), text(format!("user{i:06}"))),
            ("mail".into(), text(format!("  User{i:06}@Example.ORG "))),
            ("field_first_name".into(), text(format!("First{i}"))),
            ("field_last_name".into(), text(format!("Last{}", i % 977))),
            ("roles".into(), FieldValue::TextList(roles)),
        ],
        active: !i.is_multiple_of(7),
    }
}

/// `v` as the component's WIT value.
fn to_wit_value(v: &FieldValue) -> wit::FieldValue {
    match v {
        FieldValue::Null => wit::FieldValue::Null,
        FieldValue::Boolean(b) => wit::FieldValue::Boolean(*b),
        FieldValue::Number(n) => wit::FieldValue::Number(*n),
        FieldValue::Text(s) => wit::FieldValue::Text(s.clone()),
        FieldValue::TextList(l) => wit::FieldValue::TextList(l.clone()),
    }
}

/// `u` as the component's WIT record.
pub fn to_wit_user(u: &CmsUser) -> wit::CmsUser {
    wit::CmsUser {
        id: u.id.clone(),
        fields: u
            .fields
            .iter()
            .map(|(k, v)| (k.clone(), to_wit_value(v)))
            .collect(),
        active: u.active,
    }
}

/// `e` as the component's WIT event.
pub fn to_wit_event(e: UserEvent) -> wit::UserEvent {
    match e {
        UserEvent::Created => wit::UserEvent::Created,
        UserEvent::Updated => wit::UserEvent::Updated,
        UserEvent::Blocked => wit::UserEvent::Blocked,
        UserEvent::Unblocked => wit::UserEvent::Unblocked,
        UserEvent::Deleted => wit::UserEvent::Deleted,
        UserEvent::Reconcile => wit::UserEvent::Reconcile,
    }
}
