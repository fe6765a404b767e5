//! End-to-end tests: the real binaries as processes on 127.0.0.1, each test
//! in its own temporary directory. One test binary (ripgrep's layout).
// Test code: a failed unwrap is a failed test, with its location.
#![allow(clippy::unwrap_used)]

mod admin;
mod agent_ops;
mod agent_pipeline;
mod bad_files;
mod bad_requests;
mod cluster;
mod cluster_reads;
mod codecs;
mod config_errors;
mod exactly_once;
mod fetch;
mod groups;
mod hostile;
mod hostile_soak;
mod kafka_clients;
mod kafka_raw;
mod limits;
mod logql_corpus;
mod logql_parity;
mod loki_api;
mod loki_push;
mod metrics;
mod packaging;
mod pipeline;
mod pipelined;
mod quickstart;
mod rotation_harness;
mod security;
mod store;
mod tailing;
mod torture;
mod web_ui;
