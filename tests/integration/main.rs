//! Integration tests: they drive the real `runner` binary in temporary projects.

mod adopt;
mod apply;
mod compose_files;
mod compose_real;
mod crash;
mod diagnostics;
mod docker;
mod examples;
mod fuzz;
mod hostile;
mod http;
mod imports;
mod keep;
mod load;
mod migrate;
mod phases;
mod plan;
mod postgres;
mod preconditions;
mod redis;
mod report;
mod secrets;
mod support;
mod traffic;
