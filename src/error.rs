//! The exit-code table and the errors that end a command.

use miette::Diagnostic;

/// Every exit code `runner` uses, named once (see the README's table).
pub(crate) mod exit_code {
    pub(crate) const SUCCESS: u8 = 0;
    pub(crate) const INTERNAL: u8 = 1;
    pub(crate) const INVALID: u8 = 2;
    pub(crate) const REFUSED: u8 = 3;
    pub(crate) const ROLLED_BACK: u8 = 4;
    pub(crate) const ROLLBACK_FAILED: u8 = 5;
    pub(crate) const CHANGES: u8 = 6;
    pub(crate) const PAUSED: u8 = 7;
}

/// An error that ends a command before or around a run (a failed step is an outcome, not this).
#[derive(Debug, thiserror::Error, Diagnostic)]
pub(crate) enum Error {
    #[error(transparent)]
    #[diagnostic(transparent)]
    Invalid(Box<crate::diagnostic::Invalid>),

    #[error("{0}")]
    #[diagnostic(code(runner::usage))]
    Usage(String),

    #[error("{message}")]
    #[diagnostic(code(runner::refused))]
    Refused {
        message: String,
        #[help]
        help: Option<String>,
    },

    #[error("{context}")]
    #[diagnostic(code(runner::io))]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },

    #[error("{0}")]
    #[diagnostic(code(runner::internal))]
    Internal(String),
}

impl Error {
    pub(crate) fn exit_code(&self) -> u8 {
        match self {
            Error::Invalid(_) | Error::Usage(_) => exit_code::INVALID,
            Error::Refused { .. } => exit_code::REFUSED,
            Error::Io { .. } | Error::Internal(_) => exit_code::INTERNAL,
        }
    }

    pub(crate) fn refused(message: impl Into<String>, help: impl Into<Option<String>>) -> Self {
        Error::Refused {
            message: message.into(),
            help: help.into(),
        }
    }

    /// Wraps an I/O error with what was being done and to which path.
    pub(crate) fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> Error {
        let context = context.into();
        move |source| Error::Io { context, source }
    }
}

impl From<crate::diagnostic::Invalid> for Error {
    fn from(invalid: crate::diagnostic::Invalid) -> Self {
        Error::Invalid(Box::new(invalid))
    }
}

pub(crate) type Result<T, E = Error> = std::result::Result<T, E>;

/// An error with its causes, in one line.
pub(crate) fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(inner) = source {
        let cause = inner.to_string();
        if !text.contains(&cause) {
            text = format!("{text}: {cause}");
        }
        source = inner.source();
    }
    text
}
