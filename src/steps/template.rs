//! `template`: render a handlebars template (checked at validate time) into a file, with an
//! optional mode; the default rollback restores the previous content.

use serde::Deserialize;
use toml::Spanned;

use super::{Intent, StepCx, StepError};
use crate::check::Checker;
use crate::steps::Observed;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Raw {
    template: Spanned<String>,
    dest: Spanned<String>,
    mode: Option<Spanned<String>>,
}

#[derive(Debug)]
pub(crate) struct Template {
    pub(crate) template: String,
    pub(crate) dest: String,
    pub(crate) mode: Option<u32>,
    /// The mode of a file the step creates without `mode`: private when it holds a secret.
    pub(crate) new_mode: u32,
    /// The rendered content, secrets included: never shown, only written.
    pub(crate) content: String,
}

impl Template {
    pub(crate) fn validate(raw: Raw, cx: &mut Checker<'_>) -> Option<Self> {
        let dest = cx.file_path(&raw.dest);
        let mode = raw.mode.as_ref().and_then(|m| cx.mode(m));
        let template = cx.text(&raw.template)?;
        let content = cx.render_template_file(&template, raw.template.span())?;
        Some(Template {
            template,
            dest: dest?,
            mode: match raw.mode {
                Some(_) => Some(mode?),
                None => None,
            },
            new_mode: if cx.holds_secret(&content) {
                0o600
            } else {
                0o644
            },
            content,
        })
    }

    pub(crate) fn plan(&self, observed: &Observed) -> Intent {
        let mode = self
            .mode
            .map(|m| format!(" (mode {m:04o})"))
            .unwrap_or_default();
        Intent::writing(
            format!("render `{}` to `{}`{mode}", self.template, self.dest),
            observed,
            &self.dest,
            &self.content,
        )
    }

    pub(crate) fn apply(&self, cx: &StepCx<'_>) -> Result<String, StepError> {
        let wrote = crate::fs::replace(
            &cx.resolve(&self.dest),
            self.content.as_bytes(),
            self.mode,
            self.new_mode,
        )
        .map_err(StepError::io(format!("could not write `{}`", self.dest)))?;
        if !wrote {
            return Ok(format!("`{}` already up to date", self.dest));
        }
        Ok(format!(
            "wrote `{}` ({} bytes)",
            self.dest,
            self.content.len()
        ))
    }
}
