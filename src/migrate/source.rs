//! Reading Redis for the migration: one SCAN page at a time, then one pipeline for the page's
//! values and their expiries (PEXPIRETIME, Redis 7). Every value becomes the JSON the `source`
//! column keeps: a hash as an object of strings, a JSON string as its JSON, a set sorted, a
//! zset as [member, score] pairs, a list in order, each string as `Str` keeps it.

use std::borrow::Cow;
use std::cmp::Ordering;

use redis::aio::MultiplexedConnection;
use serde::ser::{Serialize, Serializer};
use serde_json::Value;

use super::strings::{Str, key_name};

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

/// One SCAN page: the next cursor and the keys, as bytes (a key need not be UTF-8).
pub(crate) async fn scan(
    conn: &mut MultiplexedConnection,
    cursor: u64,
    count: usize,
) -> redis::RedisResult<(u64, Vec<Vec<u8>>)> {
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
    Hash(Vec<(String, Str)>),
    /// A plain string.
    String(Str),
    /// Any other value, as JSON.
    Json(Value),
}

/// A field's or a value's text, or why a column cannot take it.
pub(crate) type Text<'a> = Result<Cow<'a, str>, &'static str>;

impl Source {
    /// The values of these fields (sorted by name) of a hash or a JSON object, as the text
    /// Redis held, in their order.
    pub(crate) fn fields(&self, names: &[String]) -> Vec<Option<Text<'_>>> {
        match self {
            Source::Hash(fields) => {
                let mut found = vec![None; names.len()];
                let (mut i, mut j) = (0, 0);
                while i < fields.len() && j < names.len() {
                    match fields[i].0.cmp(&names[j]) {
                        Ordering::Less => i += 1,
                        Ordering::Greater => j += 1,
                        Ordering::Equal => {
                            found[j] = Some(fields[i].1.text().map(Cow::Borrowed));
                            i += 1;
                            j += 1;
                        }
                    }
                }
                found
            }
            Source::String(_) => vec![None; names.len()],
            Source::Json(v) => names
                .iter()
                .map(|n| v.get(n).map(|f| Ok(json_text(f))))
                .collect(),
        }
    }

    /// The whole value as the text Redis held.
    pub(crate) fn whole(&self) -> Text<'_> {
        match self {
            Source::Hash(_) => Ok(Cow::Owned(
                serde_json::to_string(self).expect("JSON serializes"),
            )),
            Source::String(s) => s.text().map(Cow::Borrowed),
            Source::Json(v) => Ok(json_text(v)),
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
            Source::String(v) => v.serialize(s),
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
                        .all(|(k, v)| map.get(k).is_some_and(|o| v == o))
            }
            (Source::Hash(_), _) => false,
            (Source::String(s), other) => s == other,
            (Source::Json(v), other) => v == other,
        }
    }
}

/// What reading a key gave.
pub(crate) enum Got {
    /// The value, and when the key expires (epoch ms; None: it does not).
    Value(Source, Option<i64>),
    /// Gone since SCAN listed it.
    Missing,
    /// A different type than the mapping says.
    WrongType(String),
    /// A value `source` cannot keep: a JSON string that is not JSON, a hash field name that
    /// is not text.
    Malformed(String),
}

/// Reads `keys` as the mapping says each one is, each with its expiry: one pipeline of reads;
/// if a key has another type (WRONGTYPE), the page is read again in two pipelines, types first.
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
        Ok(raw) => {
            let mut raw = raw.into_iter();
            keys.iter().map(|(_, read)| next(*read, &mut raw)).collect()
        }
        Err(e) if e.code() == Some("WRONGTYPE") => read_typed(conn, keys).await,
        Err(e) => Err(e),
    }
}

/// Asks for the value and, in the same round trip, the absolute expiry: both as of one read.
fn ask(pipe: &mut redis::Pipeline, key: &str, read: Read) {
    match read {
        Read::Hash => pipe.cmd("HGETALL").arg(key),
        Read::String | Read::Json => pipe.cmd("GET").arg(key),
        Read::Set => pipe.cmd("SMEMBERS").arg(key),
        Read::Zset => pipe.cmd("ZRANGE").arg(key).arg(0).arg(-1).arg("WITHSCORES"),
        Read::List => pipe.cmd("LRANGE").arg(key).arg(0).arg(-1),
    };
    pipe.cmd("PEXPIRETIME").arg(key);
}

