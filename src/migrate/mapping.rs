//! The declarative mapping from Redis keys to PostgreSQL rows: which keys are skipped (and
//! why), which entity each other key is, and how each column is taken from the key name (regex
//! captures), a hash field, a JSON field or the whole value, converted to its type.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::io::Write;

use chrono::{FixedOffset, NaiveDate, NaiveDateTime, NaiveTime, TimeZone, Utc};
use regex::{Regex, RegexSet};
use serde::Deserialize;
use serde_json::Value;

use super::copy::CopyText;
use super::source::{Read, Source};
use crate::check::Checker;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMapping {
    /// The relay's `TIMEZONE_OFFSET`, in hours: date and hour buckets in key names are local.
    timezone_offset_hours: Option<i32>,
    #[serde(default)]
    skip: Vec<RawSkip>,
    #[serde(default)]
    entity: Vec<RawEntity>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSkip {
    patterns: Vec<String>,
    reason: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEntity {
    name: String,
    /// A regex over the whole key; named captures can feed columns.
    key: String,
    /// hash, string, json, set, zset, list.
    #[serde(rename = "type")]
    kind: String,
    table: String,
    columns: BTreeMap<String, RawColumn>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawColumn {
    capture: Option<String>,
    field: Option<String>,
    json: Option<String>,
    whole: Option<bool>,
    value: Option<String>,
    #[serde(rename = "as")]
    conversion: Option<String>,
    default: Option<String>,
    /// A missing or empty value rejects the record (for NOT NULL columns).
    required: Option<bool>,
}

/// A validated mapping.
#[derive(Debug)]
pub(crate) struct Mapping {
    /// Every skip pattern in one automaton, with the reason of each.
    skips: RegexSet,
    reasons: Vec<String>,
    /// Every entity's key regex in one automaton, in the mapping's order.
    keys: RegexSet,
    pub(crate) entities: Vec<Entity>,
    offset: FixedOffset,
}

#[derive(Debug)]
pub(crate) struct Entity {
    pub(crate) name: String,
    key: Regex,
    pub(crate) kind: Read,
    pub(crate) table: String,
    pub(crate) columns: Vec<Column>,
    /// Whether a column takes a capture of the key.
    captures: bool,
    /// The fields the columns take, sorted (a hash's fields are sorted too: one pass finds
    /// them all).
    fields: Vec<String>,
}

#[derive(Debug)]
pub(crate) struct Column {
    pub(crate) name: String,
    from: From,
    conversion: Conversion,
    default: Option<String>,
    required: bool,
}

#[derive(Debug)]
enum From {
    Capture(String),
    /// A hash field or a JSON field: the index in the entity's `fields`.
    Field(usize),
    Whole,
    Value(String),
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Conversion {
    Text,
    Integer,
    Numeric,
    Boolean,
    Timestamptz,
    Uuid,
    Jsonb,
    List,
    Permissions,
    Day,
    Hour,
    Month,
}

/// What a key is, by the mapping.
pub(crate) enum Class<'m> {
    Skip(&'m str),
    /// The index of the entity in the mapping.
    Entity(usize),
    Unmapped,
}

impl Mapping {
    pub(crate) fn parse(text: &str) -> Result<Mapping, String> {
        let raw: RawMapping = toml::from_str(text).map_err(|e| e.to_string())?;
        let hours = raw.timezone_offset_hours.unwrap_or(8);
        let offset = FixedOffset::east_opt(hours * 3600)
            .ok_or_else(|| format!("timezone_offset_hours {hours} is out of range"))?;
        let mut patterns = Vec::new();
        let mut reasons = Vec::new();
        for s in raw.skip {
            for p in s.patterns {
                patterns.push(glob_regex(&p)?);
                reasons.push(s.reason.clone());
            }
        }
        let skips = RegexSet::new(&patterns).map_err(|e| format!("skip patterns: {e}"))?;
        let mut entities = Vec::new();
        for e in raw.entity {
            let at = |what: String| format!("entity `{}`: {what}", e.name);
            let key =
                Regex::new(&e.key).map_err(|err| at(format!("`key` is not a regex: {err}")))?;
            let kind = match e.kind.as_str() {
                "hash" => Read::Hash,
                "string" => Read::String,
                "json" => Read::Json,
                "set" => Read::Set,
                "zset" => Read::Zset,
                "list" => Read::List,
                other => {
                    return Err(at(format!(
                        "type `{other}` is not hash, string, json, set, zset or list"
                    )));
                }
            };
            let mut fields: Vec<String> = e
                .columns
                .values()
                .filter_map(|c| c.field.clone().or_else(|| c.json.clone()))
                .collect();
            fields.sort();
            fields.dedup();
            let mut columns = Vec::new();
            for (name, c) in e.columns {
                let from = match (c.capture, c.field, c.json, c.whole, c.value) {
                    (Some(cap), None, None, None, None) => {
                        if !key.capture_names().flatten().any(|n| n == cap) {
                            return Err(at(format!(
                                "column `{name}`: the key regex has no capture `{cap}`"
                            )));
                        }
                        From::Capture(cap)
                    }
                    (None, Some(f), None, None, None) | (None, None, Some(f), None, None) => {
                        From::Field(fields.binary_search(&f).expect("listed above"))
                    }
                    (None, None, None, Some(true), None) => From::Whole,
                    (None, None, None, None, Some(v)) => From::Value(v),
                    _ => {
                        return Err(at(format!(
                            "column `{name}` needs exactly one of capture, field, json, whole = true, value"
                        )));
                    }
                };
                let conversion = match c.conversion.as_deref().unwrap_or("text") {
                    "text" => Conversion::Text,
                    "integer" => Conversion::Integer,
                    "numeric" => Conversion::Numeric,
                    "boolean" => Conversion::Boolean,
                    "timestamptz" => Conversion::Timestamptz,
                    "uuid" => Conversion::Uuid,
                    "jsonb" => Conversion::Jsonb,
                    "list" => Conversion::List,
                    "permissions" => Conversion::Permissions,
                    "day" => Conversion::Day,
                    "hour" => Conversion::Hour,
                    "month" => Conversion::Month,
                    other => {
                        return Err(at(format!(
                            "column `{name}`: conversion `{other}` is not known"
                        )));
                    }
                };
                columns.push(Column {
                    name,
                    from,
                    conversion,
                    default: c.default,
                    required: c.required.unwrap_or(false),
                });
            }
            entities.push(Entity {
                name: e.name,
                key,
                kind,
                table: e.table,
                captures: columns.iter().any(|c| matches!(c.from, From::Capture(_))),
                columns,
                fields,
            });
        }
        let keys = RegexSet::new(entities.iter().map(|e| e.key.as_str()))
            .map_err(|e| format!("entity keys: {e}"))?;
        Ok(Mapping {
            skips,
            reasons,
            keys,
            entities,
            offset,
        })
    }

    /// Reads and parses the mapping file a step names; a problem points at the field.
    pub(crate) fn load(
        field: &toml::Spanned<String>,
        cx: &mut Checker<'_>,
    ) -> Option<(String, Mapping)> {
        let file = cx.text(field)?;
        let text = cx.read_input(&file, field.span())?;
        match Mapping::parse(&text) {
            Ok(mapping) => Some((file, mapping)),
            Err(why) => {
                cx.problem(
                    field.span(),
                    format!("mapping `{file}`: {why}"),
                    "this mapping",
                );
                None
            }
        }
    }

    /// The tables the entities write, each once, in the mapping's order.
    pub(crate) fn tables(&self) -> Vec<String> {
        let mut tables: Vec<String> = Vec::new();
        for e in &self.entities {
            if !tables.contains(&e.table) {
                tables.push(e.table.clone());
            }
        }
        tables
    }

    /// Skip rules first, then the first entity whose key regex matches.
    pub(crate) fn classify(&self, key: &str) -> Class<'_> {
        if let Some(i) = self.skips.matches(key).iter().next() {
            return Class::Skip(&self.reasons[i]);
        }
        match self.keys.matches(key).iter().next() {
            Some(i) => Class::Entity(i),
            None => Class::Unmapped,
        }
    }

    /// Writes the cells of the row for `key` into `out`, each followed by a tab; or says why
    /// the record cannot be a row (the cells before the failing one stay written: the caller
    /// cuts its line off).
    pub(crate) fn row(
        &self,
        entity: &Entity,
        key: &str,
        value: &Source,
        out: &mut CopyText,
    ) -> Result<(), String> {
        let captures = if entity.captures {
            Some(
                entity
                    .key
                    .captures(key)
                    .ok_or("the key no longer matches")?,
            )
        } else {
            None
        };
        let fields = value.fields(&entity.fields);
        for c in &entity.columns {
            let raw: Option<Cow<'_, str>> = match &c.from {
                From::Capture(name) => captures
                    .as_ref()
                    .and_then(|m| m.name(name))
                    .map(|m| Cow::Borrowed(m.as_str())),
                From::Field(i) => fields[*i]
                    .clone()
                    .transpose()
                    .map_err(|why| format!("column `{}`: the field {why}", c.name))?,
                From::Whole => Some(
                    value
                        .whole()
                        .map_err(|why| format!("column `{}`: the value {why}", c.name))?,
                ),
                From::Value(v) => Some(Cow::Borrowed(v.as_str())),
            };
            let raw = raw
                .filter(|r| !r.is_empty())
                .or_else(|| c.default.as_deref().map(Cow::Borrowed));
            if c.required && raw.as_deref().is_none_or(str::is_empty) {
                return Err(format!(
                    "column `{}` needs a value and the record has none",
                    c.name
                ));
            }
            convert(raw.as_deref(), c.conversion, self.offset, out)
                .map_err(|e| format!("column `{}`: {e}", c.name))?;
            out.tab();
        }
        Ok(())
    }
}

fn glob_regex(pattern: &str) -> Result<String, String> {
    let mut re = String::from("^");
    for c in pattern.chars() {
        match c {
            '*' => re.push_str(".*"),
            '?' => re.push('.'),
            c => re.push_str(&regex::escape(&c.to_string())),
        }
    }
    re.push('$');
    Regex::new(&re).map_err(|e| format!("skip pattern `{pattern}`: {e}"))?;
    Ok(re)
}

/// Writes one cell: `raw` converted (None: NULL).
fn convert(
    raw: Option<&str>,
    conversion: Conversion,
    offset: FixedOffset,
    out: &mut CopyText,
) -> Result<(), String> {
    let Some(text) = raw else {
        out.null();
        return Ok(());
    };
    if text.is_empty() && conversion != Conversion::Text {
        match conversion {
            Conversion::List | Conversion::Permissions => out.text("[]"),
            _ => out.null(),
        }
        return Ok(());
    }
    match conversion {
        Conversion::Text => out.text(text),
        Conversion::Integer => {
            let n = match text.trim().parse::<i64>() {
                Ok(n) => n,
                Err(_) => {
                    let n: f64 = text
                        .trim()
                        .parse()
                        .map_err(|_| format!("`{text}` is not a number"))?;
                    if n.fract() != 0.0 || !n.is_finite() {
                        return Err(format!("`{text}` is not a whole number"));
                    }
                    n as i64
                }
            };
            write!(out, "{n}").expect("writing into memory");
        }
        Conversion::Numeric => {
            let n: f64 = text
                .trim()
                .parse()
                .map_err(|_| format!("`{text}` is not a number"))?;
            if !n.is_finite() {
                return Err(format!("`{text}` is not a finite number"));
            }
            out.text(text.trim());
        }
        Conversion::Boolean => out.text(match text {
            "true" | "1" => "true",
            "false" | "0" => "false",
            other => return Err(format!("`{other}` is not true or false")),
        }),
        Conversion::Timestamptz => out.text(&timestamp(text)?),
        Conversion::Uuid => {
            let ok = text.len() == 36
                && text.char_indices().all(|(i, c)| {
                    if [8, 13, 18, 23].contains(&i) {
                        c == '-'
                    } else {
                        c.is_ascii_hexdigit()
                    }
                });
            if !ok {
                return Err(format!("`{text}` is not a UUID"));
            }
            out.0.extend(text.bytes().map(|b| b.to_ascii_lowercase()));
        }
        Conversion::Jsonb => match serde_json::from_str::<Value>(text) {
            Ok(v) => out.json(&v),
            Err(_) => out.json(&text),
        },
        Conversion::List => out.json(&list(text)),
        Conversion::Permissions => {
            // "all" (old) and [] (HEAD) both mean every service.
            let items = list(text);
            if items
                .as_array()
                .is_some_and(|a| a.len() == 1 && a[0] == "all")
            {
                out.text("[]");
            } else {
                out.json(&items);
            }
        }
        Conversion::Day => out.text(&bucket(&format!("{text}T00:00:00"), offset)?),
        Conversion::Hour => {
            let (day, hour) = text
                .rsplit_once(':')
                .ok_or_else(|| format!("`{text}` is not YYYY-MM-DD:HH"))?;
            out.text(&bucket(&format!("{day}T{hour}:00:00"), offset)?);
        }
        Conversion::Month => out.text(&bucket(&format!("{text}-01T00:00:00"), offset)?),
    }
    Ok(())
}

/// A JSON array, a comma-joined list or a single word, as a JSON array.
fn list(text: &str) -> Value {
    match serde_json::from_str::<Value>(text) {
        Ok(v @ Value::Array(_)) => v,
        _ => Value::Array(
            text.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(|s| Value::String(s.to_string()))
                .collect(),
        ),
    }
}

/// ISO-8601 or epoch milliseconds, as RFC 3339 UTC.
fn timestamp(text: &str) -> Result<String, String> {
    if text.bytes().all(|b| b.is_ascii_digit()) {
        let ms: i64 = text
            .parse()
            .map_err(|_| format!("`{text}` is not epoch milliseconds"))?;
        let at = Utc
            .timestamp_millis_opt(ms)
            .single()
            .ok_or_else(|| format!("`{text}` is out of range"))?;
        return Ok(at.to_rfc3339());
    }
    chrono::DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&Utc).to_rfc3339())
        .map_err(|e| format!("`{text}` is not an ISO-8601 time: {e}"))
}

