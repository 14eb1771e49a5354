//! Integration tests: they drive the real `runner` binary in temporary projects.

mod apply;
mod compose_files;
mod compose_real;
mod diagnostics;
mod docker;
mod examples;
mod hostile;
mod http;
mod load;
mod migrate;
mod phases;
mod plan;
mod postgres;
mod redis;
mod support;
mod traffic;
