//! `relay`: the operator's command.
//!
//! `validate` loads a config exactly as the functions do and prints every
//! problem with file:line; `schema` prints the config's JSON Schema (the file
//! shipped in `schema/`); `dry-run` plans one webhook body through the
//! whitelist and rules and prints the plan — the decision and the exact
//! requests — without any network. `serve` runs the whole relay on this
//! machine (intake, embedded durable queue, worker); `demo` shows it working
//! against sandboxes; `dlq` and `queue` inspect the embedded queue.
//!
//! This file is the command line and its dispatch; each command's body is in
//! [`commands`], the machinery behind them in the modules beside it.
#![forbid(unsafe_code)]

mod commands;
mod console;
mod demo;
mod jira_admin;
mod listener;
mod live;
mod logs;
mod oauth_login;
mod reconcile;
mod serve;
#[cfg(feature = "aws")]
mod sqs_ops;

use clap::{Parser, Subcommand};
use commands::{dlq, dry_run, jira, queue, validate};
use std::process::ExitCode;

#[derive(Parser)]
#[command(name = "relay", version, about = "jira-relay operator commands")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Check a config file; exit 0 if valid, else print every problem.
    Validate(validate::Args),
    /// Write a two-way config and a secrets skeleton (flags, or answers on a terminal).
    Init(commands::init::Args),
    /// Check a config against the live systems (`--live`): projects, issue
    /// types, fields, transitions, permissions, tables, columns, choices.
    Check(commands::check::Args),
    /// Print the JSON Schema of the config file.
    Schema,
    /// Plan one webhook body (a JSON file) and print the plan as JSON.
    DryRun(dry_run::Args),
    /// Run the relay on this machine: HTTP intake, embedded durable queue, worker.
    Serve(Box<commands::serve::Args>),
    /// One reconciliation sweep: find issues whose webhooks never arrived and
    /// queue them for `relay serve`'s workers (or only print them: --dry-run).
    Reconcile(commands::reconcile::Args),
    /// Connect existing issues (a JQL): create their twins or pair them with
    /// the records that exist, through the queue; resumable (--dry-run first).
    Sync(commands::sync::Args),
    /// Show the relay working: sandbox ServiceNow + Jira, example webhooks, the result.
    Demo(commands::demo::Args),
    /// Jira set-up: the admin webhook that feeds the relay.
    Jira(jira::Args),
    /// Dead letters: of the embedded queue (`--data-dir`) or an SQS DLQ (`--sqs-url`).
    Dlq(dlq::Args),
    /// The queue: embedded (`--data-dir`) or SQS (`--sqs-url`).
    Queue(queue::Args),
    /// The operator console for a deployed stack (`--aws`): its queue and dead letters.
    Console(commands::console::Args),
}

fn run(cli: Cli) -> Result<(), String> {
    match cli.command {
        Command::Validate(a) => validate::run(a),
        Command::Check(a) => commands::check::run(a),
        Command::Init(a) => commands::init::run(a),
        Command::Schema => commands::schema::run(),
        Command::DryRun(a) => dry_run::run(a),
        Command::Serve(a) => commands::serve::run(*a),
        Command::Reconcile(a) => commands::reconcile::run(a),
        Command::Sync(a) => commands::sync::run(a),
        Command::Demo(a) => commands::demo::run(a),
        Command::Jira(a) => jira::run(a),
        Command::Dlq(a) => dlq::run(a),
        Command::Queue(a) => queue::run(a),
        Command::Console(a) => commands::console::run(a),
    }
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(msg) => {
            eprintln!("{msg}");
            ExitCode::FAILURE
        }
    }
}
