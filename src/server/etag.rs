//! ETags (RFC 7644 §3.14, RFC 9110 §8.8.3 and §13.1): a resource's `meta.version` is its
//! entity tag; `If-Match` guards writes and `If-None-Match` saves a GET.
//!
//! Comparison is weak (`W/"3"` matches `"3"`), as RFC 9110 prescribes for `If-None-Match`
//! and as SCIM clients expect for `If-Match`, since SCIM versions are weak tags.

/// The entity tag for a directory version: kept when it is already a tag, otherwise quoted
/// as a weak one.
pub(crate) fn etag(version: &str) -> String {
    let v = version.trim();
    if v.starts_with('"') || v.starts_with("W/\"") {
        v.to_string()
    } else {
        format!("W/\"{}\"", v.replace('"', ""))
    }
}

/// The opaque part of a tag: without `W/` and the quotes.
fn opaque(tag: &str) -> &str {
    let t = tag.trim();
    let t = t.strip_prefix("W/").unwrap_or(t);
    t.strip_prefix('"')
        .and_then(|t| t.strip_suffix('"'))
        .unwrap_or(t)
}

/// Splits a header's list of tags at commas outside quotes.
fn tags(header: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut quoted = false;
    let mut start = 0;
    for (i, c) in header.char_indices() {
        match c {
            '"' => quoted = !quoted,
            ',' if !quoted => {
                out.push(&header[start..i]); // ok: both ends sit next to an ASCII ','
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&header[start..]);
    out.into_iter()
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .collect()
}

/// True when a precondition header (`If-Match` or `If-None-Match`) names the version:
/// `*` names any.
pub(crate) fn matches(header: &str, version: &str) -> bool {
    let current = opaque(version);
    tags(header)
        .into_iter()
        .any(|t| t == "*" || opaque(t) == current)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_and_matching() {
        assert_eq!(etag("W/\"3\""), "W/\"3\"");
        assert_eq!(etag("\"abc\""), "\"abc\"");
        assert_eq!(etag("7"), "W/\"7\"");
        assert!(matches("W/\"3\"", "W/\"3\""));
        assert!(matches("\"3\"", "W/\"3\""));
        assert!(matches("*", "W/\"3\""));
        assert!(matches("W/\"1\", W/\"3\"", "W/\"3\""));
        assert!(matches("\"a,b\"", "\"a,b\""));
        assert!(!matches("W/\"31\"", "W/\"3\""));
        assert!(!matches("", "W/\"3\""));
        assert!(matches("W/\"7\"", "7"));
    }
}
