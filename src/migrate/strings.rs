//! Redis strings are bytes; `source` (jsonb) and the typed columns (text) hold text without
//! NUL. A string that is UTF-8 without NUL is kept as a JSON string, any other as
//! `{"$base64": "..."}`, so every value is kept exactly, and a column that needs text from
//! such bytes says why it cannot have it.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use serde::ser::{Serialize, SerializeMap, Serializer};
use serde_json::Value;

/// A key name as `source_key` (text) holds it, and whether it can: a name that is not text is
/// given escaped, for the reject table and messages.
pub(crate) fn key_name(bytes: Vec<u8>) -> (String, bool) {
    match Str::from(bytes) {
        Str::Text(key) => (key, true),
        Str::Bytes(b) => (b.escape_ascii().to_string(), false),
    }
}

/// A Redis string: text when it is UTF-8 without NUL (what JSON text and PostgreSQL text can
/// hold), its bytes otherwise.
#[derive(Debug, PartialEq)]
pub(crate) enum Str {
    Text(String),
    Bytes(Vec<u8>),
}

impl From<Vec<u8>> for Str {
    fn from(bytes: Vec<u8>) -> Str {
        if memchr::memchr(0, &bytes).is_some() {
            return Str::Bytes(bytes);
        }
        match String::from_utf8(bytes) {
            Ok(text) => Str::Text(text),
            Err(e) => Str::Bytes(e.into_bytes()),
        }
    }
}

impl Str {
    /// The text, or why a text column cannot take it.
    pub(crate) fn text(&self) -> Result<&str, &'static str> {
        match self {
            Str::Text(t) => Ok(t),
            Str::Bytes(b) if std::str::from_utf8(b).is_err() => Err("is not UTF-8 text"),
            Str::Bytes(_) => Err("holds a NUL byte, which PostgreSQL text cannot"),
        }
    }

    pub(crate) fn json(self) -> Value {
        match self {
            Str::Text(t) => Value::String(t),
            Str::Bytes(b) => serde_json::json!({ "$base64": B64.encode(b) }),
        }
    }
}

impl Serialize for Str {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Str::Text(t) => s.serialize_str(t),
            Str::Bytes(b) => {
                let mut map = s.serialize_map(Some(1))?;
                map.serialize_entry("$base64", &B64.encode(b))?;
                map.end()
            }
        }
    }
}

impl PartialEq<Value> for Str {
    fn eq(&self, other: &Value) -> bool {
        match (self, other) {
            (Str::Text(t), Value::String(o)) => t == o,
            (Str::Bytes(b), Value::Object(map)) => {
                map.len() == 1
                    && map
                        .get("$base64")
                        .and_then(Value::as_str)
                        .and_then(|e| B64.decode(e).ok())
                        .is_some_and(|d| d == *b)
            }
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::migrate::source::Source;

    #[test]
    fn bytes_that_are_not_text_are_kept_as_base64_and_refused_as_text() {
        let emoji = Str::from("名前 🦀".as_bytes().to_vec());
        assert_eq!(emoji, Str::Text("名前 🦀".into()));
        let binary = Str::from(vec![0xff, 0xfe, b'a']);
        let nul = Str::from(b"a\0b".to_vec());
        assert_eq!(binary.text(), Err("is not UTF-8 text"));
        assert_eq!(
            nul.text(),
            Err("holds a NUL byte, which PostgreSQL text cannot")
        );
        let hash = Source::Hash(vec![("bin".into(), binary), ("nul".into(), nul)]);
        let json = serde_json::to_value(&hash).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"bin": {"$base64": "//5h"}, "nul": {"$base64": "YQBi"}})
        );
        assert!(hash == json, "the stored form compares equal to the bytes");
        let mut other = json.clone();
        other["nul"]["$base64"] = "YQBj".into();
        assert!(hash != other, "and different bytes do not");
        assert!(Source::String(Str::Text("//5h".into())) != json["bin"]);
        assert_eq!(
            key_name(b"apikey:\xff\x00".to_vec()),
            ("apikey:\\xff\\x00".into(), false)
        );
        assert_eq!(key_name(b"apikey:ok".to_vec()), ("apikey:ok".into(), true));
    }
}
