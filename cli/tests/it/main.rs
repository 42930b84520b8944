//! The `relay` binary's integration tests in one test binary (one link
//! instead of one per file); each file is a module. The soak test is its own
//! binary (`--test soak`), as the README runs it on its own.

#[path = "../common/mod.rs"]
mod common;

mod acme;
mod check_live;
mod cli;
mod console;
mod console_aws;
mod console_browser;
mod init;
mod jira_webhook;
mod listener;
mod oauth_login;
mod reconcile;
mod secret_hygiene;
mod serve;
mod sqs_ops;
mod sync;
