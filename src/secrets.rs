//! Secret values: resolved once from the environment or an env file, then kept out of every
//! output (plans, events, journals, logs) by redaction.

use std::collections::BTreeMap;
use std::fmt;

use crate::event::Event;

/// What a secret value is replaced with wherever it would be shown.
pub(crate) const REDACTED: &str = "<redacted>";

/// The resolved secret values of a playbook, by name.
#[derive(Clone, Default)]
pub(crate) struct Secrets {
    values: BTreeMap<String, String>,
    /// Values sorted longest first, so a secret that contains another is redacted whole.
    needles: Vec<String>,
}

impl fmt::Debug for Secrets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.values.keys()).finish()
    }
}

/// The shortest secret a playbook may have: a shorter value also occurs in ordinary text, so
/// redacting it would rewrite that text (and reveal the secret by where it did).
pub(crate) const MIN_LEN: usize = 8;

/// The sets of characters a URL percent-encodes where a secret may sit (the WHATWG URL
/// standard's, as the `url` crate applies them when it parses or prints a URL): a query of a
/// special scheme, a path, the user info. `%` is never among them: a URL keeps it as it is.
const QUERY: &percent_encoding::AsciiSet = &percent_encoding::CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b'#')
    .add(b'<')
    .add(b'>')
    .add(b'\'');
const PATH: &percent_encoding::AsciiSet =
    &QUERY.remove(b'\'').add(b'?').add(b'`').add(b'{').add(b'}');
const USERINFO: &percent_encoding::AsciiSet = &PATH
    .add(b'/')
    .add(b':')
    .add(b';')
    .add(b'=')
    .add(b'@')
    .add(b'[')
    .add(b'\\')
    .add(b']')
    .add(b'^')
    .add(b'|');

/// Every form a secret value may take once formatted: as it is, JSON-escaped, shell-quoted,
/// percent-encoded (as a URL holds it), base64, quoted as a `.env` value, and each line of a
/// multi-line value.
fn renderings(value: &str) -> Vec<String> {
    use base64::Engine;
    let json = serde_json::to_string(value).expect("a string serializes");
    let mut forms = vec![
        value.to_string(),
        json[1..json.len() - 1].to_string(),
        json,
        shlex::try_quote(value)
            .map(|q| q.into_owned())
            .unwrap_or_default(),
        percent_encoding::utf8_percent_encode(value, QUERY).to_string(),
        percent_encoding::utf8_percent_encode(value, PATH).to_string(),
        // A URL's path of a special scheme (http) turns `\` into `/`.
        percent_encoding::utf8_percent_encode(&value.replace('\\', "/"), PATH).to_string(),
        percent_encoding::utf8_percent_encode(value, USERINFO).to_string(),
        percent_encoding::utf8_percent_encode(value, percent_encoding::NON_ALPHANUMERIC)
            .to_string(),
        url::form_urlencoded::byte_serialize(value.as_bytes()).collect(),
        base64::engine::general_purpose::STANDARD.encode(value),
        base64::engine::general_purpose::STANDARD_NO_PAD.encode(value),
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(value),
    ];
    // As an env step writes it into a `.env` file, quoted or not (the quotes' inside is what
    // a line may show).
    let written = crate::env_value::quote(value);
    if written != value {
        forms.push(written[1..written.len() - 1].to_string());
        forms.push(written);
    }
    // Inside a longer value that a `.env` file double-quotes (after `C:\`), a secret it would
    // leave bare or single-quote alone.
    forms.push(crate::env_value::escape_double(value));
    if value.contains('\n') {
        forms.extend(
            value
                .lines()
                .map(str::trim)
                .filter(|l| l.chars().count() >= MIN_LEN)
                .map(str::to_string),
        );
    }
    forms.retain(|f| f.chars().count() >= MIN_LEN.min(value.chars().count()) && !f.is_empty());
    forms
}

impl Secrets {
    /// Replaces every secret in the event's text: field by field, so that the event's
    /// structure (its tag, its names, its step ids and kinds) is never touched.
    pub(crate) fn redact_event(&self, event: &mut Event) {
        let text = |t: &mut String| self.redact_in(t);
        match event {
            Event::RunStarted {
                playbook, phase, ..
            } => {
                text(playbook);
                text(phase);
            }
            Event::StepProgress { line: t, .. }
            | Event::StepSample { sample: t, .. }
            | Event::StepSkipped { reason: t, .. }
            | Event::StepRolledBack { summary: t, .. }
            | Event::StepRollbackFailed { error: t, .. }
            | Event::Warning { message: t } => text(t),
            Event::StepSucceeded {
                summary, figures, ..
            } => {
                text(summary);
                if let Some(figures) = figures {
                    self.redact_json(figures);
                }
            }
            Event::StepFailed { error, .. } => text(error),
            // Undo records that hold a secret are sealed before they become events.
            Event::StepPrepared { .. }
            | Event::StepStarted { .. }
            | Event::ChildStarted { .. }
            | Event::ChildExited { .. }
            | Event::RollbackStarted { .. }
            | Event::RunFinished { .. } => {}
        }
    }

