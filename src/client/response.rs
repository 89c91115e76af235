//! The client role reading a SCIM server's answers: success bodies, SCIM error bodies,
//! non-SCIM bodies, and the retry class of every failure (RFC 7644 §3.12; RFC 9110 §10.2.3
//! for `Retry-After`).

use serde_json::Value;

use crate::error::{ProvisioningError, RetryClass, ScimError};
use crate::ports::HttpResponse;
use crate::scim::message::ERROR_SCHEMA;

/// The longest excerpt of a non-SCIM body that goes into an error message.
const EXCERPT_CHARS: usize = 120;

/// True for 2xx statuses.
pub fn is_success(status: u16) -> bool {
    (200..300).contains(&status)
}

/// Whether the response says its body is JSON: `application/scim+json`, `application/json`,
/// or any other `+json` type. Parameters such as `charset` are ignored.
pub fn is_json_content_type(response: &HttpResponse) -> bool {
    response.header("content-type").is_some_and(|ct| {
        let essence = ct.split(';').next().unwrap_or_default().trim();
        essence.eq_ignore_ascii_case("application/scim+json")
            || essence.eq_ignore_ascii_case("application/json")
            || essence.to_ascii_lowercase().ends_with("+json")
    })
}

/// Parses the body of a successful answer as a JSON object. Servers that omit the content
/// type are tolerated as long as the body is JSON; an empty body is `None`.
pub fn json_body(response: &HttpResponse) -> Result<Option<Value>, ProvisioningError> {
    if response.body.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    match serde_json::from_slice::<Value>(&response.body) {
        Ok(v @ Value::Object(_)) => Ok(Some(v)),
        Ok(_) => Err(unexpected(response, "the body is JSON but not an object")),
        // JSON that stops mid-value was cut off in transit (a close-delimited answer whose
        // connection dropped): the request may well have succeeded, and a retry, which
        // matches before it writes, can tell.
        Err(e) if e.is_eof() => Err(ProvisioningError::UnexpectedResponse {
            status: response.status,
            reason: format!(
                "the body ends early (cut off in transit?): {}",
                excerpt(&response.body)
            ),
            retry: RetryClass::Backoff,
        }),
        Err(_) => Err(unexpected(response, "the body is not JSON")),
    }
}

/// Like [`json_body`], but an empty body is an error too.
pub fn require_json_body(response: &HttpResponse) -> Result<Value, ProvisioningError> {
    json_body(response)?.ok_or_else(|| unexpected(response, "the body is empty"))
}

/// Turns an error answer (any status ≥ 300) into the structured error: a SCIM error when the
/// body is one, otherwise a clear message with the status and a short, safe excerpt.
///
/// `now_unix` is the current time, used to turn an HTTP-date `Retry-After` into seconds.
pub fn error_from_response(response: &HttpResponse, now_unix: u64) -> ProvisioningError {
    let retry = retry_class(response, now_unix);
    let parsed = serde_json::from_slice::<Value>(&response.body).ok();
    if let Some(body) = parsed.as_ref().filter(|b| looks_like_scim_error(b)) {
        return ProvisioningError::Scim(ScimError {
            status: response.status,
            scim_type: body
                .get("scimType")
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
                .map(safe_text),
            detail: body
                .get("detail")
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
                .map(safe_text),
            retry,
        });
    }
    if response.body.iter().all(u8::is_ascii_whitespace) {
        // A bare status is still a well-formed HTTP error; keep it structured.
        return ProvisioningError::Scim(ScimError {
            status: response.status,
            scim_type: None,
            detail: None,
            retry,
        });
    }
    ProvisioningError::UnexpectedResponse {
        status: response.status,
        reason: format!("not a SCIM error body: {}", excerpt(&response.body)),
        retry,
    }
}

