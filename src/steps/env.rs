//! `env`: set keys in a `.env` file, keeping every other byte as it was (comments, line
//! endings, other values), found as Docker Compose reads the file, and quoted so that Compose
//! reads back exactly the value set.

use std::collections::BTreeMap;

use serde::Deserialize;
use toml::Spanned;

use super::compose::dotenv;
use super::{Intent, StepCx, StepError};
use crate::check::{Checker, Scalar};
use crate::env_value::quote;
use crate::fingerprint::diff;
use crate::secrets::Secrets;
use crate::steps::Observed;

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

    pub(crate) fn plan(&self, observed: &Observed, secrets: &Secrets) -> Intent {
        let current = observed.current(&self.file);
        let text = current.map(String::from_utf8_lossy).unwrap_or_default();
        let keys: Vec<&str> = self.set.keys().map(String::as_str).collect();
        let action = format!("set {} in `{}`", keys.join(", "), self.file);
        let edited = match edit(&text, &self.set) {
            Ok(edited) => edited,
            Err(e) => {
                let mut intent = Intent::new(action, true);
                intent.refusal = Some(self.unreadable(&e));
                return intent;
            }
        };
        let changes = current.is_none() || edited != text;
        Intent {
            action,
            changes,
            diff: changes.then(|| {
                self.shown_diff(current, &text, secrets)
                    .unwrap_or_else(|| diff(&self.file, current, edited.as_bytes()))
            }),
            refusal: None,
            writes: Some((self.file.clone(), edited.into_bytes())),
            compose: None,
        }
    }

    /// The diff as shown: each value is redacted before it is quoted into its line, since
    /// the quoting depends on the whole value (after `C:\\`, a secret's `$` reads `\$`) and
    /// no search for the secret finds it then. `None` if the redacted file cannot be edited.
    fn shown_diff(&self, current: Option<&[u8]>, text: &str, secrets: &Secrets) -> Option<String> {
        let before = secrets.redact(text);
        let set = self
            .set
            .iter()
            .map(|(k, v)| (k.clone(), secrets.redact(v)))
            .collect();
        let after = edit(&before, &set).ok()?;
        Some(diff(
            &self.file,
            current.map(|_| before.as_bytes()),
            after.as_bytes(),
        ))
    }

    fn unreadable(&self, e: &dotenv::Error) -> String {
        format!("`{}` cannot be read as Compose reads it: {e}", self.file)
    }

    pub(crate) fn apply(&self, cx: &StepCx<'_>) -> Result<String, StepError> {
        let path = cx.resolve(&self.file);
        let io = || StepError::io(format!("could not update `{}`", self.file));
        let current = crate::fs::read_optional(&path).map_err(io())?;
        let text = match &current {
            Some(bytes) => String::from_utf8(bytes.clone())
                .map_err(|_| StepError::from(format!("`{}` is not UTF-8 text", self.file)))?,
            None => String::new(),
        };
        let edited = edit(&text, &self.set).map_err(|e| StepError::from(self.unreadable(&e)))?;
        if current.is_some() && edited == text {
            return Ok(format!("`{}` already up to date", self.file));
        }
        crate::fs::write_atomic(&path, edited.as_bytes(), None, NEW_MODE).map_err(io())?;
        Ok(format!("set {} key(s) in `{}`", self.set.len(), self.file))
    }
}

/// The mode of an env file the step creates: likely to hold secrets, only its owner may read it.
pub(crate) const NEW_MODE: u32 = 0o600;