    pub(crate) fn insert(&mut self, name: String, value: String) {
        // An empty value (an optional secret that is not set) has no form to hide.
        for form in renderings(&value) {
            if !self.needles.contains(&form) {
                self.needles.push(form);
            }
        }
        self.needles
            .sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
        self.values.insert(name, value);
    }

    pub(crate) fn values(&self) -> &BTreeMap<String, String> {
        &self.values
    }

    pub(crate) fn contains_secret(&self, text: &str) -> bool {
        self.needles.iter().any(|n| text.contains(n.as_str()))
    }

    /// The secret values that `text` holds in one of their forms (a JSON text holds a value
    /// with a quote or a line break only escaped).
    pub(crate) fn held_in(&self, text: &str) -> Vec<String> {
        self.values
            .values()
            .filter(|v| renderings(v).iter().any(|f| text.contains(f.as_str())))
            .cloned()
            .collect()
    }

    /// `text` with every secret value replaced by [`REDACTED`].
    pub(crate) fn redact(&self, text: &str) -> String {
        let mut out = text.to_string();
        for needle in &self.needles {
            if out.contains(needle.as_str()) {
                out = out.replace(needle.as_str(), REDACTED);
            }
        }
        out
    }

    /// Redacts every string value inside a JSON value; keys (a structure's names) are left as
    /// they are.
    pub(crate) fn redact_json(&self, value: &mut serde_json::Value) {
        use serde_json::Value;
        match value {
            Value::String(s) if self.contains_secret(s) => *s = self.redact(s),
            Value::Array(items) => items.iter_mut().for_each(|v| self.redact_json(v)),
            Value::Object(map) => map.values_mut().for_each(|v| self.redact_json(v)),
            _ => {}
        }
    }

    /// Redacts a text field in place.
    pub(crate) fn redact_in(&self, text: &mut String) {
        if self.contains_secret(text) {
            *text = self.redact(text);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_rendering_of_a_secret_is_redacted() {
        let secret = "S3nt X\"Y$Z\\W%q";
        let pem = "-----BEGIN KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\nAoIBAQC7VJTUt9Us8cKj\n-----END KEY-----";
        let mut s = Secrets::default();
        s.insert("A".into(), secret.into());
        s.insert("P".into(), pem.into());
        use base64::Engine;
        let shown = [
            secret.to_string(),
            serde_json::to_string(secret).unwrap(),
            shlex::try_quote(secret).unwrap().into_owned(),
            url::Url::parse(&format!("http://h/{secret}?token={secret}"))
                .unwrap()
                .to_string(),
            url::Url::parse_with_params("http://h/", [("token", secret)])
                .unwrap()
                .to_string(),
            base64::engine::general_purpose::STANDARD.encode(secret),
            "  MIIEvQIBADANBgkqhkiG9w0BAQEFAASC".to_string(),
        ];
        for text in shown {
            let out = s.redact(&format!("before {text} after"));
            assert!(out.contains(REDACTED), "{text} -> {out}");
            assert!(
                !out.contains("S3nt") && !out.contains("MIIEvQ"),
                "{text} -> {out}"
            );
        }
    }

    #[test]
    fn a_value_held_only_escaped_is_found() {
        let mut s = Secrets::default();
        s.insert("P".into(), "line one\nline two".into());
        s.insert("Q".into(), "say \"hi\" now".into());
        s.insert("R".into(), "not-there-at-all".into());
        let text = serde_json::to_string(&["line one\nline two", "say \"hi\" now"]).unwrap();
        assert_eq!(s.held_in(&text), ["line one\nline two", "say \"hi\" now"]);
    }

    #[test]
    fn redacts_longest_first_and_inside_json() {
        let mut s = Secrets::default();
        s.insert("A".into(), "abc".into());
        s.insert("B".into(), "abcdef".into());
        assert_eq!(s.redact("x abcdef y abc"), "x <redacted> y <redacted>");
        let mut v = serde_json::json!({"k": ["abcdef", {"abc": 1}], "n": 2});
        s.redact_json(&mut v);
        assert_eq!(
            v,
            serde_json::json!({"k": ["<redacted>", {"abc": 1}], "n": 2}),
            "keys are names of the structure, never rewritten"
        );
        assert!(!format!("{s:?}").contains("abc\""));
    }
}
