//! OAuth 2.0 client credentials in the host's configuration: `[scim] auth = "oauth2"` with
//! `token_url`, `client_id`, `client_secret` or `client_secret_env`, and optional `scope`,
//! `audience`, `resource`, `client_auth`.
//!
//! The frozen WIT 0.1.0 has no `oauth2` case in `auth`, so the host hands the component
//! what it has: the client's id and secret as `basic` credentials, and the rest as the
//! policy's `oauth2` section. With that section the component sends the credentials only to
//! the token endpoint, and the SCIM server sees `Authorization: Bearer <access token>`. The
//! `http-client` import allows the token URL's origin beside the base URL's
//! ([`crate::http::OriginPolicy::for_connector`]).

use anyhow::{Context, bail};
use serde_json::{Map, Value};

use crate::config::ScimSection;
use crate::runtime::Credentials;

/// The token endpoint the policy JSON names (`oauth2.token_url`), if any.
pub fn token_url(policy_json: &str) -> Option<String> {
    let policy: Value = serde_json::from_str(policy_json).ok()?;
    policy
        .get("oauth2")?
        .get("token_url")?
        .as_str()
        .map(|s| s.trim().to_string())
}

/// Whether `[scim]` asks for OAuth 2.0 client credentials (`auth = "oauth2"`); an `auth`
/// other than `oauth2`, `bearer`, `basic` or `none` is an error naming them.
pub fn wanted(scim: &ScimSection) -> anyhow::Result<bool> {
    match scim.auth.as_deref().map(str::trim) {
        Some("oauth2") => Ok(true),
        None | Some("bearer" | "basic" | "none") => {
            let oauth2_keys = [
                ("token_url", scim.token_url.is_some()),
                ("client_id", scim.client_id.is_some()),
                ("client_secret", scim.client_secret.is_some()),
                ("client_secret_env", scim.client_secret_env.is_some()),
                ("scope", scim.scope.is_some()),
                ("audience", scim.audience.is_some()),
                ("resource", scim.resource.is_some()),
                ("client_auth", scim.client_auth.is_some()),
            ];
            if let Some((key, _)) = oauth2_keys.iter().find(|(_, set)| *set) {
                bail!("[scim] `{key}` is an OAuth 2.0 setting: set `auth = \"oauth2\"` too");
            }
            Ok(false)
        }
        Some(other) => bail!(
            "[scim] auth = {other:?} is not known (use \"oauth2\", \"bearer\", \"basic\" or \"none\")"
        ),
    }
}

/// The credentials and the policy JSON for `auth = "oauth2"`: the client's id and secret as
/// basic credentials, and `policy_json` with its `oauth2` section added. `secret_from_env`
/// reads `client_secret_env`.
pub fn settings(
    scim: &ScimSection,
    policy_json: &str,
    secret_from_env: impl Fn(&str) -> anyhow::Result<String>,
) -> anyhow::Result<(Credentials, String)> {
    if scim.token.is_some()
        || scim.token_env.is_some()
        || scim.username.is_some()
        || scim.password.is_some()
        || scim.password_env.is_some()
    {
        bail!(
            "[scim] auth = \"oauth2\" takes `client_id` and `client_secret` or \
             `client_secret_env`, not `token`, `token_env`, `username` or `password`"
        );
    }
    let token_url = scim
        .token_url
        .clone()
        .context("[scim] auth = \"oauth2\" needs `token_url`, the token endpoint")?;
    let client_id = scim
        .client_id
        .clone()
        .filter(|id| !id.is_empty())
        .context("[scim] auth = \"oauth2\" needs `client_id`")?;
    let client_secret = match (&scim.client_secret_env, &scim.client_secret) {
        (Some(var), _) => secret_from_env(var)?,
        (None, Some(secret)) if !secret.is_empty() => secret.clone(),
        _ => bail!("[scim] auth = \"oauth2\" needs `client_secret` or `client_secret_env`"),
    };
    let mut policy: Map<String, Value> = if policy_json.trim().is_empty() {
        Map::new()
    } else {
        serde_json::from_str(policy_json).context("the policy is not a JSON object")?
    };
    if policy.contains_key("oauth2") {
        bail!(
            "an [oauth2] table and [scim] auth = \"oauth2\" both set OAuth 2.0: keep the \
             settings in [scim]"
        );
    }
    let mut section = Map::new();
    section.insert("token_url".into(), Value::String(token_url));
    for (key, value) in [
        ("scope", &scim.scope),
        ("audience", &scim.audience),
        ("resource", &scim.resource),
        ("client_auth", &scim.client_auth),
    ] {
        if let Some(v) = value {
            section.insert(key.into(), Value::String(v.clone()));
        }
    }
    policy.insert("oauth2".into(), Value::Object(section));
    Ok((
        Credentials::Basic {
            username: client_id,
            password: client_secret,
        },
        Value::Object(policy).to_string(),
    ))
}