/// A local bucket label's start, in UTC.
fn bucket(local: &str, offset: FixedOffset) -> Result<String, String> {
    let naive = NaiveDateTime::parse_from_str(local, "%Y-%m-%dT%H:%M:%S")
        .or_else(|_| {
            NaiveDate::parse_from_str(local, "%Y-%m-%d").map(|d| d.and_time(NaiveTime::MIN))
        })
        .map_err(|_| format!("`{local}` is not a date bucket"))?;
    let at = offset
        .from_local_datetime(&naive)
        .single()
        .ok_or_else(|| format!("`{local}` is ambiguous"))?;
    Ok(at.with_timezone(&Utc).to_rfc3339())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(text: &str, conversion: Conversion) -> Result<Option<String>, String> {
        let mut out = CopyText::default();
        convert(
            Some(text),
            conversion,
            FixedOffset::east_opt(8 * 3600).unwrap(),
            &mut out,
        )?;
        let cell = String::from_utf8(out.0).unwrap();
        Ok((cell != "\\N").then_some(cell))
    }

    #[test]
    fn conversions_accept_every_release_format() {
        assert_eq!(c("true", Conversion::Boolean).unwrap().unwrap(), "true");
        assert_eq!(c("", Conversion::Boolean).unwrap(), None);
        assert!(c("yes", Conversion::Boolean).is_err());
        assert_eq!(c("12", Conversion::Integer).unwrap().unwrap(), "12");
        assert!(c("1.5", Conversion::Integer).is_err());
        assert_eq!(
            c("0.30000000000000004", Conversion::Numeric)
                .unwrap()
                .unwrap(),
            "0.30000000000000004"
        );
        assert_eq!(
            c("1767225600000", Conversion::Timestamptz)
                .unwrap()
                .unwrap(),
            "2026-01-01T00:00:00+00:00"
        );
        assert_eq!(
            c("2026-01-02T03:04:05.000Z", Conversion::Timestamptz)
                .unwrap()
                .unwrap(),
            "2026-01-02T03:04:05+00:00"
        );
        assert_eq!(c("all", Conversion::Permissions).unwrap().unwrap(), "[]");
        assert_eq!(
            c("claude", Conversion::Permissions).unwrap().unwrap(),
            r#"["claude"]"#
        );
        assert_eq!(
            c("claude,openai", Conversion::Permissions)
                .unwrap()
                .unwrap(),
            r#"["claude","openai"]"#
        );
        assert_eq!(
            c(r#"["gemini"]"#, Conversion::Permissions)
                .unwrap()
                .unwrap(),
            r#"["gemini"]"#
        );
        assert_eq!(c("a,b", Conversion::List).unwrap().unwrap(), r#"["a","b"]"#);
        assert_eq!(
            c("2026-03-01", Conversion::Day).unwrap().unwrap(),
            "2026-02-28T16:00:00+00:00"
        );
        assert_eq!(
            c("2026-03-01:10", Conversion::Hour).unwrap().unwrap(),
            "2026-03-01T02:00:00+00:00"
        );
        assert_eq!(
            c("2026-03", Conversion::Month).unwrap().unwrap(),
            "2026-02-28T16:00:00+00:00"
        );
        assert!(c("7f3c", Conversion::Uuid).is_err());
    }
}
