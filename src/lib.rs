//! runner: a declarative deployment runner driven by TOML playbooks.
//!
//! The pipeline is `playbook` (load, validate) → `plan` (a pure value) → `engine` (apply, emit
//! events to a sink) → `journal` and `report` (consume events, as `emitter` wires them). `cli`
//! wires it to the command line. Imports go one way (see the README's module picture).

// Problems carry their source and labels; they are built on the error path only, so their size
// costs nothing that matters.
#![allow(clippy::result_large_err)]

#[macro_use]
mod output;

mod check;
mod cli;
mod context;
mod db;
mod diagnostic;
mod docker;
mod emitter;
mod engine;
mod env_value;
mod error;
mod event;
mod fingerprint;
mod fs;
#[cfg(test)]
mod fuzz_tests;
mod journal;
mod migrate;
mod notify;
mod plan;
mod playbook;
mod report;
mod secrets;
mod steps;
mod template;
mod traffic;

pub use cli::run;

/// The User-Agent of every HTTP request runner sends (probes, gates, alerts): the real-traffic
/// gate does not count these, so what it judges is what users sent.
const AGENT: &str = concat!("runner/", env!("CARGO_PKG_VERSION"));
