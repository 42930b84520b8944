//! The front door: the webhook router, webhook authentication and the envelope
//! a webhook travels in. Everything a caller sends is checked here; what
//! passes is enqueued and answered 202.

pub mod auth;
pub mod body;
pub mod envelope;
pub mod router;
