//! Reading Redis for the migration: one SCAN page at a time, then one pipeline for the page's
//! values. Every value becomes the JSON the `source` column keeps:
//! a hash as an object of strings, a JSON string as its JSON, a set sorted, a zset as
//! [member, score] pairs, a list in order.

use redis::aio::MultiplexedConnection;
use serde_json::{Map, Value};

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

/// What reading a key gave.
pub(crate) enum Got {
    Value(Value),
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
    Ok(Got::Value(match read {
        Read::Hash => {
            let pairs: Vec<(String, String)> = owned(value)?;
            if pairs.is_empty() {
                return Ok(Got::Missing);
            }
            let mut sorted = pairs;
            sorted.sort();
            Value::Object(
                sorted
                    .into_iter()
                    .map(|(k, v)| (k, Value::String(v)))
                    .collect::<Map<_, _>>(),
            )
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
    }))
}
