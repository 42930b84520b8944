//! jira-relay core.
//!
//! Everything that both hosts — the AWS Lambda functions and the one-machine
//! `relay serve` — share: configuration, the queue envelope, webhook
//! authentication, the ingress router, and the ports (queue, secret store,
//! clock) with their adapters. Nothing here knows about Lambda.
#![forbid(unsafe_code)]

pub mod adf;
pub mod auth;
#[cfg(feature = "aws")]
pub mod aws;
pub mod clock;
pub mod config;
pub mod connections;
pub mod connector;
pub mod envelope;
pub mod executor;
pub mod ingress;
pub mod links;
pub mod metrics;
pub mod plan;
pub mod queue;
pub mod reconcile;
pub mod rules;
pub mod schema;
pub mod secret;
pub mod secrets;
pub mod telemetry;
pub mod timefmt;
pub mod whitelist;
pub mod worker;
