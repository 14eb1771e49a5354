//! What planning read of the live system, as each kind's `plan` is given it.

use std::collections::BTreeMap;

use super::compose::Live;
use super::sql::Row;

/// What planning read of the live system: the files the steps touch (`None`: absent) and,
/// with `--refresh`, the SQL history of each `sql` step and the containers of each
/// `compose_up` step's project.
#[derive(Clone, Debug, Default)]
pub(crate) struct Observed {
    pub(crate) refreshed: bool,
    pub(crate) files: BTreeMap<String, Option<Vec<u8>>>,
    pub(crate) sql: BTreeMap<String, Result<Vec<Row>, String>>,
    pub(crate) compose: BTreeMap<String, Result<Live, String>>,
}

impl Observed {
    pub(crate) fn current(&self, path: &str) -> Option<&[u8]> {
        self.files.get(path).and_then(|c| c.as_deref())
    }

    pub(crate) fn sql_history(&self, step: &str) -> Option<&Result<Vec<Row>, String>> {
        self.sql.get(step)
    }

    pub(crate) fn compose(&self, step: &str) -> Option<&Result<Live, String>> {
        self.compose.get(step)
    }
}