/// The next key's two answers (`ask`): its value and its expiry.
fn next(read: Read, raw: &mut impl Iterator<Item = redis::Value>) -> redis::RedisResult<Got> {
    let value = raw.next().expect("a value per asked key");
    let expiry: i64 = owned(raw.next().expect("an expiry per asked key"))?;
    shape(read, value, expiry)
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
            out.push(next(*read, &mut raw)?);
        }
    }
    Ok(out)
}

/// Takes the reply apart without copying its strings.
fn owned<T: redis::FromRedisValue>(v: redis::Value) -> redis::RedisResult<T> {
    redis::FromRedisValue::from_owned_redis_value(v)
}

/// Strings as `Str`s, without copying them.
fn strs(v: redis::Value) -> redis::RedisResult<Vec<Str>> {
    Ok(owned::<Vec<Vec<u8>>>(v)?
        .into_iter()
        .map(Str::from)
        .collect())
}

/// The value and expiry (PEXPIRETIME: -1 none, -2 gone) as `Got`.
fn shape(read: Read, value: redis::Value, expiry: i64) -> redis::RedisResult<Got> {
    // Gone before its expiry was read: deleted (or expired) between the two answers.
    if matches!(value, redis::Value::Nil) || expiry == -2 {
        return Ok(Got::Missing);
    }
    let expires = (expiry >= 0).then_some(expiry);
    let source = match read {
        Read::Hash => {
            let pairs: Vec<(Vec<u8>, Vec<u8>)> = owned(value)?;
            if pairs.is_empty() {
                return Ok(Got::Missing);
            }
            let mut fields = Vec::with_capacity(pairs.len());
            for (name, v) in pairs {
                let (name, text) = key_name(name);
                if !text {
                    return Ok(Got::Malformed(format!(
                        "field name `{name}` is not UTF-8 text without NUL, and a JSON object's names are"
                    )));
                }
                fields.push((name, Str::from(v)));
            }
            fields.sort_unstable_by(|a, b| a.0.cmp(&b.0));
            Source::Hash(fields)
        }
        Read::String => Source::String(Str::from(owned::<Vec<u8>>(value)?)),
        Read::Json => {
            let Ok(t) = String::from_utf8(owned::<Vec<u8>>(value)?) else {
                return Ok(Got::Malformed("not JSON: not UTF-8 text".into()));
            };
            match serde_json::from_str::<Value>(&t) {
                Ok(v) if has_nul(&v) => {
                    return Ok(Got::Malformed(
                        "JSON with a NUL character (\\u0000), which jsonb cannot hold".into(),
                    ));
                }
                Ok(v) => Source::Json(v),
                Err(e) => return Ok(Got::Malformed(format!("not JSON: {e}"))),
            }
        }
        Read::Set => {
            let mut members: Vec<Vec<u8>> = owned(value)?;
            if members.is_empty() {
                return Ok(Got::Missing);
            }
            members.sort();
            Source::Json(members.into_iter().map(|m| Str::from(m).json()).collect())
        }
        Read::Zset => {
            let pairs: Vec<(Vec<u8>, String)> = owned(value)?;
            if pairs.is_empty() {
                return Ok(Got::Missing);
            }
            Source::Json(
                pairs
                    .into_iter()
                    .map(|(m, s)| Value::Array(vec![Str::from(m).json(), Value::String(s)]))
                    .collect(),
            )
        }
        Read::List => {
            let items = strs(value)?;
            if items.is_empty() {
                return Ok(Got::Missing);
            }
            Source::Json(items.into_iter().map(Str::json).collect())
        }
    };
    Ok(Got::Value(source, expires))
}

/// Whether a JSON value has a NUL character in a string or a name.
fn has_nul(v: &Value) -> bool {
    match v {
        Value::String(s) => s.contains('\0'),
        Value::Array(items) => items.iter().any(has_nul),
        Value::Object(map) => map.iter().any(|(k, v)| k.contains('\0') || has_nul(v)),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hash_is_looked_up_serialized_and_compared_as_its_json_object() {
        let hash = Source::Hash(vec![
            ("a".into(), Str::Text("1".into())),
            ("c".into(), Str::Text("x\"y".into())),
            ("d".into(), Str::Text("".into())),
        ]);
        let names = ["a", "b", "d", "e"].map(String::from);
        assert_eq!(
            hash.fields(&names),
            vec![Some(Ok("1".into())), None, Some(Ok("".into())), None]
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
            vec![Some(Ok(r#"{"b":2}"#.into())), Some(Ok("3".into()))]
        );
    }
}
