//! The TOML document split into its sections, spans kept, before any typing. Each section and
//! each step is deserialized on its own so that one mistake does not hide the others.

use std::ops::Range;

use serde::Deserialize;
use serde::de::DeserializeOwned;
use toml::Spanned;
use toml::de::{DeTable, DeValue, ValueDeserializer};

use crate::diagnostic::{Problem, Source};

const SECTIONS: &[&str] = &["playbook", "vars", "secrets", "notify", "steps"];

/// Keys every step may have, whatever its kind.
const COMMON_KEYS: &[&str] = &[
    "id",
    "kind",
    "description",
    "timeout",
    "retries",
    "backoff",
    "reason",
];

pub(crate) struct Document<'i> {
    pub(crate) playbook: Option<Spanned<DeValue<'i>>>,
    pub(crate) vars: Option<Spanned<DeValue<'i>>>,
    pub(crate) secrets: Option<Spanned<DeValue<'i>>>,
    pub(crate) notify: Option<Spanned<DeValue<'i>>>,
    pub(crate) steps: Vec<Spanned<DeValue<'i>>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Header {
    pub(crate) name: Spanned<String>,
    pub(crate) phase: Option<String>,
    pub(crate) description: Option<String>,
    pub(crate) on_failure: Option<Spanned<String>>,
    pub(crate) workdir: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Secret {
    /// The environment variable holding the value.
    pub(crate) env: Option<String>,
    /// An env file holding the value, under `key` (default: the secret's name).
    pub(crate) file: Option<String>,
    pub(crate) key: Option<String>,
    /// Unset is allowed: the value is empty (for a webhook, no alerts).
    pub(crate) optional: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Common {
    pub(crate) id: Spanned<String>,
    pub(crate) kind: Spanned<String>,
    pub(crate) description: Option<String>,
    pub(crate) timeout: Option<Spanned<String>>,
    pub(crate) retries: Option<u32>,
    pub(crate) backoff: Option<Spanned<String>>,
    pub(crate) reason: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RollbackCommand {
    pub(crate) command: Spanned<Vec<Spanned<String>>>,
    pub(crate) dir: Option<Spanned<String>>,
    pub(crate) env: Option<std::collections::BTreeMap<String, Spanned<crate::check::Scalar>>>,
}

/// Parses the TOML (every syntax error at once) and sorts the top level into sections.
pub(crate) fn parse(source: &Source) -> Result<Document<'_>, Vec<Problem>> {
    let (root, errors) = DeTable::parse_recoverable(source.text());
    if !errors.is_empty() {
        return Err(errors
            .into_iter()
            .map(|e| {
                let span = e.span().unwrap_or(0..0);
                source.problem(
                    span,
                    format!("invalid TOML: {}", e.message().trim()),
                    "here",
                )
            })
            .collect());
    }
    let mut problems = Vec::new();
    let mut document = Document {
        playbook: None,
        vars: None,
        secrets: None,
        notify: None,
        steps: Vec::new(),
    };
    for (key, value) in root.into_inner() {
        match key.get_ref().as_ref() {
            "playbook" => document.playbook = Some(value),
            "vars" => document.vars = Some(value),
            "secrets" => document.secrets = Some(value),
            "notify" => document.notify = Some(value),
            "steps" => {
                let span = value.span();
                match value.into_inner() {
                    DeValue::Array(items) => document.steps = items.into_iter().collect(),
                    _ => problems.push(source.problem(
                        span,
                        "`steps` must be an array of tables",
                        "write each step as [[steps]]",
                    )),
                }
            }
            other => problems.push(
                source
                    .problem(
                        key.span(),
                        format!("unknown section `{other}`"),
                        "not a playbook section",
                    )
                    .with_help(format!("the sections are: {}", SECTIONS.join(", "))),
            ),
        }
    }
    if document.playbook.is_none() {
        problems.push(
            source
                .problem(
                    0..0,
                    "the [playbook] section is missing",
                    "expected before this",
                )
                .with_help("add [playbook] with at least `name`"),
        );
    }
    if problems.is_empty() {
        Ok(document)
    } else {
        Err(problems)
    }
}

/// Deserializes one value, mapping a serde error to a problem at its place.
pub(crate) fn fields<T: DeserializeOwned>(
    value: Spanned<DeValue<'_>>,
    source: &Source,
    what: &str,
) -> Result<T, Problem> {
    let whole = value.span();
    T::deserialize(ValueDeserializer::from(value)).map_err(|e| {
        let span = e.span().unwrap_or(whole);
        let message = e.message().trim();
        let label = if message.starts_with("missing field") {
            "in this table"
        } else {
            "here"
        };
        source.problem(span, format!("{what}: {message}"), label)
    })
}

/// A step's table split three ways: the keys every step has, its `rollback`, its kind's keys.
pub(crate) struct StepParts<'i> {
    pub(crate) common: Spanned<DeValue<'i>>,
    /// `"none"` or `{ command = [...], dir = "...", env = {...} }`: its shape decides its type.
    pub(crate) rollback: Option<Spanned<DeValue<'i>>>,
    pub(crate) kind: Spanned<DeValue<'i>>,
}

pub(crate) fn split_step(step: Spanned<DeValue<'_>>) -> Result<StepParts<'_>, Range<usize>> {
    let span = step.span();
    let DeValue::Table(table) = step.into_inner() else {
        return Err(span);
    };
    let (mut common, mut kind, mut rollback) = (DeTable::new(), DeTable::new(), None);
    for (key, value) in table {
        if key.get_ref() == "rollback" {
            rollback = Some(value);
        } else if COMMON_KEYS.contains(&key.get_ref().as_ref()) {
            common.insert(key, value);
        } else {
            kind.insert(key, value);
        }
    }
    Ok(StepParts {
        common: Spanned::new(span.clone(), DeValue::Table(common)),
        rollback,
        kind: Spanned::new(span, DeValue::Table(kind)),
    })
}
