//! The scalar and either-form values of the Compose Specification: a string where a number
//! or boolean is meant (compose-go casts them at known paths), `X` or `[X]`, a command as text
//! or words, `KEY=value` lists or mappings.

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer, de::Error};
use serde_yaml::Value;

/// A string, number or boolean, kept as the text compose would use.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Scalar(pub(crate) String);

impl<'de> Deserialize<'de> for Scalar {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match Value::deserialize(d)? {
            Value::String(s) => Ok(Scalar(s)),
            Value::Number(n) => Ok(Scalar(n.to_string())),
            Value::Bool(b) => Ok(Scalar(b.to_string())),
            other => Err(D::Error::custom(format!(
                "expected a string or number, found {}",
                kind(&other)
            ))),
        }
    }
}

/// A boolean, or a string compose-go casts to one (`true`, `yes`, `on`, `false`, ...).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Bool(pub(crate) bool);

impl<'de> Deserialize<'de> for Bool {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match Value::deserialize(d)? {
            Value::Bool(b) => Ok(Bool(b)),
            Value::String(s) => match s.to_lowercase().as_str() {
                "y" | "yes" | "true" | "on" => Ok(Bool(true)),
                "n" | "no" | "false" | "off" => Ok(Bool(false)),
                _ => Err(D::Error::custom(format!("`{s}` is not a boolean"))),
            },
            other => Err(D::Error::custom(format!(
                "expected a boolean, found {}",
                kind(&other)
            ))),
        }
    }
}

/// An integer, or a string compose-go casts to one.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Int(pub(crate) i64);

impl<'de> Deserialize<'de> for Int {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let Scalar(text) = Scalar::deserialize(d)?;
        text.trim()
            .parse()
            .map(Int)
            .map_err(|_| D::Error::custom(format!("`{text}` is not an integer")))
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "nothing",
        Value::Sequence(_) => "a list",
        Value::Mapping(_) => "a mapping",
        _ => "a tagged value",
    }
}

/// `X` or `[X, ...]`.
#[derive(Deserialize)]
#[serde(untagged)]
pub(crate) enum OneOrMany<T> {
    One(T),
    Many(Vec<T>),
}

impl<T> Default for OneOrMany<T> {
    fn default() -> Self {
        OneOrMany::Many(Vec::new())
    }
}

impl<T> OneOrMany<T> {
    pub(crate) fn into_vec(self) -> Vec<T> {
        match self {
            OneOrMany::One(t) => vec![t],
            OneOrMany::Many(v) => v,
        }
    }
}

/// A command as one string (split like a shell) or as a list of words.
#[derive(Deserialize, Clone)]
#[serde(untagged)]
pub(crate) enum Words {
    Text(String),
    List(Vec<Scalar>),
}

/// `KEY=value` list or `KEY: value` mapping (for `environment`, `labels`, `extra_hosts`
/// (`host:ip` or `host=ip` in the list), `sysctls`, build `args`). A key without a value is
/// `None`.
#[derive(Default)]
pub(crate) struct Pairs(pub(crate) Vec<(String, Option<String>)>);

impl<'de> Deserialize<'de> for Pairs {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Form {
            List(Vec<Scalar>),
            Map(BTreeMap<String, Option<Scalar>>),
        }
        Ok(Pairs(match Form::deserialize(d)? {
            Form::List(items) => items
                .into_iter()
                .map(|Scalar(item)| match item.split_once('=') {
                    Some((k, v)) => (k.to_string(), Some(v.to_string())),
                    None => (item, None),
                })
                .collect(),
            Form::Map(map) => map.into_iter().map(|(k, v)| (k, v.map(|s| s.0))).collect(),
        }))
    }
}

impl Clone for Pairs {
    fn clone(&self) -> Self {
        Pairs(self.0.clone())
    }
}
