//! CMS roles as SCIM Groups, under the component runtime, against scim2-server and SCIMMY:
//! groups are created when missing, the user is added and removed as roles change, and
//! each result is read back with a plain HTTP GET.

use host_example::types::{Action, FieldValue, UserEvent};
use scim_provisioner_tests::component::{
    drupal_user, group_members as members, open, provision, set_field, settings,
};
use scim_provisioner_tests::peers::{self, Peer};
use serde_json::Value;

const POLICY: &str = r#"{"groups_from": "roles"}"#;

fn roles(list: &[&str]) -> FieldValue {
    FieldValue::TextList(list.iter().map(|s| (*s).to_string()).collect())
}

fn roles_become_groups(peer: &Peer) {
    let mut session = open(&settings(peer, POLICY));
    let mut user = drupal_user("31", "gina", "Gina", "Groups");
    set_field(&mut user, "roles", roles(&["editor", "member"]));
    let out = provision(&mut session, &user, UserEvent::Created, None)
        .unwrap_or_else(|e| panic!("{}: {}", peer.name, host_example::describe_error(&e)));
    assert_eq!(out.action, Action::Created);
    let link = out.link.expect("link");
    let id = link.remote_id.clone();
    assert_eq!(
        members(peer, "editor"),
        Some(vec![id.clone()]),
        "{}",
        peer.name
    );
    assert_eq!(
        members(peer, "member"),
        Some(vec![id.clone()]),
        "{}",
        peer.name
    );

    // A second user joins the existing group; no second group is created.
    let mut other = drupal_user("32", "hank", "Hank", "Groups");
    set_field(&mut other, "roles", roles(&["editor"]));
    let other_out = provision(&mut session, &other, UserEvent::Created, None).expect("hank");
    let other_id = other_out.link.expect("link").remote_id;
    let mut editors = members(peer, "editor").expect("editor group");
    editors.sort();
    let mut want = vec![id.clone(), other_id.clone()];
    want.sort();
    assert_eq!(editors, want, "{}", peer.name);

    // Gina loses the member role: she leaves that group, stays in editor.
    set_field(&mut user, "roles", roles(&["editor"]));
    let out = provision(&mut session, &user, UserEvent::Updated, Some(&link)).expect("update");
    assert_eq!(members(peer, "member"), Some(vec![]), "{}", peer.name);
    assert!(members(peer, "editor").expect("editor").contains(&id));
    let link = out.link.expect("link");

    // Nothing changed: nothing is sent for groups either.
    let again = provision(&mut session, &user, UserEvent::Updated, Some(&link)).expect("again");
    assert_eq!(again.action, Action::Unchanged);
    assert_eq!(again.requests, 0, "{}", peer.name);
    let snapshot: Value = serde_json::from_str(
        again
            .link
            .expect("link")
            .snapshot
            .as_deref()
            .expect("snapshot"),
    )
    .expect("json");
    assert_eq!(
        snapshot["x-scim-provisioner-groups"],
        serde_json::json!(["editor"])
    );
}

#[test]
fn roles_become_groups_on_scim2_server() {
    roles_become_groups(&peers::scim2_server().expect("scim2-server starts"));
}

#[test]
fn roles_become_groups_on_scimmy() {
    roles_become_groups(&peers::scimmy().expect("SCIMMY app starts"));
}
