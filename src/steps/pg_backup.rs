//! `pg_backup`: a logical dump (pg_dump, custom format) of a database or some of its schemas
//! into the run's backup dir, before a risky step; rollback restores it with pg_restore.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use toml::Spanned;

use super::exec::Command;
use super::{Done, Intent, StepCx, StepError, Undo};
use crate::check::Checker;
use crate::db::postgres::Target;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Raw {
    url: Spanned<String>,
    /// Only these schemas (default: the whole database).
    schemas: Option<Vec<String>>,
}

#[derive(Debug)]
pub(crate) struct PgBackup {
    url: String,
    target: Target,
    schemas: Vec<String>,
}

/// A dump and where it goes back.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub(crate) struct Dump {
    url: String,
    file: PathBuf,
}

impl PgBackup {
    pub(crate) fn validate(raw: Raw, cx: &mut Checker<'_>) -> Option<Self> {
        let (url, target) = cx.url(&raw.url, Target::parse)?;
        Some(PgBackup {
            url,
            target,
            schemas: raw.schemas.unwrap_or_default(),
        })
    }

    pub(crate) fn plan(&self) -> Intent {
        let what = if self.schemas.is_empty() {
            "the database".to_string()
        } else {
            format!("schema(s) {}", self.schemas.join(", "))
        };
        Intent::new(
            format!(
                "dump {what} of {} into the run's backup dir",
                self.target.display
            ),
            false,
        )
    }

    pub(crate) async fn apply(&self, cx: &StepCx<'_>) -> Result<Done, StepError> {
        // Fail with the connection's own words (and its retries) before pg_dump would.
        drop(
            cx.lent
                .postgres(&self.target, Duration::from_secs(30))
                .await?,
        );
        crate::fs::create_private_dir(&cx.backup_dir)
            .map_err(StepError::io("cannot create the backup dir".into()))?;
        let file = cx.backup_dir.join("dump.pgcustom");
        // pg_dump truncates the file and keeps its mode: private.
        crate::fs::create_private_file(&file)
            .map_err(StepError::io(format!("cannot create `{}`", file.display())))?;
        let mut argv = vec![
            "pg_dump".to_string(),
            "--format=custom".into(),
            "--verbose".into(),
            format!("--file={}", file.display()),
        ];
        argv.extend(self.schemas.iter().map(|s| format!("--schema={s}")));
        libpq_command(argv, &self.url)?.run(cx).await?;
        let size = std::fs::metadata(&file).map(|m| m.len()).unwrap_or(0);
        Ok(Done {
            summary: format!("dumped {} ({size} bytes)", self.target.display),
            undo: Some(Undo::PgRestore(Dump {
                url: self.url.clone(),
                file,
            })),
            figures: None,
        })
    }
}

impl Dump {
    pub(crate) async fn restore(&self, cx: &StepCx<'_>) -> Result<String, StepError> {
        let argv = vec![
            "pg_restore".to_string(),
            "--clean".into(),
            "--if-exists".into(),
            "--single-transaction".into(),
            "--exit-on-error".into(),
            self.file.display().to_string(),
        ];
        libpq_command(argv, &self.url)?.run(cx).await?;
        Ok(format!("restored {}", self.file.display()))
    }
}

/// A libpq tool's command line for `url`: the password goes through PGPASSWORD, never argv.
fn libpq_command(mut argv: Vec<String>, url: &str) -> Result<Command, StepError> {
    let mut parsed =
        url::Url::parse(url).map_err(|e| StepError::from(format!("not a PostgreSQL URL: {e}")))?;
    let mut env = BTreeMap::new();
    if let Some(password) = parsed.password() {
        let password = percent_encoding::percent_decode_str(password)
            .decode_utf8_lossy()
            .into_owned();
        env.insert("PGPASSWORD".to_string(), password);
        let _ = parsed.set_password(None);
    }
    argv.push(format!("--dbname={parsed}"));
    Ok(Command {
        argv,
        dir: None,
        env,
    })
}
