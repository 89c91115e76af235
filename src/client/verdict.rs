//! What the client concludes from a server's answers, shared by the engine, its fallbacks,
//! the groups and bulk: what an update came to ([`Sent`]), which refusals call for a
//! fallback ([`is_patch_refusal`], [`is_schema_refusal`]), when a list is only a page or
//! its filter was ignored ([`more_expected`], [`filter_ignored`]), and the error when a
//! user cannot be verified absent ([`cannot_verify`]). It depends on no client module but
//! `resource`, so each of them can use it without importing another.

use serde_json::Value;

use super::resource::{id_of, match_value};
use crate::error::ProvisioningError;

/// What an update of an existing remote user came to.
pub(crate) enum Sent {
    /// Nothing differed; nothing was sent.
    Unchanged,
    /// The server took the change.
    Updated {
        version: Option<String>,
        location: Option<String>,
    },
    /// The remote user does not exist (404).
    Missing,
}

/// Whether a 400 may be a server refusing attributes its schema does not declare: any 400
/// but those that name another problem (a path, a conflict, a read-only attribute).
pub(crate) fn is_schema_refusal(e: &ProvisioningError) -> bool {
    match e {
        ProvisioningError::Scim(e) => {
            e.status == 400
                && !matches!(
                    e.scim_type.as_deref(),
                    Some("noTarget" | "invalidPath" | "uniqueness" | "mutability")
                )
        }
        ProvisioningError::UnexpectedResponse { status, .. } => *status == 400,
        _ => false,
    }
}

/// Whether a 400 says the server will not take a value for an attribute it declares
/// read-only or immutable (`scimType` `mutability`, RFC 7644 §3.12).
pub(crate) fn is_mutability_refusal(e: &ProvisioningError) -> bool {
    matches!(e, ProvisioningError::Scim(s) if s.status == 400 && s.scim_type.as_deref() == Some("mutability"))
}

/// Whether an error answer to a PATCH says the server cannot do that PATCH (rather than
/// that the change is wrong): 501, 405, or 400 with `noTarget`/`invalidPath`.
pub(crate) fn is_patch_refusal(e: &ProvisioningError) -> bool {
    match e {
        ProvisioningError::Scim(s) => {
            matches!(s.status, 501 | 405)
                || (s.status == 400
                    && matches!(s.scim_type.as_deref(), Some("noTarget" | "invalidPath")))
        }
        ProvisioningError::UnexpectedResponse { status, .. } => matches!(status, 501 | 405),
        _ => false,
    }
}

/// The error of a creation refused because the remote users could not all be seen and no
/// filter can ask for this one: permanent, so the host parks the user with this reason.
pub(crate) fn cannot_verify(why: &str) -> ProvisioningError {
    ProvisioningError::Other(format!(
        "cannot verify that the user is not already on the server: {why}; nothing was created (enable filtering or paging on the server, then retry)"
    ))
}

/// Whether a list read without paging parameters is likely only a page: fewer users than
/// `totalResults` says, or, without a believable `totalResults`, a round number of them
/// (10, 20, 25, 50, 100…), as a server's default page size would be.
pub(crate) fn more_expected(received: usize, total: u64) -> bool {
    let received = received as u64;
    if total >= received && total > 0 {
        received < total
    } else {
        received >= 10 && (received.is_multiple_of(10) || received.is_multiple_of(25))
    }
}

/// True when a list answered for a filter on `path` = `value` holds users that do not
/// match: the server ignored the filter.
pub(crate) fn filter_ignored(
    resources: &[Value],
    path: &crate::scim::path::AttrPath,
    value: &str,
) -> bool {
    resources.iter().any(|r| {
        id_of(r).is_some() && !match_value(r, path).is_some_and(|v| v.eq_ignore_ascii_case(value))
    })
}
