//! Reading Redis for the migration: one SCAN page at a time, then one pipeline for the page's
//! values. Every value becomes the JSON the `source` column keeps:
//! a hash as an object of strings, a JSON string as its JSON, a set sorted, a zset as
//! [member, score] pairs, a list in order.

use std::borrow::Cow;
use std::cmp::Ordering;

use redis::aio::MultiplexedConnection;
use serde::ser::{Serialize, Serializer};
use serde_json::Value;

/// How a key's value is read (the mapping's `type`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum Read {
    Hash,
    String,
    /// A string holding JSON (Bedrock accounts, users, config singletons).
    Json,
    Set,
    Zset,
    List,
}

impl Read {
    fn redis_type(self) -> &'static str {
        match self {
            Read::Hash => "hash",
            Read::String | Read::Json => "string",
            Read::Set => "set",
            Read::Zset => "zset",
            Read::List => "list",
        }
    }
}

/// One SCAN page: the next cursor and the keys.
pub(crate) async fn scan(
    conn: &mut MultiplexedConnection,
    cursor: u64,
    count: usize,
) -> redis::RedisResult<(u64, Vec<String>)> {
    redis::cmd("SCAN")
        .arg(cursor)
        .arg("COUNT")
        .arg(count)
        .query_async(conn)
        .await
}

/// A key's value, as the `source` column keeps it.
#[derive(Debug)]
pub(crate) enum Source {
    /// A hash's fields, sorted by name. Most keys are hashes: their fields are looked up and
    /// serialized from here, without building a JSON map.
    Hash(Vec<(String, String)>),
    /// Any other value, as JSON.
    Json(Value),
}

impl Source {
    /// The values of these fields (sorted by name) of a hash or a JSON object, as the text
    /// Redis held, in their order.
    pub(crate) fn fields(&self, names: &[String]) -> Vec<Option<Cow<'_, str>>> {
        match self {
            Source::Hash(fields) => {
                let mut found = vec![None; names.len()];
                let (mut i, mut j) = (0, 0);
                while i < fields.len() && j < names.len() {
                    match fields[i].0.cmp(&names[j]) {
                        Ordering::Less => i += 1,
                        Ordering::Greater => j += 1,
                        Ordering::Equal => {
                            found[j] = Some(Cow::Borrowed(fields[i].1.as_str()));
                            i += 1;
                            j += 1;
                        }
                    }
                }
                found
            }
            Source::Json(v) => names.iter().map(|n| v.get(n).map(json_text)).collect(),
        }
    }

    /// The whole value as the text Redis held.
    pub(crate) fn whole(&self) -> Cow<'_, str> {
        match self {
            Source::Hash(_) => Cow::Owned(serde_json::to_string(self).expect("JSON serializes")),
            Source::Json(v) => json_text(v),
        }
    }
}

/// A JSON value as the text Redis held: strings unquoted, the rest as JSON.
fn json_text(v: &Value) -> Cow<'_, str> {
    match v {
        Value::String(s) => Cow::Borrowed(s),
        other => Cow::Owned(other.to_string()),
    }
}

impl Serialize for Source {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Source::Hash(fields) => s.collect_map(fields.iter().map(|(k, v)| (k, v))),
            Source::Json(v) => v.serialize(s),
        }
    }
}

/// The `source` PostgreSQL holds is the same value.
impl PartialEq<Value> for Source {
    fn eq(&self, other: &Value) -> bool {
        match (self, other) {
            (Source::Hash(fields), Value::Object(map)) => {
                fields.len() == map.len()
                    && fields
                        .iter()
                        .all(|(k, v)| map.get(k).and_then(Value::as_str) == Some(v))
            }
            (Source::Hash(_), _) => false,
            (Source::Json(v), other) => v == other,
        }
    }
}

/// What reading a key gave.
pub(crate) enum Got {
    Value(Source),
    /// Gone since SCAN listed it.
    Missing,
    /// A different type than the mapping says.
    WrongType(String),
    /// A JSON string that is not JSON.
    Malformed(String),
}

/// Reads `keys` as the mapping says each one is: one pipeline of reads; if a key has another
/// type (WRONGTYPE), the page is read again in two pipelines, types first.
pub(crate) async fn read(
    conn: &mut MultiplexedConnection,
    keys: &[(&str, Read)],
) -> redis::RedisResult<Vec<Got>> {
    if keys.is_empty() {
        return Ok(Vec::new());
    }
    let mut values = redis::pipe();
    for (key, read) in keys {
        ask(&mut values, key, *read);
    }
    match values.query_async::<Vec<redis::Value>>(conn).await {
        Ok(raw) => keys
            .iter()
            .zip(raw)
            .map(|((_, read), v)| shape(*read, v))
            .collect(),
        Err(e) if e.code() == Some("WRONGTYPE") => read_typed(conn, keys).await,
        Err(e) => Err(e),
    }
}

