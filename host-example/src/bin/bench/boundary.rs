//! What crossing the component's boundary costs, apart from the work done inside: the same
//! `plan`s for a user without fields (the floor of a call) and for one of [`WIDE_FIELDS`]
//! text fields. The difference, per string or list, is what one costs to cross.

use std::hint::black_box;

use anyhow::Result;
use host_example::Session;
use host_example::types as wit;
use scim_provisioner::user::UserEvent;

use crate::runner::median_ns_per_op;
use crate::users::to_wit_event;

/// The text fields of the wide user whose `plan` measures the cost of a string.
pub const WIDE_FIELDS: usize = 32;

/// A `plan`'s cost with nothing and with much to cross, in ns per call.
pub struct Crossing {
    /// A `plan` for a user without fields and with an empty id.
    pub plan_bare_ns: f64,
    /// A `plan` for a user of [`WIDE_FIELDS`] text fields.
    pub plan_wide_ns: f64,
    /// The ns each string or list in the user adds to a `plan`.
    pub per_item_ns: f64,
}

/// Every case's `plan` (every field passed) for the bare user and for the wide one.
pub fn crossing_cost(session: &mut Session, cases: &[(UserEvent, bool)]) -> Result<Crossing> {
    // The floor of a call: the same plans for a user with no fields and an empty id, so
    // almost nothing is copied in; what `plan` costs above it is the user's strings
    // crossing the boundary and being converted in the guest.
    let bare = wit::CmsUser {
        id: String::new(),
        fields: Vec::new(),
        active: true,
    };
    // Every case's plan for one user.
    let mut plans_of = |user: &wit::CmsUser| {
        median_ns_per_op(cases.len(), || {
            for &(event, linked) in cases {
                black_box(session.plan_with_every_field(
                    black_box(user),
                    to_wit_event(event),
                    linked,
                )?);
            }
            Ok(())
        })
    };
    let plan_bare = plans_of(&bare)?;

    // What each string costs to cross: the same plans for a user with 32 text fields (64
    // strings and one list more than `bare`). Every string and list is a `cabi_realloc`
    // call into the guest while the host lowers the arguments, and a free in the guest after.
    let wide = wit::CmsUser {
        id: String::new(),
        fields: (0..WIDE_FIELDS)
            .map(|i| {
                (
                    format!("field_{i}"),
                    wit::FieldValue::Text(format!("value {i}")),
                )
            })
            .collect(),
        active: true,
    };
    let plan_wide = plans_of(&wide)?;
    let per_item_ns = (plan_wide - plan_bare) / (2 * WIDE_FIELDS + 1) as f64;
    Ok(Crossing {
        plan_bare_ns: plan_bare,
        plan_wide_ns: plan_wide,
        per_item_ns,
    })
}