/// An `UnexpectedResponse` for a body that should have been SCIM JSON.
pub fn unexpected(response: &HttpResponse, what: &str) -> ProvisioningError {
    ProvisioningError::UnexpectedResponse {
        status: response.status,
        reason: format!("{what}: {}", excerpt(&response.body)),
        retry: if response.status >= 500 && response.status != 501 {
            RetryClass::Backoff
        } else {
            RetryClass::Permanent
        },
    }
}

/// A SCIM error body has the Error schema; some servers omit it but send `status` with
/// `detail` or `scimType`, which is unambiguous enough.
fn looks_like_scim_error(body: &Value) -> bool {
    let has_schema = body
        .get("schemas")
        .and_then(Value::as_array)
        .is_some_and(|s| s.iter().any(|u| u.as_str() == Some(ERROR_SCHEMA)));
    has_schema
        || (body.get("status").is_some()
            && (body.get("detail").is_some() || body.get("scimType").is_some()))
}

/// When a failed request may be retried: 429 and 503 honour `Retry-After`; other 5xx and 429
/// without it back off; everything else is permanent.
pub fn retry_class(response: &HttpResponse, now_unix: u64) -> RetryClass {
    let status = response.status;
    let after = response
        .header("retry-after")
        .and_then(|v| parse_retry_after(v, now_unix));
    match (status, after) {
        (429 | 503, Some(secs)) => RetryClass::AfterSeconds(secs),
        (429, None) => RetryClass::Backoff,
        // Not Implemented stays so however often it is asked.
        (501, _) => RetryClass::Permanent,
        (500..=599, _) => RetryClass::Backoff,
        _ => RetryClass::Permanent,
    }
}

/// Parses `Retry-After`: delay-seconds, or an IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`).
/// A date in the past means "now" (0 seconds).
pub fn parse_retry_after(value: &str, now_unix: u64) -> Option<u32> {
    let value = value.trim();
    // delay-seconds is `1*DIGIT`: no sign, which `parse` alone would take (`+5`).
    if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        // Only a count too long for `u64` fails here; it is as good as forever.
        let secs = value.parse::<u64>().unwrap_or(u64::MAX);
        return Some(u32::try_from(secs).unwrap_or(u32::MAX));
    }
    let at = parse_imf_fixdate(value)?;
    Some(u32::try_from(at.saturating_sub(now_unix)).unwrap_or(u32::MAX))
}

/// Parses an IMF-fixdate into seconds since the Unix epoch (RFC 9110 §5.6.7: two-digit day,
/// four-digit year). Anything else, an impossible day included, is not a date.
pub(crate) fn parse_imf_fixdate(s: &str) -> Option<u64> {
    // "Sun, 06 Nov 1994 08:49:37 GMT"
    let rest = s.split_once(", ")?.1;
    let parts: Vec<&str> = rest.split(' ').collect();
    let [day, month, year, time, zone] = parts.as_slice() else {
        return None;
    };
    if *zone != "GMT" {
        return None;
    }
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let month = i64::try_from(MONTHS.iter().position(|m| m == month)?).ok()? + 1;
    let day = fixed_digits(day, 2)?;
    let year = fixed_digits(year, 4)?;
    let [h, m, sec] = time.split(':').collect::<Vec<_>>()[..] else {
        return None;
    };
    let (h, m, sec) = (
        fixed_digits(h, 2)?,
        fixed_digits(m, 2)?,
        fixed_digits(sec, 2)?,
    );
    if day < 1 || day > days_in_month(year, month) || year < 1970 || h > 23 || m > 59 || sec > 60 {
        return None;
    }
    let days = crate::time::days_from_civil(year, month, day)?;
    let secs = days
        .checked_mul(86_400)?
        .checked_add(h * 3600 + m * 60 + sec)?;
    u64::try_from(secs).ok()
}

/// A field of exactly `len` ASCII digits.
fn fixed_digits(field: &str, len: usize) -> Option<i64> {
    if field.len() != len || !field.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    field.parse().ok()
}

