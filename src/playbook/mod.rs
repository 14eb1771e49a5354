//! Playbooks: load the TOML, validate it into typed steps, report every problem at once.

mod model;
mod raw;
mod validate;

use std::collections::BTreeMap;
use std::path::Path;

pub(crate) use model::{OnFailure, Playbook};

use crate::diagnostic::{Invalid, Source};
use crate::error::{Error, Result};
use crate::template::RunIdentity;

/// Reads and validates a playbook. `run` is the identity templates see (`None` when planning).
pub(crate) fn load(
    path: &Path,
    overrides: &BTreeMap<String, String>,
    run: Option<&RunIdentity>,
) -> Result<Playbook> {
    let display = path.display().to_string();
    let text = std::fs::read_to_string(path)
        .map_err(|e| Error::Usage(format!("cannot read playbook `{display}`: {e}")))?;
    let source = Source::new(display.clone(), text);
    let document = raw::parse(&source).map_err(|problems| Invalid::new(&display, problems))?;
    validate::validate(path, &source, document, overrides, run)
        .map_err(|problems| Invalid::new(&display, problems).into())
}
