//! Deleting as an action, guarded: an `action: delete` rule deletes the
//! paired Jira issue (and its subtasks with `delete_subtasks`), and no more
//! than the connection's `deletes_per_minute` in one minute. The delete past
//! the cap is not sent: its event is dead-lettered with reason
//! `delete_cap_reached` (the `DeleteCapReached` metric and its alarm are
//! checked with `relay serve` in the CLI's tests and by the template check).

use crate::two_way::shipped;
use crate::worker_flow::Relay;
use serde_json::json;
use shared::support::clock::FixedClock;
use std::sync::Arc;

/// The shipped config with a ServiceNow `incident.deleted` → Jira delete
/// rule, the Jira connection capped at 2 deletes a minute.
fn with_delete_rule(yaml: String, s: &crate::worker_flow::Servers) -> String {
    let y = shipped(yaml, s).replacen(
        "    api: v3\n",
        "    api: v3\n    deletes_per_minute: 2\n",
        1,
    );
    assert!(y.contains("deletes_per_minute: 2"));
    format!(
        "{y}\n  - name: delete issue\n    from: servicenow\n    when:\n      events: [incident.deleted]\n    to: jira\n    action: delete\n    correlate: {{ key: number, field: customfield_10050 }}\n    delete_subtasks: true\n"
    )
}

fn deleted(n: u32) -> serde_json::Value {
    json!({"event": "incident.deleted", "sys_id": format!("5ff1{n:028}"), "number": format!("INC00901{n:02}"),
           "sys_updated_by": "agent.smith", "sys_updated_on": "2026-12-06 07:00:00"})
}

#[tokio::test]
async fn deletes_past_the_cap_are_dead_lettered_not_sent() {
    // given four paired issues, the first with a subtask, a cap of 2 a minute
    let Some(r) = Relay::start_with_config("config/relay.yaml", with_delete_rule).await else {
        return;
    };
    let t0: jiff::Timestamp = "2026-12-06T07:00:05Z".parse().unwrap();
    let clock = Arc::new(FixedClock::new(t0));
    let r = r.with_links(shared::links::Links::memory().with_clock(clock.clone()));
    let keys: Vec<String> = (1..=4)
        .map(|n| {
            r.jira.seed_issue(
                "SUP",
                json!({"summary": format!("incident {n}"), "customfield_10050": format!("INC00901{n:02}")}),
            )
        })
        .collect();
    let sub = r.jira.seed_issue(
        "SUP",
        json!({"summary": "a subtask", "parent": {"key": keys[0]}, "issuetype": {"name": "Subtask"}}),
    );
    // when three incidents are deleted within one minute
    for n in 1..=3 {
        assert_eq!(r.post_sn(&deleted(n)).await, 202);
    }
    r.pump().await;
    // then two issues are deleted (the subtask with its parent), the third
    // is not, and its event is a dead letter saying why
    let gone: Vec<&String> = keys[..3]
        .iter()
        .filter(|k| r.jira.issue(k).is_none())
        .collect();
    assert_eq!(gone.len(), 2, "{gone:?}");
    assert_eq!(r.jira.issue(&sub).is_none(), gone.contains(&&keys[0]));
    let dead = r.dead_letters().await;
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert!(
        dead[0].0.starts_with("delete_cap_reached: "),
        "{}",
        dead[0].0
    );
    assert!(dead[0].0.contains("deletes_per_minute: 2"), "{}", dead[0].0);
    let kept = keys[..3]
        .iter()
        .find(|k| r.jira.issue(k).is_some())
        .unwrap();
    assert!(
        dead[0].0.contains(kept.as_str()),
        "{} names {kept}",
        dead[0].0
    );
    let deletes = r
        .jira
        .requests()
        .iter()
        .filter(|q| q.method == "DELETE")
        .count();
    assert_eq!(deletes, 2, "nothing past the cap was sent");
    assert!(r
        .jira
        .requests()
        .iter()
        .filter(|q| q.method == "DELETE")
        .all(|q| q.query.contains(&("deleteSubtasks".into(), "true".into()))));
    // Jira refuses a parent's delete without deleteSubtasks; the rule asked for it.
    assert!(r.jira.violations().is_empty(), "{:?}", r.jira.violations());

    // when the next minute begins, a fourth is deleted
    clock.set(t0 + jiff::SignedDuration::from_secs(60));
    assert_eq!(r.post_sn(&deleted(4)).await, 202);
    r.pump().await;
    // then it is
    assert!(r.jira.issue(&keys[3]).is_none());
    assert!(r.dead_letters().await.is_empty());
}
