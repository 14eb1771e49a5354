//! `.env` files read as Docker Compose reads them: a port of compose-go's `dotenv` parser
//! (unquoted values up to the line's end, cut at ` #`; `'...'` literal but for `\'`; `"..."`
//! with shell escapes; `$VAR` and `${VAR:-d}` expanded outside single quotes; `export `; `KEY:
//! value`; a bare `KEY` taken from the lookup; a UTF-8 BOM skipped). Each entry keeps where it
//! is written, so that the `env` step can rewrite one value and keep every other byte.
//!
//! Errors name the line, never its text: a secrets file's line holds a secret.

use std::collections::HashMap;
use std::fmt;
use std::ops::Range;
use std::sync::LazyLock;

use regex::Regex;

use super::interpolate::{self, Lookup};

/// One `KEY=value` statement: the value as Compose reads it, the 1-based line it starts on,
/// and the bytes of the statement from its first character (`export` included) to the end of
/// its value as written (the closing quote; an unquoted value without its trailing blanks).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Entry {
    pub(crate) key: String,
    pub(crate) value: String,
    pub(crate) line: usize,
    pub(crate) span: Range<usize>,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Error {
    pub(crate) line: usize,
    /// The byte where the problem is.
    pub(crate) offset: usize,
    pub(crate) what: String,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}", self.line, self.what)
    }
}

const BOM: &str = "\u{feff}";

static EXPORT: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^export[\t\n\x0C\r ]+").expect("valid"));
static ESCAPE: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r#"\\(?:[abcfnrtv$"\\]|0[0-9]{0,3})"#).expect("valid"));

/// The variables of a file (a key given twice: the last value), with Compose's warnings.
pub(crate) fn read(
    text: &str,
    lookup: Lookup<'_>,
    warnings: &mut Vec<String>,
) -> Result<HashMap<String, String>, Error> {
    let mut vars = HashMap::new();
    read_into(text, lookup, &mut vars, warnings)?;
    Ok(vars)
}

/// Adds the variables of a file to `vars`, which a value refers to after `lookup` (compose-go's
/// `parseWithLookup`, as it reads several files into one map).
pub(crate) fn read_into(
    text: &str,
    lookup: Lookup<'_>,
    vars: &mut HashMap<String, String>,
    warnings: &mut Vec<String>,
) -> Result<(), Error> {
    let taken = std::mem::take(vars);
    *vars = run(text, lookup, taken, warnings)?.1;
    Ok(())
}

/// Every statement of the file, in order.
pub(crate) fn parse(
    text: &str,
    lookup: Lookup<'_>,
    warnings: &mut Vec<String>,
) -> Result<Vec<Entry>, Error> {
    Ok(run(text, lookup, HashMap::new(), warnings)?.0)
}

fn run(
    text: &str,
    lookup: Lookup<'_>,
    vars: HashMap<String, String>,
    warnings: &mut Vec<String>,
) -> Result<(Vec<Entry>, HashMap<String, String>), Error> {
    let start = if text.starts_with(BOM) { BOM.len() } else { 0 };
    let mut p = Parser {
        text,
        pos: start,
        line: 1,
        entries: Vec::new(),
        vars,
    };
    while p.statement_start() {
        let begin = p.pos;
        let line = p.line;
        let (key, inherited) = p.key()?;
        if key.contains(' ') {
            return Err(p.error(begin, line, "key cannot contain a space"));
        }
        if inherited {
            if let Some(value) = lookup(&key) {
                p.add(key, value, line, begin..p.pos);
            }
            continue;
        }
        let (raw, quote) = p.value(line)?;
        let end = p.pos;
        let value = match quote {
            Some(b'\'') => raw,
            Some(_) => p.expand(&expand_escapes(&raw), lookup, line, warnings)?,
            None => p.expand(&raw, lookup, line, warnings)?,
        };
        p.add(key, value, line, begin..end);
        if quote.is_none() {
            // An unquoted value ends at its last non-blank: skip the rest of the line.
            p.pos = p.text[p.pos..]
                .find('\n')
                .map_or(p.text.len(), |i| p.pos + i + 1);
        }
    }
    Ok((p.entries, p.vars))
}

