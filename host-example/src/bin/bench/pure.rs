//! Phase 1, component vs native on pure work: the same Drupal-style users mapped, and their
//! operations selected, natively and through the component (which sends nothing), each
//! warmed up once and timed [`REPEATS`] times; then what crossing the boundary costs
//! ([`boundary`](crate::boundary)).

use std::hint::black_box;

use anyhow::{Result, anyhow, bail};
use host_example::types as wit;
use host_example::{ConnectorSettings, Credentials, Runtime, Session, describe_error};
use scim_provisioner::client::selection::{Situation, decide};
use scim_provisioner::mapping::MapMode;
use scim_provisioner::policy::Policy;
use scim_provisioner::scim::text;
use scim_provisioner::user::{CmsUser, UserEvent};
use serde_json::Value;

use crate::boundary::{self, WIDE_FIELDS};
use crate::figures::Figures;
use crate::runner::{REPEATS, median_ns_per_op};
use crate::users::{drupal_user, to_wit_event, to_wit_user};

/// Measures phase 1 and prints it, adding issue 13's rows for it to `figures`.
pub fn run(runtime: &Runtime, users: usize, figures: &mut Figures) -> Result<()> {
    println!("\n== component vs native: {users} users, 1 warm-up + median of {REPEATS} ==");
    let pure = pure_work(runtime, users)?;
    println!(
        "{:<24} {:>12} {:>15} {:>10}",
        "operation", "native ns/op", "component ns/op", "ratio"
    );
    for row in &pure.rows {
        println!(
            "{:<24} {:>12.0} {:>15.0} {:>9.1}x",
            row.name,
            row.native_ns,
            row.component_ns,
            row.component_ns / row.native_ns
        );
    }
    println!(
        "a plan for a user of {WIDE_FIELDS} text fields: {:.0} ns, so each string or list in the \
         user adds {:.0} ns (lowered by a realloc call into the guest, freed there after)",
        pure.plan_wide_ns, pure.per_item_ns
    );
    pure_figures(&pure, figures);
    Ok(())
}

/// Issue 13's rows for the component against native.
fn pure_figures(pure: &PureWork, figures: &mut Figures) {
    let row = |name: &str| pure.rows.iter().find(|r| r.name == name);
    if let Some(map) = row(MAP_ROW) {
        let ratio = map.component_ns / map.native_ns;
        figures.push(
            "map one user, component ÷ native",
            format!(
                "{:.2} µs vs {:.2} µs, {ratio:.1}×",
                map.component_ns / 1e3,
                map.native_ns / 1e3
            ),
            "≤ 1.5×",
            Some(ratio <= 1.5),
        );
    }
    if let (Some(plan), Some(bare)) = (row(PLAN_ROW), row(BARE_PLAN_ROW)) {
        figures.push(
            "a `plan` call, default policy (no scope: only `active` crosses)",
            format!(
                "{:.2} µs (native `decide` {:.0} ns); a call passing no field {:.2} µs; each \
                 string or list passed adds {:.0} ns",
                plan.component_ns / 1e3,
                plan.native_ns,
                bare.component_ns / 1e3,
                pure.per_item_ns
            ),
            "≤ 0.5 µs",
            Some(plan.component_ns <= 500.0),
        );
    }
    if let Some(scoped) = row(SCOPED_PLAN_ROW) {
        figures.push(
            "a `plan` call under a scope on `roles` (the list crosses)",
            format!(
                "{:.2} µs (native {:.0} ns)",
                scoped.component_ns / 1e3,
                scoped.native_ns
            ),
            "",
            None,
        );
    }
}

struct PureRow {
    name: &'static str,
    native_ns: f64,
    component_ns: f64,
}

/// Component against native, and what one string in a `plan`'s user costs to cross.
struct PureWork {
    rows: Vec<PureRow>,
    /// A `plan` for a user of [`WIDE_FIELDS`] text fields, in ns.
    plan_wide_ns: f64,
    /// The ns each string or list in the user adds to a `plan`.
    per_item_ns: f64,
}

/// The names of the rows of [`PureWork`] that issue 13's table quotes.
const MAP_ROW: &str = "map user -> JSON";
const PLAN_ROW: &str = "plan (decide)";
const SCOPED_PLAN_ROW: &str = "plan, scope on roles";
const BARE_PLAN_ROW: &str = "plan, user without fields";

const EVENTS: [UserEvent; 6] = [
    UserEvent::Created,
    UserEvent::Updated,
    UserEvent::Blocked,
    UserEvent::Unblocked,
    UserEvent::Deleted,
    UserEvent::Reconcile,
];

/// A policy with a scope on one field, as a site that provisions only some roles has:
/// `plan` then reads that field (the default policy has no scope, so `plan` reads none).
const ROLE_SCOPE_POLICY: &str = r#"{"scope": {"field": "roles", "any_of": ["member", "editor"]}}"#;

fn open_session(runtime: &Runtime, policy_json: &str) -> Result<Session> {
    let settings = ConnectorSettings {
        // Nothing is sent: map_user and plan are pure.
        base_url: "http://127.0.0.1:9/v2".into(),
        credentials: Credentials::Bearer("bench-token".into()),
        timeout_ms: 1_000,
        policy_json: policy_json.into(),
    };
    runtime
        .open(&settings)?
        .map_err(|e| anyhow!("cannot open a connector: {}", describe_error(&e)))
}

