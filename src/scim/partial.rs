//! Reading only some attributes of a resource's JSON: a caller that needs two attributes of
//! many resources (a user's groups need each group's `displayName`, not its members) skips
//! the rest of each text instead of building it as values and dropping them again.

use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde_json::{Map, Value};

/// The JSON object in `text` with only its top-level members named in `keep` (compared
/// ASCII case-insensitively, as SCIM attribute names are); the others are checked as JSON
/// and skipped. Text that is not a JSON object is an error, as it is for a whole parse.
pub fn object_keeping(text: &str, keep: &[&str]) -> Result<Value, serde_json::Error> {
    let mut de = serde_json::Deserializer::from_str(text);
    let object = Keeping(keep).deserialize(&mut de)?;
    de.end()?;
    Ok(Value::Object(object))
}

/// The seed and visitor of [`object_keeping`].
struct Keeping<'k>(&'k [&'k str]);

impl<'de> DeserializeSeed<'de> for Keeping<'_> {
    type Value = Map<String, Value>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for Keeping<'_> {
    type Value = Map<String, Value>;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut kept = Map::new();
        while let Some(name) = map.next_key::<String>()? {
            if self.0.iter().any(|k| k.eq_ignore_ascii_case(&name)) {
                let value = map.next_value::<Value>()?;
                kept.insert(name, value);
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(kept)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn only_the_named_members_are_kept_in_any_case() {
        let text = r#"{"schemas":["urn:ietf:params:scim:schemas:core:2.0:Group"],
            "DisplayName":"Staff \"A\" \u00e9","members":[{"value":"1"},{"value":"2","$ref":"x"}],
            "meta":{"version":"W/\"3\""},"externalId":null}"#;
        assert_eq!(
            object_keeping(text, &["displayName", "externalId"]).unwrap(),
            json!({"DisplayName": "Staff \"A\" é", "externalId": null})
        );
        assert_eq!(object_keeping(text, &[]).unwrap(), json!({}));
        let whole: Value = serde_json::from_str(text).unwrap();
        let every = ["schemas", "displayName", "members", "meta", "externalId"];
        assert_eq!(object_keeping(text, &every).unwrap(), whole);
    }

    #[test]
    fn what_a_whole_parse_refuses_is_refused() {
        for bad in [
            "",
            "[]",
            "\"text\"",
            "{\"a\": }",
            "{\"a\": 1,}",
            "{\"skipped\": [1, 2} }",
            "{\"a\": 1} trailing",
            "{\"a\": \"\\x\"}",
        ] {
            assert!(object_keeping(bad, &["a"]).is_err(), "{bad}");
        }
    }
}
