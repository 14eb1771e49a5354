//! Problems found in a playbook or template, each pointing at its place in the source.

use std::ops::Range;
use std::sync::Arc;

use miette::{Diagnostic, NamedSource, SourceSpan};

/// A source file problems can point into.
#[derive(Clone, Debug)]
pub(crate) struct Source {
    name: String,
    text: Arc<str>,
}

impl Source {
    pub(crate) fn new(name: impl Into<String>, text: impl Into<Arc<str>>) -> Self {
        Source {
            name: name.into(),
            text: text.into(),
        }
    }

    pub(crate) fn text(&self) -> &str {
        &self.text
    }

    /// A problem at `span` of this source.
    pub(crate) fn problem(
        &self,
        span: Range<usize>,
        message: impl Into<String>,
        label: impl Into<String>,
    ) -> Problem {
        Problem {
            message: message.into(),
            label: label.into(),
            span: Some(span.into()),
            src: Some(NamedSource::new(self.name.clone(), self.text.clone())),
            help: None,
        }
    }

    /// The byte offset of a 1-based line and column, clamped to the text.
    pub(crate) fn offset(&self, line: usize, column: usize) -> usize {
        let start: usize = self
            .text
            .split_inclusive('\n')
            .take(line.saturating_sub(1))
            .map(str::len)
            .sum();
        (start + column.saturating_sub(1)).min(self.text.len())
    }
}

/// One thing wrong, with where it is when that is known.
#[derive(Debug, thiserror::Error, Diagnostic)]
#[error("{message}")]
pub(crate) struct Problem {
    message: String,
    label: String,
    #[label("{label}")]
    span: Option<SourceSpan>,
    #[source_code]
    src: Option<NamedSource<Arc<str>>>,
    #[help]
    help: Option<String>,
}

impl Problem {
    /// A problem with no place in a source file (e.g. in a command-line flag).
    pub(crate) fn bare(message: impl Into<String>) -> Self {
        Problem {
            message: message.into(),
            label: String::new(),
            span: None,
            src: None,
            help: None,
        }
    }

    pub(crate) fn with_help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }

    #[cfg(test)]
    pub(crate) fn message(&self) -> &str {
        &self.message
    }
}

/// Every problem found in one playbook, reported together.
#[derive(Debug, thiserror::Error, Diagnostic)]
#[error("{} in `{path}`", count(.problems.len()))]
#[diagnostic(
    code(runner::invalid),
    help("nothing was executed; fix the problems above and run again")
)]
pub(crate) struct Invalid {
    path: String,
    #[related]
    problems: Vec<Problem>,
}

impl Invalid {
    pub(crate) fn new(path: impl Into<String>, problems: Vec<Problem>) -> Self {
        Invalid {
            path: path.into(),
            problems,
        }
    }
}

fn count(n: usize) -> String {
    if n == 1 {
        "1 problem".to_string()
    } else {
        format!("{n} problems")
    }
}
