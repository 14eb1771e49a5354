//! Fingerprints: the checksums a plan takes of what it depends on, and the diffs it shows.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub(crate) struct Input {
    pub(crate) path: String,
    pub(crate) role: InputRole,
    pub(crate) sha256: Option<String>,
}

#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "snake_case")]
pub(crate) enum InputRole {
    Playbook,
    /// A file the playbook reads (a template, a SQL file).
    File,
    /// A file a step writes (or saves).
    Target,
    /// The rows of a SQL history table for one step's files (`path` names the table).
    History,
}

impl Input {
    pub(crate) fn new(path: &str, role: InputRole, bytes: Option<&[u8]>) -> Self {
        Input {
            path: path.to_string(),
            role,
            sha256: bytes.map(sha256),
        }
    }
}

/// The checksum inputs are fingerprinted with.
pub(crate) fn sha256(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// A unified diff of a file's current content (`None`: absent) against its new content.
pub(crate) fn diff(path: &str, current: Option<&[u8]>, new: &[u8]) -> String {
    let (Ok(old), Ok(new)) = (
        std::str::from_utf8(current.unwrap_or_default()),
        std::str::from_utf8(new),
    ) else {
        return format!("binary content of `{path}` changes\n");
    };
    let from = if current.is_some() {
        format!("a/{path}")
    } else {
        "/dev/null".to_string()
    };
    similar::TextDiff::from_lines(old, new)
        .unified_diff()
        .context_radius(3)
        .header(&from, &format!("b/{path}"))
        .to_string()
}
