//! Operation selection: one pure function that decides what a provisioning call does, from
//! the event, the link state, the user's state and the enabled operations.

use crate::policy::{Deprovision, Operations};
use crate::user::UserEvent;

/// What the engine should do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Match, then create or adopt a remote user.
    Create,
    /// Bring the linked remote user in line.
    Update,
    /// Set the linked remote user's `active` to false.
    Deactivate,
    /// Set the linked remote user's `active` to true, and bring it in line.
    Reactivate,
    /// Delete the linked remote user.
    Delete,
    /// Do nothing, for this reason.
    Skip(&'static str),
}

/// The facts a decision depends on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Situation {
    /// What happened in the CMS.
    pub event: UserEvent,
    /// Whether the user is linked to a remote user.
    pub linked: bool,
    /// Whether the user is active (not blocked) in the CMS.
    pub active: bool,
    /// Whether the user is in the provisioning scope.
    pub in_scope: bool,
}

/// Decides what to do. Deprovisioning (a deleted user, or one who left the scope) follows
/// `deprovision`, falling back to deactivation when delete is disabled; a blocked user is
/// deactivated, never deleted.
pub fn decide(s: Situation, ops: Operations, deprovision: Deprovision) -> Decision {
    let deprovisioning = s.event == UserEvent::Deleted || !s.in_scope;
    if deprovisioning {
        if !s.linked {
            return Decision::Skip(if s.event == UserEvent::Deleted {
                "deleted user was never provisioned"
            } else {
                "user is out of scope and was never provisioned"
            });
        }
        return match deprovision {
            Deprovision::Delete if ops.delete => Decision::Delete,
            _ if ops.deactivate => Decision::Deactivate,
            Deprovision::Delete => Decision::Skip("delete and deactivate are disabled"),
            Deprovision::Deactivate => Decision::Skip("deactivate is disabled"),
        };
    }
    if s.event == UserEvent::Blocked || !s.active {
        return match (s.linked, ops.deactivate) {
            (false, _) => Decision::Skip("blocked user was never provisioned"),
            (true, true) => Decision::Deactivate,
            (true, false) => Decision::Skip("deactivate is disabled"),
        };
    }
    match (s.linked, s.event) {
        (false, _) if ops.create => Decision::Create,
        (false, _) => Decision::Skip("create is disabled"),
        // Reactivation undoes a deactivation, so either permission allows it.
        (true, UserEvent::Unblocked) if ops.update || ops.deactivate => Decision::Reactivate,
        (true, _) if ops.update => Decision::Update,
        (true, _) => Decision::Skip("update is disabled"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Decision::*;
    use UserEvent::*;

    const ALL: Operations = Operations {
        create: true,
        update: true,
        deactivate: true,
        delete: true,
    };
    const NONE: Operations = Operations {
        create: false,
        update: false,
        deactivate: false,
        delete: false,
    };

    fn s(event: UserEvent, linked: bool, active: bool, in_scope: bool) -> Situation {
        Situation {
            event,
            linked,
            active,
            in_scope,
        }
    }

    /// The whole table with every operation enabled.
    #[test]
    fn table_with_everything_enabled() {
        let cases = [
            // event, linked, active, in scope, deprovision => decision
            (Created, false, true, true, Deprovision::Deactivate, Create),
            (Created, true, true, true, Deprovision::Deactivate, Update),
            (Updated, false, true, true, Deprovision::Deactivate, Create),
            (Updated, true, true, true, Deprovision::Deactivate, Update),
            (
                Reconcile,
                false,
                true,
                true,
                Deprovision::Deactivate,
                Create,
            ),
            (Reconcile, true, true, true, Deprovision::Deactivate, Update),
            (
                Unblocked,
                true,
                true,
                true,
                Deprovision::Deactivate,
                Reactivate,
            ),
            (
                Unblocked,
                false,
                true,
                true,
                Deprovision::Deactivate,
                Create,
            ),
            (
                Blocked,
                true,
                false,
                true,
                Deprovision::Deactivate,
                Deactivate,
            ),
            (Blocked, true, false, true, Deprovision::Delete, Deactivate),
            (
                Blocked,
                false,
                false,
                true,
                Deprovision::Deactivate,
                Skip("blocked user was never provisioned"),
            ),
            (
                Updated,
                true,
                false,
                true,
                Deprovision::Deactivate,
                Deactivate,
            ),
            (
                Reconcile,
                true,
                false,
                true,
                Deprovision::Delete,
                Deactivate,
            ),
            (
                Created,
                false,
                false,
                true,
                Deprovision::Deactivate,
                Skip("blocked user was never provisioned"),
            ),
            (
                Deleted,
                true,
                true,
                true,
                Deprovision::Deactivate,
                Deactivate,
            ),
            (Deleted, true, true, true, Deprovision::Delete, Delete),
            (
                Deleted,
                false,
                true,
                true,
                Deprovision::Delete,
                Skip("deleted user was never provisioned"),
            ),
            (Updated, true, true, false, Deprovision::Delete, Delete),
            (
                Reconcile,
                true,
                true,
                false,
                Deprovision::Deactivate,
                Deactivate,
            ),
            (
                Reconcile,
                false,
                true,
                false,
                Deprovision::Deactivate,
                Skip("user is out of scope and was never provisioned"),
            ),
        ];
        for (event, linked, active, in_scope, deprovision, want) in cases {
            assert_eq!(
                decide(s(event, linked, active, in_scope), ALL, deprovision),
                want,
                "{event:?} linked={linked} active={active} in_scope={in_scope} {deprovision:?}"
            );
        }
    }

    #[test]
    fn disabled_operations_skip_with_a_reason() {
        let d = Deprovision::Deactivate;
        assert_eq!(
            decide(s(Created, false, true, true), NONE, d),
            Skip("create is disabled")
        );
        assert_eq!(
            decide(s(Updated, true, true, true), NONE, d),
            Skip("update is disabled")
        );
        assert_eq!(
            decide(s(Blocked, true, false, true), NONE, d),
            Skip("deactivate is disabled")
        );
        assert_eq!(
            decide(s(Unblocked, true, true, true), NONE, d),
            Skip("update is disabled")
        );
        assert_eq!(
            decide(s(Deleted, true, true, true), NONE, d),
            Skip("deactivate is disabled")
        );
        assert_eq!(
            decide(s(Deleted, true, true, true), NONE, Deprovision::Delete),
            Skip("delete and deactivate are disabled")
        );
    }

    #[test]
    fn delete_falls_back_to_deactivate_when_disabled() {
        let ops = Operations {
            delete: false,
            ..ALL
        };
        assert_eq!(
            decide(s(Deleted, true, true, true), ops, Deprovision::Delete),
            Deactivate
        );
    }

    #[test]
    fn reactivation_needs_update_or_deactivate() {
        let only_deactivate = Operations {
            deactivate: true,
            ..NONE
        };
        assert_eq!(
            decide(
                s(Unblocked, true, true, true),
                only_deactivate,
                Deprovision::Deactivate
            ),
            Reactivate
        );
    }

    /// Every combination gives an answer, and nothing enabled never sends anything.
    #[test]
    fn every_combination_is_decided() {
        let events = [Created, Updated, Blocked, Unblocked, Deleted, Reconcile];
        for event in events {
            for bits in 0..8u8 {
                let sit = s(event, bits & 1 != 0, bits & 2 != 0, bits & 4 != 0);
                for d in [Deprovision::Deactivate, Deprovision::Delete] {
                    assert!(matches!(decide(sit, NONE, d), Skip(_)), "{sit:?}");
                    let _ = decide(sit, ALL, d);
                }
            }
        }
    }
}
