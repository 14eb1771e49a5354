//! `backup`: save files into the run's backup dir before anything changes them. A path that
//! does not exist is recorded as absent, so rollback removes whatever appears there later.

use serde::Deserialize;
use toml::Spanned;

use super::{Intent, StepCx, StepError};
use crate::check::Checker;
use crate::steps::Observed;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Raw {
    paths: Vec<Spanned<String>>,
}

#[derive(Debug)]
pub(crate) struct Backup {
    pub(crate) paths: Vec<String>,
}

impl Backup {
    pub(crate) fn validate(raw: Raw, cx: &mut Checker<'_>) -> Option<Self> {
        let paths: Vec<Option<String>> = raw.paths.iter().map(|p| cx.file_path(p)).collect();
        Some(Backup {
            paths: paths.into_iter().collect::<Option<_>>()?,
        })
    }

    pub(crate) fn plan(&self, observed: &Observed) -> Intent {
        let listed: Vec<String> = self
            .paths
            .iter()
            .map(|p| match observed.current(p) {
                Some(_) => format!("`{p}`"),
                None => format!("`{p}` (absent)"),
            })
            .collect();
        Intent {
            action: format!("save {} into the run's backup dir", listed.join(", ")),
            changes: false,
            diff: None,
            refusal: None,
            writes: None,
            compose: None,
        }
    }

    /// The copies were made by `prepare`; this reports what they hold.
    pub(crate) fn apply(&self, cx: &StepCx<'_>) -> Result<String, StepError> {
        let absent = self
            .paths
            .iter()
            .filter(|p| !cx.resolve(p).exists())
            .count();
        Ok(format!(
            "saved {} file(s), {absent} absent",
            self.paths.len() - absent
        ))
    }
}
