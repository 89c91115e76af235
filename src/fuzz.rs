//! Entry points for the coverage-guided fuzz targets in `fuzz/` (cargo-fuzz). Each one runs
//! a parser or handler the way untrusted input reaches it and only asks that it returns;
//! a panic is the bug. They reach the few crate-private pieces (the regex engine, the
//! CMS date reader, the ListResponse reader) that have no public door of their own.

use serde_json::Value;

use crate::client::connector::read_list;
use crate::mapping::date;
use crate::mapping::regex::{Regex, Replacement};
use crate::ports::HttpResponse;

/// Compiles `pattern`; when it compiles, searches `text` and replaces every match with
/// `replacement`. Returns whether a match was found, if the search finished in budget.
pub fn regex(pattern: &str, text: &str, replacement: &str) -> Option<bool> {
    let regex = Regex::new(pattern).ok()?;
    let replacement = Replacement::parse(replacement);
    let _ = replacement.max_group();
    let replaced = regex.replace_all(text, &replacement).ok()?;
    Some(replaced != text)
}

/// Reads a CMS date the way the `date` transform does, and formats epoch seconds.
pub fn cms_date(text: &str, seconds: f64) -> (Option<String>, Option<String>) {
    (date::from_text(text), date::from_epoch(seconds))
}

/// Reads a list answer the way the client role does (`Resources`, `totalResults`).
pub fn list_response(response: &HttpResponse) -> Option<(usize, u64)> {
    read_list(response)
        .ok()
        .map(|(resources, total)| (resources.len(), total))
}

/// A value the fuzz targets can build a resource from when the input is not JSON.
pub fn sample_user() -> Value {
    serde_json::json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
        "id": "2819c223-7f76-453a-919d-413861904646",
        "userName": "bjensen@example.com",
        "name": {"givenName": "Barbara", "familyName": "Jensen"},
        "emails": [
            {"value": "bjensen@example.com", "type": "work", "primary": true},
            {"value": "babs@jensen.org", "type": "home"}
        ],
        "members": [{"value": "1", "display": "a"}],
        "active": true,
        "meta": {"resourceType": "User", "lastModified": "2011-05-13T04:42:34Z"},
        "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {
            "employeeNumber": "701984",
            "manager": {"value": "26118915-6090-4610-87e4-49d8ca9f808d"}
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_points_answer_for_good_and_hostile_input() {
        assert_eq!(regex("^B-(\\d+)$", "B-0042", "$1"), Some(true));
        assert_eq!(regex(&"(".repeat(10_000), "", ""), None);
        assert_eq!(
            cms_date("2024-02-29", 0.0),
            (
                Some("2024-02-29T00:00:00Z".into()),
                Some("1970-01-01T00:00:00Z".into())
            )
        );
        assert_eq!(cms_date("9999999999999-01-01", f64::MAX), (None, None));
        let list = HttpResponse {
            status: 200,
            headers: vec![],
            body: br#"{"totalResults": "2", "Resources": [{"id": "1"}]}"#.to_vec(),
        };
        assert_eq!(list_response(&list), Some((1, 2)));
        assert_eq!(
            list_response(&HttpResponse {
                status: 200,
                headers: vec![],
                body: b"<html>".to_vec(),
            }),
            None
        );
        assert!(sample_user().get("id").is_some());
    }
}
