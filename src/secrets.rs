//! Secret values: resolved once from the environment or an env file, then kept out of every
//! output (plans, events, journals, logs) by redaction.

use std::collections::BTreeMap;
use std::fmt;

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

impl Secrets {
    pub(crate) fn insert(&mut self, name: String, value: String) {
        if !self.needles.contains(&value) {
            self.needles.push(value.clone());
            self.needles
                .sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
        }
        self.values.insert(name, value);
    }

    pub(crate) fn values(&self) -> &BTreeMap<String, String> {
        &self.values
    }

    pub(crate) fn contains_secret(&self, text: &str) -> bool {
        self.needles.iter().any(|n| text.contains(n.as_str()))
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

    /// Redacts every string inside a JSON value, keys included.
    pub(crate) fn redact_json(&self, value: &mut serde_json::Value) {
        use serde_json::Value;
        match value {
            Value::String(s) if self.contains_secret(s) => *s = self.redact(s),
            Value::Array(items) => items.iter_mut().for_each(|v| self.redact_json(v)),
            Value::Object(map) => {
                let entries = std::mem::take(map);
                for (k, mut v) in entries {
                    self.redact_json(&mut v);
                    map.insert(self.redact(&k), v);
                }
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
            serde_json::json!({"k": ["<redacted>", {"<redacted>": 1}], "n": 2})
        );
        assert!(!format!("{s:?}").contains("abc\""));
    }
}
