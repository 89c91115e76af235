//! Percent-encoding and decoding for URL path segments and query values (RFC 3986 §2.1).

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

/// Decodes `%XX` escapes; with `plus_is_space`, also `+` (form encoding, used in query
/// strings). A malformed escape is kept as written, and bytes that are not UTF-8 become
/// U+FFFD, so any input decodes.
pub fn percent_decode(s: &str, plus_is_space: bool) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        // ok: i < bytes.len() by the loop condition
        match bytes[i] {
            b'%' => {
                // Exactly two hex digits: `from_str_radix` alone would also take a sign
                // (`%+A`).
                let hex = match bytes.get(i + 1..i + 3) {
                    Some(&[hi, lo]) => hex_value(hi)
                        .zip(hex_value(lo))
                        .map(|(hi, lo)| (hi << 4) | lo),
                    _ => None,
                };
                match hex {
                    Some(b) => {
                        out.push(b);
                        i += 3;
                    }
                    None => {
                        out.push(b'%');
                        i += 1;
                    }
                }
            }
            b'+' if plus_is_space => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Whether a path segment, once percent-decoded, is empty or a dot-segment (`.`, `..`,
/// `%2e%2E`, …). Such a segment names no resource: URL parsers remove dot-segments
/// (RFC 3986 §5.2.4, WHATWG URL), so `DELETE /scim/v2/Users/..` would be sent as
/// `DELETE /scim/v2/`. An id must never become one.
pub fn is_empty_or_dot_segment(segment: &str) -> bool {
    matches!(percent_decode(segment, false).as_str(), "" | "." | "..")
}

/// The value of one ASCII hex digit.
fn hex_value(b: u8) -> Option<u8> {
    char::from(b)
        .to_digit(16)
        .and_then(|d| u8::try_from(d).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dot_segments_and_empty_ids_are_recognised() {
        for bad in ["", ".", "..", "%2e", "%2E%2e", ".%2e", "%2e."] {
            assert!(is_empty_or_dot_segment(bad), "{bad:?}");
        }
        for fine in [
            "...",
            "a..",
            "..a",
            "%2e%2e%2e",
            "2819c223",
            " ",
            "%252e%252e",
        ] {
            assert!(!is_empty_or_dot_segment(fine), "{fine:?}");
        }
    }

    #[test]
    fn percent_decode_takes_exactly_two_hex_digits() {
        assert_eq!(percent_decode("%41%6a%2F", false), "Aj/");
        for kept in ["%+A", "%-1", "%+0", "%4", "%", "%zz", "%é"] {
            assert_eq!(percent_decode(kept, false), kept, "{kept}");
        }
        // The `%` stays literal and the form-encoded `+` after it is still a space.
        assert_eq!(percent_decode("a+%+A", true), "a % A");
    }

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
