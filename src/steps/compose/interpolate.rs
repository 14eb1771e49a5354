//! Compose's variable substitution, as compose-go's `template` package does it: `$$`, `$VAR`,
//! `${VAR}`, `${VAR:-d}`, `${VAR-d}`, `${VAR:?e}`, `${VAR?e}`, `${VAR:+a}`, `${VAR+a}`, nested in
//! defaults, with the same pattern, the same choice of operator and the same warning for a
//! variable that is not set (it becomes ""). Used for the compose file and inside `.env` values.

use std::collections::HashMap;
use std::fmt;
use std::sync::LazyLock;

use regex::{Captures, Regex};
use serde_yaml::Value;

/// compose-go's `DefaultPattern`, verbatim: Rust's `regex` has Go's leftmost-first semantics.
static PATTERN: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"\$(?i:(?P<escaped>\$)|(?P<named>[_a-z][_a-z0-9]*)|\{(?:(?P<braced>[_a-z][_a-z0-9]*(?::?[-+?](.*))?)\}|(?P<invalid>)))",
    )
    .expect("the pattern is valid")
});

/// Looks a variable up: its value, or None when it is not set.
pub(crate) type Lookup<'a> = &'a dyn Fn(&str) -> Option<String>;

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Error {
    /// `${` that is not a variable reference (compose: "Invalid template").
    Invalid { template: String },
    /// `${VAR:?reason}` or `${VAR?reason}` with VAR missing.
    Missing { variable: String, reason: String },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Invalid { template } => write!(f, "Invalid template: {template:?}"),
            Error::Missing { variable, reason } if reason.is_empty() => {
                write!(f, "required variable {variable} is missing a value")
            }
            Error::Missing { variable, reason } => {
                write!(
                    f,
                    "required variable {variable} is missing a value: {reason}"
                )
            }
        }
    }
}

/// Substitutes every reference in `template`; a variable that is not set becomes "" and adds
/// compose's warning to `warnings`.
pub(crate) fn substitute(
    template: &str,
    lookup: Lookup<'_>,
    warnings: &mut Vec<String>,
) -> Result<String, Error> {
    let mut first_error = None;
    let result = PATTERN.replace_all(template, |caps: &Captures<'_>| {
        match replace(&caps[0], lookup, warnings) {
            Ok(value) => value,
            Err(mut e) => {
                if let Error::Invalid { template: t } = &mut e
                    && t.is_empty()
                {
                    *t = template.to_string();
                }
                first_error.get_or_insert(e);
                String::new()
            }
        }
    });
    match first_error {
        Some(e) => Err(e),
        None => Ok(result.into_owned()),
    }
}

/// compose-go's `DefaultReplacementAppliedFunc` for one match of the pattern.
fn replace(matched: &str, lookup: Lookup<'_>, warnings: &mut Vec<String>) -> Result<String, Error> {
    let operator = operator(matched);
    let (substring, rest) = match first_closing_brace(matched) {
        Some(i) => (&matched[..=i], &matched[i + 1..]),
        None => (matched, ""),
    };
    let caps = PATTERN
        .captures(substring)
        .expect("a match cut at its closing brace still matches");
    if caps.name("escaped").is_some() {
        return Ok("$".into());
    }
    let (name, braced) = match (caps.name("named"), caps.name("braced")) {
        (Some(n), _) => (n.as_str(), false),
        (None, Some(b)) => (b.as_str(), true),
        _ => {
            return Err(Error::Invalid {
                template: String::new(),
            });
        }
    };
    if braced && let Some(value) = apply(operator, name, lookup, warnings)? {
        return Ok(value + &substitute(rest, lookup, warnings)?);
    }
    Ok(lookup(name).unwrap_or_else(|| {
        warnings.push(not_set(name));
        String::new()
    }))
}

/// Compose's warning for a variable that is not set.
pub(crate) fn not_set(name: &str) -> String {
    format!("The {name:?} variable is not set. Defaulting to a blank string.")
}

