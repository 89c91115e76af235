//! Bearer-token authentication (RFC 6750 §2.1) for every endpoint but discovery.

use crate::server::error::ScimError;
use crate::server::http::ServerRequest;

/// Compares two byte strings in time that depends only on their lengths: a length
/// mismatch fails at once (the token's length is not a secret worth hiding), and equal
/// lengths fold every byte before deciding.
pub(crate) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    // Keeps the optimiser from turning the fold into an early-exit comparison.
    std::hint::black_box(diff) == 0
}

/// Checks `Authorization: Bearer <token>` against the configured token. An empty
/// configured token admits no one.
pub(crate) fn authenticate(request: &ServerRequest, token: &str) -> Result<(), ScimError> {
    let presented = request.header("Authorization").and_then(|h| {
        let (scheme, rest) = h.trim().split_once(' ')?;
        scheme.eq_ignore_ascii_case("Bearer").then(|| rest.trim())
    });
    let ok = match presented {
        Some(p) => !token.is_empty() & constant_time_eq(p.as_bytes(), token.as_bytes()),
        None => false,
    };
    if ok {
        return Ok(());
    }
    let detail = if presented.is_some() {
        "the bearer token is not valid"
    } else {
        "authentication required: send Authorization: Bearer <token>"
    };
    Err(ScimError::new(401, detail).with_header("WWW-Authenticate", "Bearer realm=\"scim\""))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(auth: Option<&str>) -> ServerRequest {
        ServerRequest {
            headers: auth
                .map(|a| vec![("authorization".to_string(), a.to_string())])
                .unwrap_or_default(),
            ..ServerRequest::default()
        }
    }

    #[test]
    fn tokens() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"abcd"));
        assert!(constant_time_eq(b"", b""));
        assert!(authenticate(&req(Some("Bearer s3cret")), "s3cret").is_ok());
        assert!(authenticate(&req(Some("bearer  s3cret ")), "s3cret").is_ok());
        assert!(authenticate(&req(Some("Bearer s3cre")), "s3cret").is_err());
        assert!(authenticate(&req(Some("Basic s3cret")), "s3cret").is_err());
        assert!(authenticate(&req(Some("Bearer")), "s3cret").is_err());
        assert!(authenticate(&req(None), "s3cret").is_err());
        assert!(authenticate(&req(Some("Bearer ")), "").is_err());
        let e = authenticate(&req(None), "t").err();
        assert_eq!(e.as_ref().map(|e| e.status), Some(401));
        assert_eq!(
            e.map(|e| e.headers),
            Some(vec![(
                "WWW-Authenticate".to_string(),
                "Bearer realm=\"scim\"".to_string()
            )])
        );
    }
}
