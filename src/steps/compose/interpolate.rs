//! Compose's variable substitution, as compose-go's `template` package does it: `$$`, `$VAR`,
//! `${VAR}`, `${VAR:-d}`, `${VAR-d}`, `${VAR:?e}`, `${VAR?e}`, `${VAR:+a}`, `${VAR+a}`, nested in
//! defaults, with the same pattern, the same choice of operator and the same warning for a
//! variable that is not set (it becomes ""). Used for the compose file and inside `.env` values.

use std::collections::HashMap;
use std::fmt;
use std::sync::LazyLock;

use regex::{Captures, Regex};
use serde_yaml::Value;

/// compose-go's `DefaultPattern`, but for a lazy `(.*?)`: it finds the same references (Rust's
/// `regex` has Go's leftmost-first semantics); where a braced one ends is worked out as
/// compose-go does, in [`replace`].
static PATTERN: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"\$(?i:(?P<escaped>\$)|(?P<named>[_a-z][_a-z0-9]*)|\{(?:(?P<braced>[_a-z][_a-z0-9]*(?::?[-+?](.*?))?)\}|(?P<invalid>)))",
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
    /// Defaults nested deeper than [`MAX_DEPTH`] (compose-go has no bound; a bound keeps a
    /// hostile file from exhausting the stack).
    TooDeep,
}

/// How deep defaults may nest: far beyond any real file.
const MAX_DEPTH: usize = 64;

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Invalid { template } => write!(f, "Invalid template: {template:?}"),
            Error::TooDeep => write!(f, "defaults nested more than {MAX_DEPTH} deep"),
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
    nested(template, lookup, warnings, 0)
}

fn nested(
    template: &str,
    lookup: Lookup<'_>,
    warnings: &mut Vec<String>,
    depth: usize,
) -> Result<String, Error> {
    if depth > MAX_DEPTH {
        return Err(Error::TooDeep);
    }
    let mut first_error = None;
    let mut out = String::with_capacity(template.len());
    let mut at = 0;
    while let Some(caps) = PATTERN.captures_at(template, at) {
        let start = caps.get(0).expect("the whole match").start();
        out.push_str(&template[at..start]);
        let (replaced, end) = replace(template, &caps, lookup, warnings, depth);
        match replaced {
            Ok(value) => out.push_str(&value),
            Err(mut e) => {
                if let Error::Invalid { template: t } = &mut e
                    && t.is_empty()
                {
                    *t = template.to_string();
                }
                first_error.get_or_insert(e);
            }
        }
        at = end;
    }
    out.push_str(&template[at..]);
    match first_error {
        Some(e) => Err(e),
        None => Ok(out),
    }
}

/// compose-go's `DefaultReplacementAppliedFunc` for one reference, and where it ends. There,
/// a braced reference's greedy `(.*)` runs to the last `}` of the line, the match is cut at the
/// brace that closes its `${`, and the rest is substituted on its own: the same as going on
/// from that brace (no reference can reach past the last `}` of a line), which keeps the work
/// linear and the stack flat however many references a line holds.
fn replace(
    template: &str,
    caps: &Captures<'_>,
    lookup: Lookup<'_>,
    warnings: &mut Vec<String>,
    depth: usize,
) -> (Result<String, Error>, usize) {
    let whole = caps.get(0).expect("the whole match");
    if caps.name("escaped").is_some() {
        return (Ok("$".into()), whole.end());
    }
    if let Some(name) = caps.name("named") {
        return (Ok(plain(name.as_str(), lookup, warnings)), whole.end());
    }
    if caps.name("braced").is_none() {
        let invalid = Error::Invalid {
            template: String::new(),
        };
        return (Err(invalid), whole.end());
    }
    let line = &template[whole.start()..];
    let end = first_closing_brace(line)
        .or_else(|| line[..line.find('\n').unwrap_or(line.len())].rfind('}'))
        .expect("a braced reference ends with a brace");
    let substring = &line[..=end];
    let expr = &substring[2..end];
    let value = match apply(operator(substring), expr, lookup, warnings, depth + 1) {
        Ok(Some(value)) => Ok(value),
        Ok(None) => Ok(plain(expr, lookup, warnings)),
        Err(e) => Err(e),
    };
    (value, whole.start() + end + 1)
}

/// A reference without an operator: its value, or "" with compose's warning.
fn plain(name: &str, lookup: Lookup<'_>, warnings: &mut Vec<String>) -> String {
    lookup(name).unwrap_or_else(|| {
        warnings.push(not_set(name));
        String::new()
    })
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

/// The index of the `}` that closes the first `{` on the first line (compose-go skips the
/// character after a `{`).
fn first_closing_brace(s: &str) -> Option<usize> {
    let bytes = s.as_bytes();
    let mut open = 0i32;
    let mut i = 0;
    while i < bytes.len() && bytes[i] != b'\n' {
        if bytes[i] == b'}' {
            open -= 1;
            if open == 0 {
                return Some(i);
            }
        }
        if bytes[i] == b'{' {
            open += 1;
            // The skipped character is never the line break: a reference ends on its line.
            if bytes.get(i + 1) == Some(&b'\n') {
                return None;
            }
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
    depth: usize,
) -> Result<Option<String>, Error> {
    let mut word = |w: &str| nested(w, lookup, warnings, depth);
    let Some((name, default)) = expr.split_once(operator) else {
        return Ok(None);
    };
    let value = lookup(name);
    let non_empty = value.as_deref().is_some_and(|v| !v.is_empty());
    let colon = operator.starts_with(':');
    let value = match operator.trim_start_matches(':') {
        "-" if value.is_none() || (colon && !non_empty) => word(default)?,
        "+" if value.is_some() && (!colon || non_empty) => word(default)?,
        "?" if value.is_none() || (colon && !non_empty) => {
            return Err(Error::Missing {
                variable: name.to_string(),
                reason: word(default)?,
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