fn ask(pipe: &mut redis::Pipeline, key: &str, read: Read) {
    match read {
        Read::Hash => pipe.cmd("HGETALL").arg(key),
        Read::String | Read::Json => pipe.cmd("GET").arg(key),
        Read::Set => pipe.cmd("SMEMBERS").arg(key),
        Read::Zset => pipe.cmd("ZRANGE").arg(key).arg(0).arg(-1).arg("WITHSCORES"),
        Read::List => pipe.cmd("LRANGE").arg(key).arg(0).arg(-1),
    };
}

async fn read_typed(
    conn: &mut MultiplexedConnection,
    keys: &[(&str, Read)],
) -> redis::RedisResult<Vec<Got>> {
    let mut types = redis::pipe();
    for (key, _) in keys {
        types.cmd("TYPE").arg(*key);
    }
    let types: Vec<String> = types.query_async(conn).await?;
    let mut values = redis::pipe();
    let mut asked = false;
    for ((key, read), actual) in keys.iter().zip(&types) {
        if actual == read.redis_type() {
            ask(&mut values, key, *read);
            asked = true;
        }
    }
    let raw: Vec<redis::Value> = if asked {
        values.query_async(conn).await?
    } else {
        Vec::new()
    };
    let mut raw = raw.into_iter();
    let mut out = Vec::with_capacity(keys.len());
    for ((_, read), actual) in keys.iter().zip(&types) {
        if actual == "none" {
            out.push(Got::Missing);
        } else if actual != read.redis_type() {
            out.push(Got::WrongType(actual.clone()));
        } else {
            out.push(shape(*read, raw.next().expect("one answer per asked key"))?);
        }
    }
    Ok(out)
}

/// Takes the reply apart without copying its strings.
fn owned<T: redis::FromRedisValue>(v: redis::Value) -> redis::RedisResult<T> {
    redis::FromRedisValue::from_owned_redis_value(v)
}

fn shape(read: Read, value: redis::Value) -> redis::RedisResult<Got> {
    if matches!(value, redis::Value::Nil) {
        return Ok(Got::Missing);
    }
    Ok(Got::Value(Source::Json(match read {
        Read::Hash => {
            let pairs: Vec<(String, String)> = owned(value)?;
            if pairs.is_empty() {
                return Ok(Got::Missing);
            }
            let mut fields = pairs;
            fields.sort_unstable();
            return Ok(Got::Value(Source::Hash(fields)));
        }
        Read::String => Value::String(owned::<String>(value)?),
        Read::Json => {
            let t = owned::<String>(value)?;
            match serde_json::from_str(&t) {
                Ok(v) => v,
                Err(e) => return Ok(Got::Malformed(format!("not JSON: {e}"))),
            }
        }
        Read::Set => {
            let mut members: Vec<String> = owned(value)?;
            if members.is_empty() {
                return Ok(Got::Missing);
            }
            members.sort();
            Value::Array(members.into_iter().map(Value::String).collect())
        }
        Read::Zset => {
            let pairs: Vec<(String, String)> = owned(value)?;
            if pairs.is_empty() {
                return Ok(Got::Missing);
            }
            Value::Array(
                pairs
                    .into_iter()
                    .map(|(m, s)| Value::Array(vec![Value::String(m), Value::String(s)]))
                    .collect(),
            )
        }
        Read::List => {
            let items: Vec<String> = owned(value)?;
            if items.is_empty() {
                return Ok(Got::Missing);
            }
            Value::Array(items.into_iter().map(Value::String).collect())
        }
    })))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hash_is_looked_up_serialized_and_compared_as_its_json_object() {
        let hash = Source::Hash(vec![
            ("a".into(), "1".into()),
            ("c".into(), "x\"y".into()),
            ("d".into(), "".into()),
        ]);
        let names = ["a", "b", "d", "e"].map(String::from);
        assert_eq!(
            hash.fields(&names),
            vec![Some("1".into()), None, Some("".into()), None]
        );
        let json = serde_json::json!({"a": "1", "c": "x\"y", "d": ""});
        assert_eq!(serde_json::to_string(&hash).unwrap(), json.to_string());
        assert!(hash == json);
        assert!(hash != serde_json::json!({"a": "1", "c": "x\"y"}));
        assert!(hash != serde_json::json!({"a": "1", "c": "x\"y", "d": "", "e": ""}));
        assert!(hash != serde_json::json!({"a": 1, "c": "x\"y", "d": ""}));
        let object = Source::Json(serde_json::json!({"a": {"b": 2}, "c": "3"}));
        assert_eq!(
            object.fields(&["a", "c"].map(String::from)),
            vec![Some(r#"{"b":2}"#.into()), Some("3".into())]
        );
    }
}
