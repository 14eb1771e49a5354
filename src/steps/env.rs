//! `env`: set keys in a `.env` file, keeping every other line and comment as it was.

use std::collections::BTreeMap;

use serde::Deserialize;
use toml::Spanned;

use super::files;
use super::{Intent, StepCx, StepError};
use crate::plan::{Observed, diff};
use crate::playbook::{Checker, Scalar};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Raw {
    file: Spanned<String>,
    set: Spanned<BTreeMap<String, Spanned<Scalar>>>,
}

#[derive(Debug)]
pub(crate) struct Env {
    pub(crate) file: String,
    /// Values may hold secrets: never shown, only written.
    pub(crate) set: BTreeMap<String, String>,
}

impl Env {
    pub(crate) fn validate(raw: Raw, cx: &mut Checker<'_>) -> Option<Self> {
        let file = cx.file_path(&raw.file);
        if raw.set.get_ref().is_empty() {
            cx.problem(raw.set.span(), "`set` is empty", "nothing to set");
        }
        let mut set = BTreeMap::new();
        let mut ok = true;
        for (key, value) in raw.set.into_inner() {
            if !is_key(&key) {
                cx.problem(
                    value.span(),
                    format!("`{key}` is not a valid variable name"),
                    "for this key",
                );
                ok = false;
            }
            match cx.scalar(&value) {
                Some(v) => {
                    set.insert(key, v);
                }
                None => ok = false,
            }
        }
        (ok && !set.is_empty()).then_some(Env { file: file?, set })
    }

    pub(crate) fn plan(&self, observed: &Observed) -> Intent {
        let current = observed.current(&self.file);
        let text = current.map(String::from_utf8_lossy).unwrap_or_default();
        let edited = edit(&text, &self.set);
        let changes = current.is_none() || edited != text;
        let keys: Vec<&str> = self.set.keys().map(String::as_str).collect();
        Intent {
            action: format!("set {} in `{}`", keys.join(", "), self.file),
            changes,
            diff: changes.then(|| diff(&self.file, current, edited.as_bytes())),
            refusal: None,
            writes: Some((self.file.clone(), edited.into_bytes())),
            compose: None,
        }
    }

    pub(crate) fn apply(&self, cx: &StepCx<'_>) -> Result<String, StepError> {
        let path = cx.resolve(&self.file);
        let io = || StepError::io(format!("could not update `{}`", self.file));
        let current = files::read_optional(&path).map_err(io())?;
        let text = match &current {
            Some(bytes) => String::from_utf8(bytes.clone())
                .map_err(|_| StepError::from(format!("`{}` is not UTF-8 text", self.file)))?,
            None => String::new(),
        };
        let edited = edit(&text, &self.set);
        if current.is_some() && edited == text {
            return Ok(format!("`{}` already up to date", self.file));
        }
        // A new env file is likely to hold secrets: only its owner may read it.
        files::write_atomic(&path, edited.as_bytes(), None, 0o600).map_err(io())?;
        Ok(format!("set {} key(s) in `{}`", self.set.len(), self.file))
    }
}

fn is_key(key: &str) -> bool {
    let mut chars = key.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// The key a line assigns, if it is an assignment (`KEY=...` or `export KEY=...`).
fn assigned_key(line: &str) -> Option<&str> {
    let line = line.trim_start();
    let line = line
        .strip_prefix("export ")
        .map(str::trim_start)
        .unwrap_or(line);
    let (key, _) = line.split_once('=')?;
    let key = key.trim_end();
    is_key(key).then_some(key)
}

/// Sets each key (every assignment of it) and appends the missing ones; other lines stay.
pub(crate) fn edit(text: &str, set: &BTreeMap<String, String>) -> String {
    let present: std::collections::BTreeSet<&str> = text.lines().filter_map(assigned_key).collect();
    let missing: Vec<(&String, &String)> = set
        .iter()
        .filter(|(k, _)| !present.contains(k.as_str()))
        .collect();
    let mut out = String::with_capacity(text.len() + 64);
    for line in text.split_inclusive('\n') {
        let (body, newline) = match line.strip_suffix('\n') {
            Some(body) => (body, true),
            None => (line, !missing.is_empty()),
        };
        match assigned_key(body).and_then(|k| set.get_key_value(k)) {
            Some((key, value)) => {
                let export = if body.trim_start().starts_with("export ") {
                    "export "
                } else {
                    ""
                };
                out.push_str(&format!("{export}{key}={}", quote(value)));
            }
            None => out.push_str(body),
        }
        if newline {
            out.push('\n');
        }
    }
    for (key, value) in missing {
        out.push_str(&format!("{key}={}\n", quote(value)));
    }
    out
}

/// Quotes a value the way docker compose and dotenv read it back unchanged.
fn quote(value: &str) -> String {
    let plain = value
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "_./:@,+=%-".contains(c));
    if plain {
        value.to_string()
    } else if !value.contains('\'') && !value.contains('\n') {
        format!("'{value}'")
    } else {
        let escaped = value
            .replace('\\', "\\\\")
            .replace('"', "\\\"")
            .replace('$', "\\$")
            .replace('\n', "\\n");
        format!("\"{escaped}\"")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn keeps_comments_and_other_lines_and_appends_missing_keys() {
        let text = "# header\nA=1\n\nexport B = old\nC=3\n";
        let out = edit(text, &set(&[("B", "new value"), ("D", "x")]));
        assert_eq!(out, "# header\nA=1\n\nexport B='new value'\nC=3\nD=x\n");
    }

    #[test]
    fn unchanged_text_stays_byte_identical_even_without_final_newline() {
        let text = "A=1\nB=2";
        assert_eq!(edit(text, &set(&[("A", "1")])), text);
    }

    #[test]
    fn values_round_trip_through_dotenv() {
        let tricky = "it's a $HOME \"quote\"";
        let out = edit("", &set(&[("K", tricky), ("E", "")]));
        let parsed: BTreeMap<String, String> = dotenvy::from_read_iter(out.as_bytes())
            .map(Result::unwrap)
            .collect();
        assert_eq!(parsed["K"], tricky);
        assert_eq!(parsed["E"], "");
    }
}
