//! The CMS view of a SCIM resource: the CMS user a written SCIM User stands for, which the
//! server role hands the directory with each write so that a host can store CMS fields
//! without reading SCIM. It is the policy's mapping, reversed.

use serde_json::Value;

use crate::mapping::Mapping;
use crate::ports::ResourceKind;
use crate::user::CmsUser;

/// The CMS user that `resource` stands for, by `mapping` reversed; `None` for groups, which
/// have no CMS view. The id is left empty: the directory, not the resource, knows which
/// CMS user it is. A resource that says nothing about `active` is active, as SCIM users
/// are by default.
pub fn cms_view(mapping: &Mapping, kind: ResourceKind, resource: &Value) -> Option<CmsUser> {
    if kind != ResourceKind::User {
        return None;
    }
    Some(CmsUser {
        id: String::new(),
        fields: mapping.reverse(resource),
        active: mapping.reverse_active(resource).unwrap_or(true),
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::policy::Policy;
    use crate::user::FieldValue;

    fn default_mapping() -> Mapping {
        match Policy::parse("") {
            Ok(policy) => policy.mapping,
            Err(e) => panic!("the default policy must parse: {e}"),
        }
    }

    #[test]
    fn a_user_gets_its_fields_by_the_reversed_mapping() {
        let mapping = default_mapping();
        let resource = json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
            "userName": "ann",
            "active": false
        });
        let view = cms_view(&mapping, ResourceKind::User, &resource);
        assert_eq!(
            view,
            Some(CmsUser {
                id: String::new(),
                fields: mapping.reverse(&resource),
                active: false,
            })
        );
        let fields = view.map(|v| v.fields).unwrap_or_default();
        assert!(
            fields.contains(&("name".to_string(), FieldValue::Text("ann".into()))),
            "{fields:?}"
        );
    }

    #[test]
    fn a_user_without_active_is_active() {
        let view = cms_view(
            &default_mapping(),
            ResourceKind::User,
            &json!({"userName": "ann"}),
        );
        assert_eq!(view.map(|v| v.active), Some(true));
    }

    #[test]
    fn groups_have_no_cms_view() {
        let group = json!({"displayName": "Editors", "members": []});
        assert_eq!(
            cms_view(&default_mapping(), ResourceKind::Group, &group),
            None
        );
    }
}