struct Parser<'a> {
    text: &'a str,
    pos: usize,
    line: usize,
    entries: Vec<Entry>,
    vars: HashMap<String, String>,
}

/// compose-go's `isSpace`: blanks, but not a line break.
fn is_blank(c: char) -> bool {
    matches!(c, '\t' | '\x0B' | '\x0C' | '\r' | ' ' | '\u{85}' | '\u{A0}')
}

impl<'a> Parser<'a> {
    fn rest(&self) -> &'a str {
        &self.text[self.pos..]
    }

    fn add(&mut self, key: String, value: String, line: usize, span: Range<usize>) {
        self.vars.insert(key.clone(), value.clone());
        self.entries.push(Entry {
            key,
            value,
            line,
            span,
        });
    }

    fn error(&self, offset: usize, line: usize, what: &str) -> Error {
        Error {
            line,
            offset,
            what: what.to_string(),
        }
    }

    /// Skips blank lines and comments; false at the end of the text.
    fn statement_start(&mut self) -> bool {
        loop {
            let rest = self.rest();
            let Some(i) = rest.find(|c: char| !c.is_whitespace()) else {
                return false;
            };
            self.line += rest[..i].matches('\n').count();
            self.pos += i;
            if !self.rest().starts_with('#') {
                return true;
            }
            match self.rest().find('\n') {
                Some(i) => self.pos += i,
                None => return false,
            }
        }
    }

    /// The key, and whether the line is a bare `KEY` (a variable inherited from the lookup).
    fn key(&mut self) -> Result<(String, bool), Error> {
        if EXPORT.is_match(self.rest()) {
            let after = &self.rest()["export".len()..];
            self.pos += "export".len() + (after.len() - after.trim_start_matches(is_blank).len());
        }
        let src = self.rest();
        if src.is_empty() {
            return Err(self.error(self.pos, self.line, "zero length string"));
        }
        let mut found = None;
        for (i, c) in src.char_indices() {
            if is_blank(c) {
                continue;
            }
            match c {
                '=' | ':' | '\n' => {
                    found = Some((i, c == '\n'));
                    break;
                }
                '_' | '.' | '-' | '[' | ']' => {}
                c if c.is_alphabetic() || c.is_numeric() => {}
                _ => {
                    return Err(self.error(
                        self.pos + i,
                        self.line,
                        "unexpected character in variable name",
                    ));
                }
            }
        }
        // Without `=`, `:` or a line break the key is empty and the whole text is the value.
        let (key, offset, inherited) = match found {
            Some((i, inherited)) => (&src[..i], i + 1, inherited),
            None => ("", 0, false),
        };
        if inherited && !key.contains(' ') {
            self.line += 1;
        }
        let key = key.trim_end_matches(char::is_whitespace).to_string();
        let after = &src[offset..];
        self.pos += offset + (after.len() - after.trim_start_matches(is_blank).len());
        Ok((key, inherited))
    }

    /// The value as written (without its quotes) and its quote, if any.
    fn value(&mut self, line: usize) -> Result<(String, Option<u8>), Error> {
        let src = self.rest();
        let quote = src
            .as_bytes()
            .first()
            .copied()
            .filter(|q| *q == b'"' || *q == b'\'');
        let Some(quote) = quote else {
            let value = src.split('\n').next().unwrap_or_default();
            self.line += 1;
            let value = value.split(" #").next().unwrap_or_default();
            let value = value.trim_end_matches(char::is_whitespace);
            self.pos += value.len();
            return Ok((value.to_string(), None));
        };
        let bytes = src.as_bytes();
        let mut chars = Vec::new();
        let mut escaped = false;
        for (i, &b) in bytes.iter().enumerate().skip(1) {
            if b == b'\n' {
                self.line += 1;
            }
            if b != quote {
                if !escaped && b == b'\\' {
                    escaped = true;
                    continue;
                }
                if escaped {
                    escaped = false;
                    chars.push(b'\\');
                }
                chars.push(b);
                continue;
            }
            if escaped {
                escaped = false;
                chars.push(b);
                continue;
            }
            self.pos += i + 1;
            let value = String::from_utf8(chars).expect("ASCII inserted between whole characters");
            return Ok((value, Some(quote)));
        }
        Err(self.error(self.pos, line, "unterminated quoted value"))
    }

    fn expand(
        &self,
        value: &str,
        lookup: Lookup<'_>,
        line: usize,
        warnings: &mut Vec<String>,
    ) -> Result<String, Error> {
        let earlier = |name: &str| lookup(name).or_else(|| self.vars.get(name).cloned());
        let mut found = Vec::new();
        let value = interpolate::substitute(value, &earlier, &mut found).map_err(|e| {
            let what = match e {
                // Compose quotes the value here, which may be a secret.
                interpolate::Error::Invalid { .. } => {
                    "invalid interpolation format (write $$ for a literal $)".to_string()
                }
                e => e.to_string(),
            };
            self.error(self.pos, line, &what)
        })?;
        warnings.extend(found.into_iter().map(|w| format!("line {line}: {w}")));
        Ok(value)
    }
}

