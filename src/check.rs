//! The field checker: what a step kind (and the `[notify]` section, a migration) is lent to
//! check and render its fields while the playbook is validated; it collects every problem.

use std::collections::HashMap;
use std::ops::Range;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use crate::diagnostic::{Problem, Source};
use crate::fingerprint::{Input, InputRole};
use crate::secrets::Secrets;
use crate::template::Renderer;

/// A scalar TOML value given where text is expected (`ENABLE_POSTGRES = false`).
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(crate) enum Scalar {
    Text(String),
    Integer(i64),
    Float(f64),
    Bool(bool),
}

/// Lends the kinds what they need to check and render their fields, and collects problems.
pub(crate) struct Checker<'a> {
    pub(crate) source: &'a Source,
    pub(crate) renderer: &'a Renderer,
    pub(crate) secrets: &'a Secrets,
    pub(crate) workdir: &'a Path,
    pub(crate) problems: Vec<Problem>,
    pub(crate) files: HashMap<String, Option<Arc<str>>>,
    pub(crate) inputs: Vec<Input>,
    /// The `[notify]` service name, when the playbook has that section.
    pub(crate) notify_service: Option<String>,
    /// Whether the `[notify]` section has a webhook.
    pub(crate) alerts_on: bool,
    /// What the valid steps checked so far leave in the files they write (`None`: no file).
    pub(crate) planned: HashMap<String, Option<String>>,
    /// What a step found that is not wrong but worth saying (compose keys runner ignores).
    pub(crate) warnings: Vec<String>,
}

