//! jira-relay core.
//!
//! Everything both hosts share — the AWS Lambda functions and the one-machine
//! `relay serve` — in folders named after the path a webhook takes:
//!
//! ```text
//! intake → queue → worker → rules → outbound → (ServiceNow, Jira, …)
//!                            ↕ links (pairs, seen deliveries, parked events)
//! reconcile: Jira search → the same rules → queue
//! ```
//!
//! `config` reads the one YAML file, `secrets` resolves what it names, and
//! `support` holds the clock, time formats, metrics, logging and AWS defaults.
//! Nothing here knows about Lambda. `docs/architecture.md` has the map.
#![forbid(unsafe_code)]

pub mod config;
pub mod intake;
pub mod journal;
pub mod links;
pub mod outbound;
pub mod prepare;
pub mod queue;
pub mod reconcile;
pub mod rules;
pub mod secrets;
pub mod support;
pub mod worker;
