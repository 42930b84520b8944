//! The inbound whitelist filter parser (the ONEiO one-line form).
//!
//! Input: the filter text, optionally followed by a NUL byte and a JSON
//! payload to check it against (otherwise a small fixed Jira event).
//!
//! Checks, beyond "no panic": a parsed whitelist has at least one clause, each
//! `=`/`!=` with one value and each `IN` with at least one; rendering it
//! (`Display`, which `relay validate` and the `filtered` reason print) and
//! parsing the rendering gives the same whitelist; evaluating it against the
//! payload gives the same verdict as its rendering does.
#![no_main]

use libfuzzer_sys::fuzz_target;
use shared::config::SourceKind;
use shared::rules::whitelist::{Op, Whitelist};
use shared::rules::Context;
use std::sync::OnceLock;

fn default_payload() -> &'static serde_json::Value {
    static P: OnceLock<serde_json::Value> = OnceLock::new();
    P.get_or_init(|| {
        serde_json::json!({
            "webhookEvent": "jira:issue_updated",
            "user": {"accountId": "5b10ac8d82e05b22cc7d4ef5", "displayName": "Integration"},
            "issue": {"id": "10040", "key": "SUP-41", "fields": {
                "project": {"key": "SUP"},
                "issuetype": {"name": "Bug"},
                "labels": ["a", "b"],
                "priority": null
            }},
            "changelog": {"items": [
                {"field": "status", "fieldId": "status", "fromString": "Open", "toString": "In Progress"},
                {"field": "Priority", "toString": 3}
            ]}
        })
    })
}

fuzz_target!(|data: &[u8]| {
    let (filter, payload) = match data.iter().position(|b| *b == 0) {
        Some(i) => (&data[..i], Some(&data[i + 1..])),
        None => (data, None),
    };
    let Ok(text) = std::str::from_utf8(filter) else {
        return;
    };
    let Ok(w) = Whitelist::parse(text) else {
        return;
    };
    assert!(!w.clauses.is_empty(), "an accepted whitelist has a clause");
    for c in &w.clauses {
        match c.op {
            Op::Eq | Op::Ne => assert_eq!(c.values.len(), 1, "{c}"),
            Op::In => assert!(!c.values.is_empty(), "{c}"),
        }
    }
    let rendered = w.to_string();
    let back = Whitelist::parse(&rendered)
        .unwrap_or_else(|e| panic!("rendering {rendered:?} of {text:?} does not parse: {e}"));
    assert_eq!(
        back, w,
        "render-then-parse of {text:?} (rendered {rendered:?})"
    );

    let owned;
    let payload = match payload.and_then(|p| serde_json::from_slice(p).ok()) {
        Some(v) => {
            owned = v;
            &owned
        }
        None => default_payload(),
    };
    for kind in [SourceKind::Jira, SourceKind::Servicenow] {
        let ctx = Context::new(payload, "jira:issue_updated", kind);
        let verdict = w.check(&ctx).is_ok();
        assert_eq!(verdict, back.check(&ctx).is_ok());
    }
});
