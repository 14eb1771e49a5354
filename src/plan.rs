//! The plan: a pure value computed from a playbook and what was observed of the files it
//! touches. `runner plan` prints it; `runner apply` executes it, and each step first checks
//! that what the plan observed for it still holds (its `expects`), refusing if not.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::context::Lent;
use crate::error::{Error, Result};
use crate::fingerprint::{Input, InputRole, sha256};
use crate::playbook::{OnFailure, Playbook};
use crate::steps::{Observed, Rollback};

/// The plan file format; older or newer files are refused with a clear message.
/// Version 2 added each step's `expects`.
pub(crate) const FORMAT: &str = "runner-plan";
pub(crate) const VERSION: u32 = 2;

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub(crate) struct Plan {
    pub(crate) format: String,
    pub(crate) version: u32,
    pub(crate) playbook: Header,
    /// Every file the plan depends on, with its checksum (`null`: absent).
    pub(crate) inputs: Vec<Input>,
    pub(crate) steps: Vec<PlannedStep>,
    /// How many steps change something.
    pub(crate) changes: usize,
    /// SHA-256 of everything above: two plans are the same plan when their hashes are equal.
    pub(crate) hash: String,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub(crate) struct Header {
    pub(crate) path: String,
    pub(crate) name: String,
    pub(crate) phase: String,
    pub(crate) description: Option<String>,
    pub(crate) on_failure: OnFailure,
    /// The `--var` values the plan was made with; `apply plan.json` uses them again.
    pub(crate) vars: BTreeMap<String, String>,
    /// Whether the live state (SQL histories) was read; `apply plan.json` does the same.
    pub(crate) refreshed: bool,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub(crate) struct PlannedStep {
    pub(crate) id: String,
    pub(crate) kind: String,
    pub(crate) description: Option<String>,
    /// What the step will do, secrets redacted.
    pub(crate) action: String,
    pub(crate) changes: bool,
    pub(crate) rollback: String,
    /// The playbook says this step cannot be undone.
    pub(crate) irreversible: bool,
    pub(crate) timeout: Option<String>,
    pub(crate) retries: u32,
    /// A unified diff against the current file, secrets redacted.
    pub(crate) diff: Option<String>,
    /// Why this step must not run as things are: the plan is refused (exit 3).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) refusal: Option<String>,
    /// What must still hold when the step starts: the files it reads and writes as the plan
    /// saw them (after the steps before it), and the SQL history it was planned against.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(crate) expects: Vec<Input>,
    /// A compose step's services as runner will create them, YAML, secrets redacted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) compose: Option<String>,
}

/// Reads what the plan depends on: the only I/O of planning. With `refresh`, also the live
/// state of databases (an unreachable one is noted in the plan, not an error).
pub(crate) async fn observe(playbook: &Playbook, refresh: bool, lent: &Lent) -> Result<Observed> {
    let mut observed = Observed {
        refreshed: refresh,
        ..Observed::default()
    };
    if refresh {
        for step in &playbook.steps {
            if let crate::steps::Action::Sql(sql) = &step.action {
                observed
                    .sql
                    .insert(step.id.clone(), sql.history(lent).await);
            } else if let crate::steps::Action::ComposeUp(up) = &step.action {
                let live = up.observe(&playbook.workdir, lent).await;
                observed.compose.insert(step.id.clone(), live);
            }
        }
    }
    for path in playbook
        .steps
        .iter()
        .flat_map(|s| s.action.facts().observes)
    {
        if !observed.files.contains_key(path) {
            let content = crate::fs::read_optional(&playbook.workdir.join(path))
                .map_err(Error::io(format!("cannot read `{path}`")))?;
            observed.files.insert(path.to_string(), content);
        }
    }
    Ok(observed)
}

/// The plan for a playbook given what was observed. Pure: same inputs, same plan, byte for byte.
pub(crate) fn plan(playbook: &Playbook, observed: &Observed) -> Plan {
    let redact = |s: &str| playbook.secrets.redact(s);
    // Each step is planned against the files as the steps before it leave them.
    let mut state = observed.clone();
    let steps: Vec<PlannedStep> = playbook
        .steps
        .iter()
        .map(|step| {
            let mut intent =
                step.action
                    .plan(&step.id, &state, &playbook.workdir, &playbook.secrets);
            let expects = expectations(playbook, step, &state);
            if let Some((path, content)) = intent.writes.take() {
                state.files.insert(path, Some(content));
            }
            PlannedStep {
                id: step.id.clone(),
                kind: step.action.kind().name().to_string(),
                description: step.description.as_deref().map(redact),
                action: redact(&intent.action),
                changes: intent.changes,
                rollback: redact(&step.rollback_text(&playbook.secrets)),
                irreversible: matches!(step.rollback, Rollback::None { .. }),
                timeout: step
                    .timeout
                    .map(|t| humantime::format_duration(t).to_string()),
                retries: step.retries,
                diff: intent.diff.as_deref().map(redact),
                refusal: intent.refusal.as_deref().map(redact),
                expects,
                compose: intent.compose.as_deref().map(redact),
            }
        })
        .collect();
    let mut inputs = playbook.inputs.clone();
    inputs.extend(
        observed
            .files
            .iter()
            .map(|(path, content)| Input::new(path, InputRole::Target, content.as_deref())),
    );
    let mut plan = Plan {
        format: FORMAT.into(),
        version: VERSION,
        playbook: Header {
            path: playbook.path.clone(),
            name: playbook.name.clone(),
            phase: playbook.phase.clone(),
            description: playbook.description.clone(),
            on_failure: playbook.on_failure,
            vars: playbook.overrides.clone(),
            refreshed: observed.refreshed,
        },
        inputs,
        changes: steps.iter().filter(|s| s.changes).count(),
        steps,
        hash: String::new(),
    };
    plan.hash = plan.compute_hash();
    plan
}

/// What a step depends on as the plan sees it just before the step: the files it reads (as
/// loaded), the files it touches (as the steps before it leave them), its SQL history.
fn expectations(playbook: &Playbook, step: &crate::steps::Step, state: &Observed) -> Vec<Input> {
    let loaded = |path: &str| {
        playbook
            .inputs
            .iter()
            .find(|i| i.role == InputRole::File && i.path == path)
            .and_then(|i| i.sha256.clone())
    };
    let facts = step.action.facts();
    let mut expects: Vec<Input> = facts
        .reads
        .into_iter()
        .map(|path| Input {
            path: path.to_string(),
            role: InputRole::File,
            sha256: loaded(path),
        })
        .collect();
    for path in facts.observes {
        if !expects.iter().any(|e| e.path == path) {
            expects.push(Input::new(path, InputRole::Target, state.current(path)));
        }
    }
    if let crate::steps::Action::Sql(sql) = &step.action
        && let Some(Ok(rows)) = state.sql_history(&step.id)
    {
        expects.push(sql.expectation(rows));
    }
    expects
}

/// Each file input whose content is no longer what the plan saw, in words naming the file and
/// both checksums. `Playbook` paths are as given (relative to the current directory); the
/// others are resolved against `workdir`. History inputs are the engine's to check.
pub(crate) fn drifted(inputs: &[Input], workdir: &Path) -> Vec<String> {
    inputs
        .iter()
        .filter(|i| i.role != InputRole::History)
        .filter_map(|input| {
            let path = match input.role {
                InputRole::Playbook => Path::new(&input.path).to_path_buf(),
                _ => workdir.join(&input.path),
            };
            let now = match crate::fs::read_optional(&path) {
                Ok(bytes) => bytes.as_deref().map(sha256),
                Err(e) => return Some(format!("`{}` cannot be read: {e}", input.path)),
            };
            (now != input.sha256)
                .then(|| changed(&input.path, input.sha256.as_deref(), now.as_deref()))
        })
        .collect()
}

/// "`path` changed since the plan was made (sha256 ab12.. -> cd34..)".
fn changed(what: &str, was: Option<&str>, now: Option<&str>) -> String {
    let short = |c: Option<&str>| {
        c.map_or("absent".to_string(), |c| {
            format!("sha256 {}..", &c[..12.min(c.len())])
        })
    };
    format!(
        "`{what}` changed since the plan was made ({} -> {})",
        short(was),
        short(now)
    )
}

impl Plan {
    fn compute_hash(&self) -> String {
        let mut unhashed = self.clone();
        unhashed.hash.clear();
        sha256(&serde_json::to_vec(&unhashed).expect("a plan serializes"))
    }

    /// The plan as pretty JSON, ending with a newline.
    pub(crate) fn to_json(&self) -> String {
        let mut out = serde_json::to_string_pretty(self).expect("a plan serializes");
        out.push('\n');
        out
    }

    /// Reads a plan saved with `--out`, refusing other formats and versions.
    pub(crate) fn read(path: &Path) -> Result<Plan> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| Error::Usage(format!("cannot read plan `{}`: {e}", path.display())))?;
        let value: serde_json::Value = serde_json::from_str(&text)
            .map_err(|e| Error::Usage(format!("`{}` is not a plan file: {e}", path.display())))?;
        if value.get("format").and_then(|f| f.as_str()) != Some(FORMAT) {
            return Err(Error::Usage(format!(
                "`{}` is not a runner plan file",
                path.display()
            )));
        }
        let version = value.get("version").and_then(|v| v.as_u64());
        if version != Some(u64::from(VERSION)) {
            return Err(Error::Usage(format!(
                "plan `{}` has format version {}, this runner reads version {VERSION} only; make the plan again with this runner",
                path.display(),
                version.map_or("?".into(), |v| v.to_string())
            )));
        }
        let plan: Plan = serde_json::from_value(value)
            .map_err(|e| Error::Usage(format!("plan `{}` is damaged: {e}", path.display())))?;
        if plan.hash != plan.compute_hash() {
            return Err(Error::refused(
                format!(
                    "plan `{}` was edited after it was made (its hash does not match)",
                    path.display()
                ),
                Some("make the plan again and review it".to_string()),
            ));
        }
        Ok(plan)
    }

    /// Why `fresh` is not the plan that was saved, in one line per difference.
    pub(crate) fn differences(&self, fresh: &Plan) -> Vec<String> {
        let mut out = Vec::new();
        let old: BTreeMap<&str, &Input> =
            self.inputs.iter().map(|i| (i.path.as_str(), i)).collect();
        let new: BTreeMap<&str, &Input> =
            fresh.inputs.iter().map(|i| (i.path.as_str(), i)).collect();
        for (path, input) in &old {
            match new.get(path) {
                Some(now) if now.sha256 == input.sha256 => {}
                Some(now) if now.sha256.is_none() => out.push(format!("`{path}` was removed")),
                Some(_) if input.sha256.is_none() => out.push(format!("`{path}` was created")),
                Some(_) => out.push(format!("`{path}` changed")),
                None => out.push(format!("`{path}` is no longer used")),
            }
        }
        for path in new.keys().filter(|p| !old.contains_key(*p)) {
            out.push(format!("`{path}` is now used"));
        }
        if out.is_empty() && self.hash != fresh.hash {
            for (a, b) in self.steps.iter().zip(&fresh.steps) {
                if a != b {
                    out.push(format!("step `{}` would now do something else", a.id));
                }
            }
            if self.steps.len() != fresh.steps.len() {
                out.push("the number of steps changed".into());
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn each_step_expects_its_files_as_the_steps_before_it_leave_them() {
        let dir = tempfile::tempdir().unwrap();
        let at = |name: &str| dir.path().join(name);
        std::fs::write(at("one.hbs"), "first ✓\n").unwrap();
        std::fs::write(at("two.hbs"), "second\n").unwrap();
        std::fs::write(
            at("pb.toml"),
            "[playbook]\nname = \"p\"\nworkdir = \".\"\n\n\
             [[steps]]\nid = \"a\"\nkind = \"template\"\ntemplate = \"one.hbs\"\ndest = \"out.conf\"\n\n\
             [[steps]]\nid = \"b\"\nkind = \"template\"\ntemplate = \"two.hbs\"\ndest = \"out.conf\"\n",
        )
        .unwrap();
        let playbook = crate::playbook::load(&at("pb.toml"), &BTreeMap::new(), None).unwrap();
        let plan = plan(
            &playbook,
            &observe(&playbook, false, &crate::context::Lent::default())
                .await
                .unwrap(),
        );
        let expects = |i: usize| plan.steps[i].expects.clone();
        assert_eq!(
            expects(0),
            vec![
                Input::new("one.hbs", InputRole::File, Some("first ✓\n".as_bytes())),
                Input::new("out.conf", InputRole::Target, None),
            ]
        );
        // Step b finds what step a writes, not what is there now.
        assert_eq!(
            expects(1)[1],
            Input::new("out.conf", InputRole::Target, Some("first ✓\n".as_bytes()))
        );
        assert!(drifted(&expects(0), &playbook.workdir).is_empty());
        std::fs::write(at("out.conf"), "someone's\n").unwrap();
        assert_eq!(
            drifted(&expects(0), &playbook.workdir),
            vec![format!(
                "`out.conf` changed since the plan was made (absent -> sha256 {}..)",
                &sha256(b"someone's\n")[..12]
            )]
        );
        std::fs::remove_file(at("two.hbs")).unwrap();
        assert_eq!(
            drifted(&expects(1), &playbook.workdir)[0],
            format!(
                "`two.hbs` changed since the plan was made (sha256 {}.. -> absent)",
                &sha256(b"second\n")[..12]
            )
        );
    }
}