/// The shell escapes of a double-quoted value (`\n`, `\t`, `\\`, `\0123`, ...); `\$` becomes
/// `$$`, which substitution turns into a literal `$`. Other backslashes stay.
fn expand_escapes(value: &str) -> String {
    ESCAPE
        .replace_all(value, |caps: &regex::Captures<'_>| {
            let m = &caps[0];
            let c = match &m[1..] {
                "$" => return "$$".to_string(),
                "a" => '\x07',
                "b" => '\x08',
                "f" => '\x0C',
                "n" => '\n',
                "r" => '\r',
                "t" => '\t',
                "v" => '\x0B',
                "\"" => '"',
                "\\" => '\\',
                octal => match u32::from_str_radix(&octal[1..], 8) {
                    Ok(v) if octal.len() == 4 && v <= 0xFF => char::from_u32(v).expect("below 256"),
                    _ => return m.to_string(),
                },
            };
            c.to_string()
        })
        .into_owned()
}

/// What docker-compose (v1.29, on PATH) reads for `keys` from the `.env` text: each key's
/// value as `docker-compose config` shows it (`None`: not there), read with a cleared
/// environment, since docker-compose lets its own environment override the `.env`.
#[cfg(test)]
pub(crate) fn docker_compose_reads<'k>(
    env: &str,
    keys: impl Iterator<Item = &'k String>,
) -> std::collections::BTreeMap<String, Option<String>> {
    let keys: Vec<&String> = keys.collect();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join(".env"), env).unwrap();
    let listed: String = keys
        .iter()
        .map(|k| format!("      {k}: \"${{{k}}}\"\n"))
        .collect();
    let compose = format!("services:\n  app:\n    image: busybox\n    environment:\n{listed}");
    std::fs::write(dir.path().join("docker-compose.yml"), compose).unwrap();
    let output = std::process::Command::new("docker-compose")
        .arg("config")
        .current_dir(dir.path())
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .output()
        .expect("docker-compose (v1.29) is on PATH");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let config: serde_yaml::Value = serde_yaml::from_slice(&output.stdout).unwrap();
    let seen = &config["services"]["app"]["environment"];
    keys.into_iter()
        // `config` prints each `$` as `$$`.
        .map(|k| {
            (
                k.clone(),
                seen[k.as_str()].as_str().map(|s| s.replace("$$", "$")),
            )
        })
        .collect()
}

#[cfg(test)]
#[path = "dotenv_tests.rs"]
mod tests;