fn days_in_month(year: i64, month: i64) -> i64 {
    let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
    match month {
        2 if leap => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// A short, printable excerpt of a body for error messages: control characters are dropped
/// so an HTML page or binary junk can't garble a log line.
pub fn excerpt(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let cleaned: String = text
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .chars()
        .filter(|c| !c.is_control())
        .collect();
    if cleaned.is_empty() {
        return "(empty body)".into();
    }
    let mut out: String = cleaned.chars().take(EXCERPT_CHARS).collect();
    if cleaned.chars().count() > EXCERPT_CHARS {
        out.push('…');
    }
    format!("\"{out}\"")
}

/// Server-supplied text bounded in length and stripped of control characters.
fn safe_text(s: &str) -> String {
    s.chars().filter(|c| !c.is_control()).take(500).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resp(status: u16, ct: &str, body: &str) -> HttpResponse {
        HttpResponse {
            status,
            headers: vec![("Content-Type".into(), ct.into())],
            body: body.as_bytes().to_vec(),
        }
    }

    #[test]
    fn parses_scim_error_with_string_or_number_status() {
        for status_field in ["\"409\"", "409"] {
            let body = format!(
                r#"{{"schemas":["{ERROR_SCHEMA}"],"status":{status_field},"scimType":"uniqueness","detail":"userName taken"}}"#
            );
            let err = error_from_response(&resp(409, "application/scim+json", &body), 0);
            assert_eq!(
                err,
                ProvisioningError::Scim(ScimError {
                    status: 409,
                    scim_type: Some("uniqueness".into()),
                    detail: Some("userName taken".into()),
                    retry: RetryClass::Permanent,
                })
            );
        }
    }

    #[test]
    fn html_and_plain_text_errors_name_status_and_excerpt() {
        let html = "<html>\n<body><h1>502 Bad Gateway</h1></body></html>";
        let err = error_from_response(&resp(502, "text/html", html), 0);
        match err {
            ProvisioningError::UnexpectedResponse {
                status,
                reason,
                retry,
            } => {
                assert_eq!(status, 502);
                assert!(reason.contains("502 Bad Gateway"), "{reason}");
                assert_eq!(retry, RetryClass::Backoff);
            }
            other => panic!("{other:?}"),
        }
        let err = error_from_response(&resp(401, "text/plain", "Unauthorized"), 0);
        assert!(err.to_string().contains("401"));
        assert!(err.to_string().contains("Unauthorized"));
        assert_eq!(err.retry_class(), RetryClass::Permanent);
    }

    /// Found by fault injection: a success answer whose JSON body was cut off in transit
    /// (close-delimited, so the client cannot tell) was permanent, and the host parked an
    /// event a retry would have delivered.
    #[test]
    fn a_cut_off_json_body_is_retryable_and_a_non_json_body_is_not() {
        let cut = r#"{"schemas": ["urn:ietf:params:scim:api:messages:2.0:ListResponse"], ""#;
        let err = json_body(&resp(200, "application/scim+json", cut)).unwrap_err();
        assert_eq!(err.retry_class(), RetryClass::Backoff, "{err:?}");
        assert!(err.to_string().contains("ends early"), "{err}");
        let html = "<!doctype html><title>Welcome</title>";
        let err = json_body(&resp(200, "text/html", html)).unwrap_err();
        assert_eq!(err.retry_class(), RetryClass::Permanent, "{err:?}");
        let err = json_body(&resp(200, "application/json", "{} trailing")).unwrap_err();
        assert_eq!(err.retry_class(), RetryClass::Permanent, "{err:?}");
    }

    #[test]
    fn long_bodies_are_cut() {
        let long = "x".repeat(10_000);
        let e = excerpt(long.as_bytes());
        assert!(e.chars().count() < EXCERPT_CHARS + 5);
        assert_eq!(excerpt(b"a\x00b\x1b[31m"), "\"ab[31m\"");
        assert_eq!(excerpt(b""), "(empty body)");
        assert_eq!(excerpt(&[0xff, 0xfe]), "\"\u{fffd}\u{fffd}\"");
    }

    #[test]
    fn retry_classes() {
        let mut r = resp(429, "application/json", "");
        r.headers.push(("Retry-After".into(), "120".into()));
        assert_eq!(retry_class(&r, 0), RetryClass::AfterSeconds(120));
        let mut r = resp(503, "application/json", "");
        r.headers
            .push(("retry-after".into(), "Sun, 06 Nov 1994 08:49:37 GMT".into()));
        assert_eq!(
            retry_class(&r, 784_111_777 - 30),
            RetryClass::AfterSeconds(30)
        );
        assert_eq!(
            retry_class(&r, 784_111_777 + 99),
            RetryClass::AfterSeconds(0)
        );
        assert_eq!(
            retry_class(&resp(429, "", ""), 0),
            RetryClass::Backoff,
            "429 without Retry-After backs off"
        );
        assert_eq!(retry_class(&resp(500, "", ""), 0), RetryClass::Backoff);
        assert_eq!(retry_class(&resp(503, "", ""), 0), RetryClass::Backoff);
        for s in [400, 401, 403, 404, 409, 412] {
            assert_eq!(retry_class(&resp(s, "", ""), 0), RetryClass::Permanent);
        }
    }

    #[test]
    fn retry_after_rejects_junk() {
        for v in [
            "soon",
            "-1",
            "Sun, 06 Nov 1994 08:49:37 PST",
            "Sun, 99 Nov 1994 08:49:37 GMT",
        ] {
            assert_eq!(parse_retry_after(v, 0), None, "{v}");
        }
        assert_eq!(parse_retry_after("99999999999", 0), Some(u32::MAX));
        assert_eq!(parse_imf_fixdate("Thu, 01 Jan 1970 00:00:00 GMT"), Some(0));
    }

    #[test]
    fn retry_after_with_an_absurd_date_is_not_a_date() {
        for v in [
            "Sun, 06 Nov 99999999999999999 08:49:37 GMT",
            "Sun, 06 Nov 9223372036854775807 08:49:37 GMT",
            "Sun, 06 Nov 18446744073709551615 08:49:37 GMT",
            "Sun, 06 Nov 25252734927766554 08:49:37 GMT",
            "Sun, 6 Nov 1994 08:49:37 GMT",
            "Sun, 31 Feb 1994 08:49:37 GMT",
            "Sun, 06 Nov 1994 8:49:37 GMT",
            "Sun, 06 Nov 1994 08:49:+7 GMT",
            "+5",
        ] {
            assert_eq!(parse_retry_after(v, 0), None, "{v}");
        }
        assert_eq!(
            parse_retry_after("999999999999999999999999", 0),
            Some(u32::MAX)
        );
        assert_eq!(
            parse_retry_after("Fri, 31 Dec 9999 23:59:59 GMT", u64::MAX),
            Some(0)
        );
    }

    #[test]
    fn content_types() {
        assert!(is_json_content_type(&resp(
            200,
            "application/scim+json; charset=utf-8",
            ""
        )));
        assert!(is_json_content_type(&resp(200, "Application/JSON", "")));
        assert!(!is_json_content_type(&resp(200, "text/html", "")));
    }

    #[test]
    fn json_bodies() {
        assert_eq!(json_body(&resp(204, "", "")).unwrap(), None);
        assert!(
            json_body(&resp(200, "", "{\"id\":\"1\"}"))
                .unwrap()
                .is_some()
        );
        assert!(matches!(
            json_body(&resp(200, "text/html", "<html>")),
            Err(ProvisioningError::UnexpectedResponse { .. })
        ));
        assert!(json_body(&resp(200, "", "[1]")).is_err());
        assert!(require_json_body(&resp(200, "", " ")).is_err());
    }
}