fn pure_work(runtime: &Runtime, n: usize) -> Result<PureWork> {
    let policy = Policy::parse("").map_err(|e| anyhow!("default policy: {e}"))?;
    let users: Vec<CmsUser> = (0..n).map(drupal_user).collect();
    let wit_users: Vec<wit::CmsUser> = users.iter().map(to_wit_user).collect();
    let mut session = open_session(runtime, "")?;

    // Both sides produce the same JSON text, so the work is comparable.
    let native_first = text::json(
        &policy
            .mapping
            .map(&users[0], MapMode::Create)
            .map_err(|e| anyhow!("native map: {e}"))?,
    );
    let component_first = session
        .map_user(&wit_users[0])?
        .map_err(|e| anyhow!("component map: {}", describe_error(&e)))?;
    let (a, b): (Value, Value) = (
        serde_json::from_str(&native_first)?,
        serde_json::from_str(&component_first)?,
    );
    if a != b {
        bail!("native and component mappings differ:\n{native_first}\n{component_first}");
    }

    let map_native = median_ns_per_op(n, || {
        for u in &users {
            let json = text::json(
                &policy
                    .mapping
                    .map(black_box(u), MapMode::Create)
                    .map_err(|e| anyhow!("native map: {e}"))?,
            );
            black_box(json);
        }
        Ok(())
    })?;
    let map_component = median_ns_per_op(n, || {
        for u in &wit_users {
            let json = session
                .map_user(black_box(u))?
                .map_err(|e| anyhow!("component map: {}", describe_error(&e)))?;
            black_box(json);
        }
        Ok(())
    })?;

    // A mix of events and link states, so every branch of the decision is taken.
    let cases: Vec<(UserEvent, bool)> = (0..n)
        .map(|i| {
            (
                EVENTS[i % EVENTS.len()],
                (i / EVENTS.len()).is_multiple_of(2),
            )
        })
        .collect();
    let plans = plan_figures(&mut session, &policy, &users, &wit_users, &cases)?;
    let mut scoped_session = open_session(runtime, ROLE_SCOPE_POLICY)?;
    let scoped_policy =
        Policy::parse(ROLE_SCOPE_POLICY).map_err(|e| anyhow!("role scope policy: {e}"))?;
    let scoped_plans = plan_figures(
        &mut scoped_session,
        &scoped_policy,
        &users,
        &wit_users,
        &cases,
    )?;

    let crossing = boundary::crossing_cost(&mut session, &cases)?;

    Ok(PureWork {
        rows: vec![
            PureRow {
                name: MAP_ROW,
                native_ns: map_native,
                component_ns: map_component,
            },
            PureRow {
                name: PLAN_ROW,
                native_ns: plans.native_ns,
                component_ns: plans.cut_ns,
            },
            PureRow {
                name: "plan, every field passed",
                native_ns: plans.native_ns,
                component_ns: plans.every_field_ns,
            },
            PureRow {
                name: SCOPED_PLAN_ROW,
                native_ns: scoped_plans.native_ns,
                component_ns: scoped_plans.cut_ns,
            },
            PureRow {
                name: "  every field passed",
                native_ns: scoped_plans.native_ns,
                component_ns: scoped_plans.every_field_ns,
            },
            PureRow {
                name: BARE_PLAN_ROW,
                native_ns: plans.native_ns,
                component_ns: crossing.plan_bare_ns,
            },
        ],
        plan_wide_ns: crossing.plan_wide_ns,
        per_item_ns: crossing.per_item_ns,
    })
}

/// One policy's `plan` figures, in ns per call.
struct PlanFigures {
    /// The core's `decide` with the policy's scope, natively.
    native_ns: f64,
    /// `Session::plan`: only the scope's fields cross.
    cut_ns: f64,
    /// `Session::plan_with_every_field`.
    every_field_ns: f64,
}

fn plan_figures(
    session: &mut Session,
    policy: &Policy,
    users: &[CmsUser],
    wit_users: &[wit::CmsUser],
    cases: &[(UserEvent, bool)],
) -> Result<PlanFigures> {
    let n = users.len();
    let native_ns = median_ns_per_op(n, || {
        for (u, &(event, linked)) in users.iter().zip(cases) {
            let u = black_box(u);
            let situation = Situation {
                event,
                linked,
                active: u.active,
                in_scope: policy.mapping.in_scope(u),
            };
            black_box(decide(
                black_box(situation),
                policy.operations,
                policy.deprovision,
            ));
        }
        Ok(())
    })?;
    // The same plans from both paths first: the cut user must not change one.
    for (u, &(event, linked)) in wit_users.iter().zip(cases).take(64) {
        let cut = session.plan(u, to_wit_event(event), linked)?;
        let whole = session.plan_with_every_field(u, to_wit_event(event), linked)?;
        if (cut.action, &cut.reason) != (whole.action, &whole.reason) {
            bail!(
                "plan differs when only the scope's fields are passed, for user {}",
                u.id
            );
        }
    }
    // What a host does: only the fields the scope reads cross (`scope-fields`).
    let cut_ns = median_ns_per_op(n, || {
        for (u, &(event, linked)) in wit_users.iter().zip(cases) {
            black_box(session.plan(black_box(u), to_wit_event(event), linked)?);
        }
        Ok(())
    })?;
    // What hosts did before: every field crosses.
    let every_field_ns = median_ns_per_op(n, || {
        for (u, &(event, linked)) in wit_users.iter().zip(cases) {
            black_box(session.plan_with_every_field(black_box(u), to_wit_event(event), linked)?);
        }
        Ok(())
    })?;
    Ok(PlanFigures {
        native_ns,
        cut_ns,
        every_field_ns,
    })
}