const OPERATORS: [&str; 6] = [":?", "?", ":-", "-", ":+", "+"];

/// The operator that occurs first in the text (compose-go's
/// `getSubstitutionFunctionForTemplate`); `:?` when there is none.
fn operator(text: &str) -> &'static str {
    OPERATORS
        .iter()
        .filter_map(|op| text.find(op).map(|i| (i, *op)))
        .min()
        .map_or(OPERATORS[0], |(_, op)| op)
}

/// The index of the `}` that closes the first `{` (compose-go skips the character after a `{`).
fn first_closing_brace(s: &str) -> Option<usize> {
    let bytes = s.as_bytes();
    let mut open = 0i32;
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'}' {
            open -= 1;
            if open == 0 {
                return Some(i);
            }
        }
        if bytes[i] == b'{' {
            open += 1;
            i += 1;
        }
        i += 1;
    }
    None
}

/// Applies `operator` to a braced expression (`VAR:-default`); None when it does not hold it.
fn apply(
    operator: &str,
    expr: &str,
    lookup: Lookup<'_>,
    warnings: &mut Vec<String>,
) -> Result<Option<String>, Error> {
    let Some((name, word)) = expr.split_once(operator) else {
        return Ok(None);
    };
    let value = lookup(name);
    let non_empty = value.as_deref().is_some_and(|v| !v.is_empty());
    let colon = operator.starts_with(':');
    let value = match operator.trim_start_matches(':') {
        "-" if value.is_none() || (colon && !non_empty) => substitute(word, lookup, warnings)?,
        "+" if value.is_some() && (!colon || non_empty) => substitute(word, lookup, warnings)?,
        "?" if value.is_none() || (colon && !non_empty) => {
            return Err(Error::Missing {
                variable: name.to_string(),
                reason: substitute(word, lookup, warnings)?,
            });
        }
        _ => value.unwrap_or_default(),
    };
    Ok(Some(value))
}

/// An error in a compose file's value, with its path (`services.app.image`).
#[derive(Debug)]
pub(crate) struct TreeError {
    pub(crate) path: String,
    /// The string that held the error, as written.
    pub(crate) template: String,
    pub(crate) error: Error,
}

impl fmt::Display for TreeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.error {
            Error::Invalid { template } => write!(
                f,
                "invalid interpolation format for {}: {template:?} (write $$ for a literal $)",
                self.path
            ),
            e => write!(f, "error while interpolating {}: {e}", self.path),
        }
    }
}

/// Substitutes every string value of a compose tree (keys are left as they are, as compose
/// does); returns compose's warnings, each prefixed with the path of its value.
pub(crate) fn tree(
    value: &mut Value,
    vars: &HashMap<String, String>,
) -> Result<Vec<String>, TreeError> {
    let lookup = |name: &str| vars.get(name).cloned();
    let mut warnings = Vec::new();
    walk(value, &lookup, "", &mut warnings)?;
    Ok(warnings)
}

fn walk(
    value: &mut Value,
    lookup: Lookup<'_>,
    at: &str,
    warnings: &mut Vec<String>,
) -> Result<(), TreeError> {
    match value {
        Value::String(s) => {
            let path = at.trim_start_matches('.');
            let mut found = Vec::new();
            *s = substitute(s, lookup, &mut found).map_err(|error| TreeError {
                path: path.to_string(),
                template: s.clone(),
                error,
            })?;
            warnings.extend(found.into_iter().map(|w| format!("{path}: {w}")));
        }
        Value::Sequence(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                walk(item, lookup, &format!("{at}[{i}]"), warnings)?;
            }
        }
        Value::Mapping(map) => {
            for (k, v) in map.iter_mut() {
                let key = k.as_str().unwrap_or("?");
                walk(v, lookup, &format!("{at}.{key}"), warnings)?;
            }
        }
        Value::Tagged(t) => walk(&mut t.value, lookup, at, warnings)?,
        _ => {}
    }
    Ok(())
}

#[cfg(test)]
#[path = "interpolate_tests.rs"]
mod tests;