impl Checker<'_> {
    pub(crate) fn problem(
        &mut self,
        span: Range<usize>,
        message: impl Into<String>,
        label: impl Into<String>,
    ) {
        self.problems
            .push(self.source.problem(span, message, label));
    }

    /// A problem that points into another file (a compose file the playbook names).
    pub(crate) fn push(&mut self, problem: Problem) {
        self.problems.push(problem);
    }

    pub(crate) fn warn(&mut self, warning: String) {
        self.warnings.push(warning);
    }

    /// `text` with every secret value replaced.
    pub(crate) fn redact(&self, text: &str) -> String {
        self.secrets.redact(text)
    }

    /// What the file at `path` holds when the step being checked runs: what the earlier steps
    /// leave there (see `planned`), else the file as it is now; None when there is nothing there
    /// yet.
    pub(crate) fn planned_file(&self, path: &str) -> Option<String> {
        if let Some(planned) = self.planned.get(path) {
            return planned.clone();
        }
        let full = self.workdir.join(path);
        // Only a regular file: reading a FIFO would wait forever.
        let regular = std::fs::metadata(&full).is_ok_and(|m| m.is_file());
        regular
            .then(|| std::fs::read_to_string(&full).ok())
            .flatten()
    }

    /// A templated string field, rendered.
    pub(crate) fn text(&mut self, field: &Spanned<String>) -> Option<String> {
        self.renderer
            .render_field(self.source, field.span(), field.get_ref())
            .map_err(|p| self.problems.push(p))
            .ok()
    }

    /// A templated URL field, rendered and parsed by `parse`; returns the URL and its parse.
    pub(crate) fn url<T>(
        &mut self,
        field: &Spanned<String>,
        parse: fn(&str) -> Result<T, String>,
    ) -> Option<(String, T)> {
        let url = self.text(field)?;
        match parse(&url) {
            Ok(target) => Some((url, target)),
            Err(why) => {
                self.problem(field.span(), why, "this URL");
                None
            }
        }
    }

    pub(crate) fn scalar(&mut self, field: &Spanned<Scalar>) -> Option<String> {
        match field.get_ref() {
            Scalar::Text(t) => self.text(&Spanned::new(field.span(), t.clone())),
            Scalar::Integer(i) => Some(i.to_string()),
            Scalar::Float(f) => Some(f.to_string()),
            Scalar::Bool(b) => Some(b.to_string()),
        }
    }

    /// A templated path to a file runner reads or writes: not empty, and, where something is
    /// there already, a regular file (reading a FIFO would wait forever; a directory or a
    /// device is never what a step means).
    pub(crate) fn file_path(&mut self, field: &Spanned<String>) -> Option<String> {
        let path = self.text(field)?;
        if path.trim().is_empty() {
            self.problem(field.span(), "the path is empty", "name a file");
            return None;
        }
        self.no_secret_in_path(&path, field.span())?;
        match crate::fs::special(&self.workdir.join(&path)) {
            None => Some(path),
            Some(what) => {
                self.problem(
                    field.span(),
                    format!("`{path}` is {what}, not a regular file"),
                    "runner reads and writes regular files only",
                );
                None
            }
        }
    }

    /// Refuses a path rendered from a secret: paths are shown in plans and kept in journals.
    fn no_secret_in_path(&mut self, path: &str, span: Range<usize>) -> Option<()> {
        if !self.holds_secret(path) {
            return Some(());
        }
        self.problem(
            span,
            "the path holds a secret",
            "paths are shown in plans and kept in journals and saved plans: name the file without a secret",
        );
        None
    }

    /// Whether `text` holds a secret value (a file of it is then created private).
    pub(crate) fn holds_secret(&self, text: &str) -> bool {
        self.secrets.contains_secret(text)
    }

    /// A file mode written in octal, such as "0600".
    pub(crate) fn mode(&mut self, field: &Spanned<String>) -> Option<u32> {
        match u32::from_str_radix(field.get_ref(), 8) {
            Ok(mode) if mode <= 0o7777 => Some(mode),
            _ => {
                self.problem(
                    field.span(),
                    format!("`{}` is not a file mode", field.get_ref()),
                    "write it in octal, like \"0600\"",
                );
                None
            }
        }
    }

    /// A templated duration field, rendered and parsed.
    pub(crate) fn duration(&mut self, field: &Spanned<String>) -> Option<Duration> {
        let text = self.text(field)?;
        humantime::parse_duration(&text)
            .map_err(|e| {
                self.problem(
                    field.span(),
                    format!("`{text}` is not a duration: {e}"),
                    "write it like \"500ms\", \"2s\" or \"5m\"",
                )
            })
            .ok()
    }

    /// A regular expression field.
    pub(crate) fn regex(&mut self, field: &Spanned<String>) -> Option<regex::Regex> {
        regex::Regex::new(field.get_ref())
            .map_err(|e| {
                self.problem(
                    field.span(),
                    format!("not a regular expression: {e}"),
                    "this pattern",
                )
            })
            .ok()
    }

    /// What an inconclusive gate does: `"pause"` (true) or `"rollback"` (false).
    pub(crate) fn pause_or_rollback(
        &mut self,
        field: &Option<Spanned<String>>,
        pause_by_default: bool,
    ) -> Option<bool> {
        match field {
            None => Some(pause_by_default),
            Some(w) if w.get_ref() == "pause" => Some(true),
            Some(w) if w.get_ref() == "rollback" => Some(false),
            Some(w) => {
                self.problem(
                    w.span(),
                    format!("`{}` is not pause or rollback", w.get_ref()),
                    "pause | rollback",
                );
                None
            }
        }
    }

    /// The service name of the playbook's `[notify]` section, if it has one.
    pub(crate) fn notify_service(&self) -> Option<&str> {
        self.notify_service.as_deref()
    }

    /// Whether the playbook's `[notify]` section delivers alerts.
    pub(crate) fn alerts_on(&self) -> bool {
        self.alerts_on
    }

    pub(crate) fn workdir(&self) -> &Path {
        self.workdir
    }

    /// Reads (once) a file the playbook depends on, fingerprinted for the plan; a problem
    /// points at `span` if it cannot be read.
    pub(crate) fn read_input(&mut self, path: &str, span: Range<usize>) -> Option<Arc<str>> {
        if !self.files.contains_key(path) {
            if self.no_secret_in_path(path, span.clone()).is_none() {
                self.files.insert(path.to_string(), None);
                return None;
            }
            if let Some(what) = crate::fs::special(&self.workdir.join(path)) {
                self.problem(
                    span,
                    format!("`{path}` is {what}, not a regular file"),
                    "runner reads regular files only",
                );
                self.files.insert(path.to_string(), None);
                return None;
            }
            let loaded = match std::fs::read_to_string(self.workdir.join(path)) {
                Ok(text) => {
                    self.inputs
                        .push(Input::new(path, InputRole::File, Some(text.as_bytes())));
                    Some(Arc::from(text))
                }
                Err(e) => {
                    self.problem(
                        span,
                        format!("file `{path}` cannot be read: {e}"),
                        "this file",
                    );
                    None
                }
            };
            self.files.insert(path.to_string(), loaded);
        }
        self.files.get(path)?.clone()
    }

    /// Renders a template file; problems point into the template.
    pub(crate) fn render_template_file(
        &mut self,
        path: &str,
        span: Range<usize>,
    ) -> Option<String> {
        let text = self.read_input(path, span)?;
        let source = Source::new(path, text);
        self.renderer
            .render_file(&source, &format!("template `{path}`"))
            .map_err(|p| self.problems.push(p))
            .ok()
    }

    /// The files a templated glob pattern matches, relative to the workdir, in name order.
    pub(crate) fn glob(&mut self, pattern: &Spanned<String>) -> Option<Vec<String>> {
        let text = self.text(pattern)?;
        let full = self.workdir.join(&text);
        let matches: Vec<String> = match glob::glob(&full.to_string_lossy()) {
            Ok(paths) => paths
                .filter_map(Result::ok)
                .filter(|p| p.is_file())
                .map(|p| {
                    // Relative to the workdir when inside it; a path outside stays absolute.
                    p.strip_prefix(self.workdir)
                        .unwrap_or(&p)
                        .to_string_lossy()
                        .into_owned()
                })
                .collect(),
            Err(e) => {
                self.problem(
                    pattern.span(),
                    format!("`{text}` is not a valid pattern: {e}"),
                    "this pattern",
                );
                return None;
            }
        };
        if matches.is_empty() {
            self.problem(
                pattern.span(),
                format!("no file matches `{text}`"),
                "this pattern",
            );
            return None;
        }
        Some(matches)
    }

    /// Whether `program` can be started: on PATH, or a file relative to `dir` or the workdir.
    pub(crate) fn program_exists(&self, program: &str, dir: Option<&str>) -> bool {
        let cwd = dir
            .map(|d| self.workdir.join(d))
            .unwrap_or_else(|| self.workdir.to_path_buf());
        which::which_in(program, std::env::var_os("PATH"), cwd).is_ok()
    }
}