fn is_key(key: &str) -> bool {
    let mut chars = key.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Sets each key (every statement of it, keeping an `export ` and what follows the value) and
/// appends the missing ones, with the file's line ending (CRLF if it has one); every other byte
/// stays.
pub(crate) fn edit(text: &str, set: &BTreeMap<String, String>) -> Result<String, dotenv::Error> {
    let entries = dotenv::parse(text, &|_| None, &mut Vec::new())?;
    let mut out = String::with_capacity(text.len() + 64);
    let mut copied = 0;
    for entry in &entries {
        let Some(value) = set.get(&entry.key) else {
            continue;
        };
        let statement = &text[entry.span.clone()];
        let export =
            if statement.starts_with("export") && statement[6..].starts_with(char::is_whitespace) {
                "export "
            } else {
                ""
            };
        out.push_str(&text[copied..entry.span.start]);
        out.push_str(&format!("{export}{}={}", entry.key, quote(value)));
        copied = entry.span.end;
    }
    out.push_str(&text[copied..]);
    let newline = if text.contains("\r\n") { "\r\n" } else { "\n" };
    let mut missing = set
        .iter()
        .filter(|(k, _)| !entries.iter().any(|e| &e.key == *k))
        .peekable();
    if missing.peek().is_some() && !out.is_empty() && !out.ends_with('\n') {
        out.push_str(newline);
    }
    for (key, value) in missing {
        out.push_str(&format!("{key}={}{newline}", quote(value)));
    }
    Ok(out)
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

    fn read(text: &str) -> std::collections::HashMap<String, String> {
        dotenv::read(text, &|_| None, &mut Vec::new()).unwrap()
    }

    #[test]
    fn keeps_comments_and_other_lines_and_appends_missing_keys() {
        let text = "# header\nA=1\n\nexport B = old # was\nC: 3\n";
        let out = edit(text, &set(&[("B", "new value"), ("C", "4"), ("D", "x")])).unwrap();
        assert_eq!(
            out,
            "# header\nA=1\n\nexport B='new value' # was\nC=4\nD=x\n"
        );
    }

    #[test]
    fn unchanged_text_stays_byte_identical_even_without_final_newline() {
        let text = "\u{feff}A=1\nB=2";
        assert_eq!(edit(text, &set(&[("A", "1")])).unwrap(), text);
    }

    #[test]
    fn a_crlf_file_keeps_its_line_endings() {
        let text = "A=1\r\nB=old # c\r\nC='x'\r\n";
        let out = edit(text, &set(&[("B", "new value"), ("C", "y"), ("D", "z")])).unwrap();
        assert_eq!(out, "A=1\r\nB='new value' # c\r\nC=y\r\nD=z\r\n");
        let out = edit("A=1\r\nB=2", &set(&[("D", "z")])).unwrap();
        assert_eq!(out, "A=1\r\nB=2\r\nD=z\r\n");
    }

    #[test]
    fn a_line_inside_a_quoted_value_is_not_a_key() {
        let text = "A=\"first\nB=inside\nlast\"\nB=1\n";
        let out = edit(text, &set(&[("B", "2")])).unwrap();
        assert_eq!(out, "A=\"first\nB=inside\nlast\"\nB=2\n");
        assert_eq!(read(&out)["A"], "first\nB=inside\nlast");
    }

    #[test]
    fn a_file_compose_cannot_read_is_refused_naming_the_line_only() {
        let err = edit("A=1\nB=\"S3CRET\n", &set(&[("A", "2")])).unwrap_err();
        assert_eq!(err.to_string(), "line 2: unterminated quoted value");
    }

    /// Values docker-compose v1 (python-dotenv 0.21) also reads back exactly.
    fn hostile() -> Vec<String> {
        let mut values: Vec<String> = [
            "",
            "plain",
            "it's a $HOME \"quote\"",
            "spaces  inside ",
            " leading",
            "#hash",
            "a #b",
            "semi;colon & pipe | <>",
            "ünïcödé ✓ 🚀",
            "tab\there",
            "back\\slash",
            "\\0123 \\n \\t",
            "multi\nline",
            "crlf\r\nline",
            "lone\rcr",
            "quote's \"both\" 'x'",
            "$",
            "cost $5",
            "$$ and $1",
            "'",
            "\"",
            "''",
            "x'y\\z",
            "a=b=c",
            "emoji 🚀 $PATH",
        ]
        .iter()
        .map(|v| v.to_string())
        .collect();
        values.push(format!("{} {}", "x".repeat(100_000), "ü".repeat(1000)));
        values
    }

    #[test]
    fn hostile_values_round_trip_through_composes_rules() {
        let mut values = hostile();
        // Beyond what docker-compose v1 can read back.
        values.extend(
            [
                "${NOT_A_VAR}",
                "a\\$b",
                "line\n$HOME",
                "$$HOME",
                "${A:-x}",
                "ends with \\",
            ]
            .map(String::from),
        );
        let pairs: Vec<(String, String)> = values
            .iter()
            .enumerate()
            .map(|(i, v)| (format!("K{i}"), v.clone()))
            .collect();
        let wanted: BTreeMap<String, String> = pairs.iter().cloned().collect();
        let out = edit("# kept\nK0=old\n", &wanted).unwrap();
        let got = read(&out);
        for (k, v) in &pairs {
            assert_eq!(got.get(k), Some(v), "{k} written as {:?}", quote(v));
        }
        // Written again over itself, nothing changes.
        assert_eq!(edit(&out, &wanted).unwrap(), out);
    }

    #[test]
    fn hostile_values_read_back_by_docker_compose() {
        let values = hostile();
        let wanted: BTreeMap<String, String> = values
            .iter()
            .enumerate()
            .map(|(i, v)| (format!("K{i}"), v.clone()))
            .collect();
        let written = edit("", &wanted).unwrap();
        let seen = dotenv::docker_compose_reads(&written, wanted.keys());
        for (k, v) in &wanted {
            assert_eq!(
                seen[k].as_deref(),
                Some(v.as_str()),
                "{k} written as {:?}",
                quote(v)
            );
        }
    }
}
