//! Reading the scalars a SCIM peer sends, leniently: real servers and identity providers
//! send booleans as `"True"` strings and numbers as numeric strings. Both roles use it:
//! the client reads servers' answers with it, the server reads identity providers'
//! requests.

use serde_json::Value;

/// Reads a SCIM boolean leniently: real booleans, and the `"True"`/`"False"` strings some
/// servers (Entra ID among them) send.
pub fn lenient_bool(value: &Value) -> Option<bool> {
    match value {
        Value::Bool(b) => Some(*b),
        Value::String(s) if s.eq_ignore_ascii_case("true") => Some(true),
        Value::String(s) if s.eq_ignore_ascii_case("false") => Some(false),
        _ => None,
    }
}

/// Reads a non-negative integer that a server may send as a number or a numeric string.
pub fn lenient_u64(value: &Value) -> Option<u64> {
    match value {
        Value::Number(n) => n
            .as_u64()
            .or_else(|| n.as_f64().filter(|f| *f >= 0.0).map(|f| f as u64)),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lenient_values() {
        assert_eq!(lenient_bool(&Value::from("False")), Some(false));
        assert_eq!(lenient_bool(&Value::from("TRUE")), Some(true));
        assert_eq!(lenient_bool(&Value::from(1)), None);
        assert_eq!(lenient_u64(&Value::from("1000")), Some(1000));
        assert_eq!(lenient_u64(&Value::from(-1)), None);
    }
}
