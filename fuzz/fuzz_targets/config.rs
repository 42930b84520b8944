//! The config loader: YAML text → `Config` with every semantic check, through
//! `Config::from_yaml` (the same code as `Config::load` after reading the file;
//! nothing touches the filesystem here).
//!
//! `${NAME}` references resolve from a small fixed map (`RELAY_FUZZ_A` and
//! `RELAY_FUZZ_B`); every other name is unset.
//!
//! Checks, beyond "no panic": a refusal carries at least one problem and
//! renders; an accepted config holds what the checks promise (version 1, body
//! limit in range, at least one endpoint, endpoint names valid and unique,
//! every endpoint with an authentication method, whitelists only for existing
//! endpoints, connection names unique).
#![no_main]

use libfuzzer_sys::fuzz_target;
use shared::config::{is_valid_endpoint_name, Config, ConfigError, MAX_BODY_BYTES_CEILING};
use std::collections::HashSet;

fn env(name: &str) -> Option<String> {
    match name {
        "RELAY_FUZZ_A" => Some("jira-prod".to_owned()),
        "RELAY_FUZZ_B" => Some("relay/webhook#token".to_owned()),
        _ => None,
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match Config::from_yaml(text, "fuzz.yaml", env) {
        Err(e) => {
            assert!(!e.problems().is_empty(), "a refusal names a problem");
            assert!(matches!(e, ConfigError::Invalid { .. }));
            let shown = e.to_string();
            assert!(shown.starts_with("fuzz.yaml"), "{shown}");
        }
        Ok(c) => {
            assert_eq!(c.version, 1);
            assert!((1024..=MAX_BODY_BYTES_CEILING).contains(&c.limits.max_body_bytes));
            assert!(!c.endpoints.is_empty());
            let mut names = HashSet::new();
            for e in &c.endpoints {
                assert!(is_valid_endpoint_name(&e.name), "{:?}", e.name);
                assert!(
                    names.insert(e.name.as_str()),
                    "duplicate endpoint {:?}",
                    e.name
                );
                assert!(
                    e.auth.method_count() > 0,
                    "endpoint {:?} without auth",
                    e.name
                );
                assert!(c.endpoint(&e.name).is_some());
            }
            for name in c.whitelists.keys() {
                assert!(
                    names.contains(name.as_str()),
                    "whitelist for unknown endpoint {name:?}"
                );
            }
            let mut conns = HashSet::new();
            for conn in &c.connections {
                assert!(
                    conns.insert(conn.name.as_str()),
                    "duplicate connection {:?}",
                    conn.name
                );
            }
        }
    }
});
