//! Percent-encoding for URL path segments and query values (RFC 3986 §2.1).

/// Percent-encodes a path segment or query value: everything but RFC 3986 unreserved
/// characters is encoded, so ids with spaces, slashes or `?` stay one segment.
pub fn encode_component(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_reserved_characters() {
        assert_eq!(encode_component("abc-1.2_~"), "abc-1.2_~");
        assert_eq!(encode_component("john smith"), "john%20smith");
        assert_eq!(encode_component("a/b?c#d%"), "a%2Fb%3Fc%23d%25");
        assert_eq!(encode_component("é"), "%C3%A9");
        assert_eq!(
            encode_component("userName eq \"a\\b\""),
            "userName%20eq%20%22a%5Cb%22"
        );
    }
}
