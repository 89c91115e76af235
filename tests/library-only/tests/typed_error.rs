//! The library's typed error at its edge, against the built component, with host-example
//! built without default features: the component's refusal, a guest deadline and a
//! transport failure each arrive as their named case of `host_example::Error`.

use std::time::Duration;

use host_example::types::ProvisioningError;
use host_example::{ConnectorSettings, Credentials, Error, Flatten, GuestLimits};
use scim_provisioner_tests::component::runtime;

fn settings(policy_json: &str) -> ConnectorSettings {
    ConnectorSettings {
        // Port 9 (discard) on loopback: nothing answers there.
        base_url: "http://127.0.0.1:9/scim/v2".into(),
        credentials: Credentials::Bearer("offline-token".into()),
        timeout_ms: 1_000,
        policy_json: policy_json.into(),
    }
}

#[test]
fn a_refused_configuration_is_the_provisioning_case() {
    match runtime().connect(&settings(r#"{"no_such_setting": true}"#)) {
        Err(Error::Provisioning(ProvisioningError::InvalidConfig(m))) => {
            assert!(m.contains("no_such_setting"), "{m}")
        }
        Err(other) => panic!("expected invalid-config, got {other:?}"),
        Ok(_) => panic!("an unknown policy setting must be refused"),
    }
}

#[test]
fn a_deadline_trap_is_the_deadline_case() {
    let runtime = runtime().clone().with_limits(GuestLimits {
        call_deadline: Duration::ZERO,
        ..GuestLimits::default()
    });
    match runtime.connect(&settings("")) {
        Err(Error::Deadline(d)) => assert_eq!(d.deadline, Duration::ZERO),
        Err(other) => panic!("expected a deadline, got {other:?}"),
        Ok(_) => panic!("a zero deadline must stop the guest"),
    }
}

#[test]
fn a_failed_request_is_the_provisioning_case() {
    let mut session = runtime()
        .connect(&settings(""))
        .expect("a valid configuration opens");
    match session.test_connection().flatten_err() {
        Err(Error::Provisioning(ProvisioningError::Transport(failure))) => {
            let text = Error::Provisioning(ProvisioningError::Transport(failure)).to_string();
            assert!(text.contains("connect"), "{text}");
        }
        Err(other) => panic!("expected a transport failure, got {other:?}"),
        Ok(caps) => panic!("nothing listens on port 9, yet: {caps:?}"),
    }
}
