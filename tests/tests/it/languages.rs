//! The shipped config with sites in other languages and with Jira Server's
//! legacy shapes. A Russian site (issue and changelog in Russian; Cloud and
//! Server shapes) and a Korean one (issue in Korean, changelog in the
//! agent's English) walk an
//! issue through in progress → resolved → reopened → closed; the incident
//! follows by status id and category, whatever the words. Server's comment
//! shapes (real fixtures): a `comment_created` with neither issue nor user
//! (the issue is read from Jira), the same comment again as a bare
//! `jira:issue_updated` (applied once), an `issue_comment_deleted` that does
//! not say which comment, a status change without `fieldId`.

use crate::two_way::shipped;
use crate::worker_flow::{Relay, JIRA_EMAIL, JIRA_TOKEN};
use relay_tests::{jira_fixture, repo_path, retarget, text};
use serde_json::{json, Value};

fn written(name: &str) -> Value {
    let path = repo_path("tests/data/jira-languages").join(name);
    serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap()
}

/// A paired issue: created in the sandbox, its creation posted, the
/// incident made. Returns (key, id, the incident's sys_id).
async fn paired(r: &Relay, summary: &str, priority: Value) -> (String, String, String) {
    let key = r.jira.seed_issue(
        "SUP",
        json!({"summary": summary, "issuetype": {"name": "Incident"}, "priority": priority}),
    );
    let id = r.jira.issue(&key).unwrap().id.to_string();
    let created = json!({"webhookEvent": "jira:issue_created", "issue_event_type_name": "issue_created",
        "user": {"accountId": "712020:agent", "displayName": "Agent"},
        "issue": {"id": id, "key": key, "fields": {"summary": summary, "priority": priority}}});
    assert_eq!(r.post("jira", &created, &format!("p-{key}")).await, 202);
    assert_eq!(r.pump().await, 0);
    assert!(r.dead_letters().await.is_empty());
    let inc =
        r.sn.find("incident", "correlation_id", &key)
            .expect("incident");
    (key, id, text(&inc["sys_id"]).to_owned())
}

async fn relay() -> Option<Relay> {
    let r = Relay::start_with_config("config/relay.yaml", shipped).await?;
    r.jira.set_basic(JIRA_EMAIL, JIRA_TOKEN);
    Some(r)
}

#[tokio::test]
async fn sites_in_other_languages_move_the_incident_by_status_id_and_category() {
    let Some(r) = relay().await else {
        return;
    };
    for (lang, summary, priority, actor) in [
        (
            "ru",
            "Не работает VPN у отдела продаж",
            "Высокий",
            "Иван Петров",
        ),
        (
            "ru-server",
            "Не работает VPN у отдела продаж",
            "Высокий",
            "Иван Петров",
        ),
        ("ko", "회의실 프로젝터 고장", "높음", "김민지"),
    ] {
        // given a paired issue whose priority has the site's word for High
        let (key, id, sys_id) = paired(&r, summary, json!({"id": "2", "name": priority})).await;
        let inc = r.sn.find("incident", "sys_id", &sys_id).unwrap();
        assert_eq!(
            (text(&inc["impact"]), text(&inc["urgency"])),
            ("1", "2"),
            "{lang}: priority by id"
        );
        // when the site walks it through its workflow
        for (step, state, closed_as) in [
            ("in-progress", "2", None),
            ("resolved", "6", Some("Solved (Permanently)")),
            ("reopened", "1", None),
            ("closed", "7", None),
        ] {
            let payload = retarget(written(&format!("{lang}__{step}.json")), &key, &id);
            assert_eq!(
                r.post("jira", &payload, &format!("{lang}-{step}")).await,
                202
            );
            assert_eq!(r.pump().await, 0);
            // then the incident is in the expected state
            assert!(r.dead_letters().await.is_empty(), "{lang} {step}");
            let inc = r.sn.find("incident", "sys_id", &sys_id).unwrap();
            assert_eq!(text(&inc["state"]), state, "{lang} {step}");
            if let Some(code) = closed_as {
                assert_eq!(text(&inc["close_code"]), code);
                let notes = text(&inc["close_notes"]);
                let resolution = if lang.starts_with("ru") {
                    "Готово"
                } else {
                    "완료"
                };
                assert!(
                    notes.contains(resolution) && notes.contains(actor),
                    "{lang}: {notes}"
                );
            }
        }
    }
}

#[tokio::test]
async fn server_comment_shapes_reach_the_incident_once() {
    let Some(r) = relay().await else {
        return;
    };
    let (Some(bare), Some(in_update), Some(status)) = (
        jira_fixture("mattermost__comment-created_server.json"),
        jira_fixture("mattermost__jira-issue-updated-commented_server.json"),
        jira_fixture("mattermost__jira-issue-updated-status_server.json"),
    ) else {
        return;
    };
    // given a paired issue
    let (key, id, sys_id) = paired(&r, "Build server down", json!({"name": "Medium"})).await;

    // when Server sends a comment_created with neither issue nor user: the
    // issue is only in comment.self
    let mut bare = bare;
    assert!(bare.get("issue").is_none() && bare.get("user").is_none());
    bare["comment"]["self"] = json!(format!(
        "{}/rest/api/2/issue/{id}/comment/10082",
        r.jira.base_url()
    ));
    assert_eq!(r.post("jira", &bare, "srv-1").await, 202);
    assert_eq!(r.pump().await, 0);
    // then the issue was read from Jira and the comment is on the incident
    assert!(r.dead_letters().await.is_empty());
    let comments = |r: &Relay| {
        r.sn.journal("incident", &sys_id)
            .into_iter()
            .filter(|j| j.field == "comments")
            .map(|j| j.value)
            .collect::<Vec<_>>()
    };
    assert_eq!(comments(&r).len(), 1, "{:?}", comments(&r));
    assert!(comments(&r)[0].contains("unik"), "{:?}", comments(&r));
    assert!(r
        .jira
        .requests()
        .iter()
        .any(|q| q.method == "GET" && q.path.ends_with(&format!("/issue/{id}"))));

    // when the same comment comes again inside a bare jira:issue_updated
    // (older Server: no issue_event_type_name, no changelog)
    let mut update = retarget(in_update, &key, &id);
    update
        .as_object_mut()
        .unwrap()
        .remove("issue_event_type_name");
    assert!(update.get("changelog").is_none());
    assert_eq!(r.post("jira", &update, "srv-2").await, 202);
    assert_eq!(r.pump().await, 0);
    // then it is the same change: not applied twice
    assert!(r.dead_letters().await.is_empty());
    assert_eq!(comments(&r).len(), 1, "{:?}", comments(&r));

    // when a comment is deleted and Server says only issue_comment_deleted
    let deleted = json!({"timestamp": 1559607400000u64, "webhookEvent": "jira:issue_updated",
        "issue_event_type_name": "issue_comment_deleted",
        "user": {"name": "levbrouk", "key": "levbrouk", "displayName": "Lev Brouk"},
        "issue": {"id": id, "key": key, "fields": {"summary": "Build server down"}}});
    assert_eq!(r.post("jira", &deleted, "srv-3").await, 202);
    assert_eq!(r.pump().await, 0);
    // then a work note says so, without inventing which one
    assert!(r.dead_letters().await.is_empty());
    let notes: Vec<String> =
        r.sn.journal("incident", &sys_id)
            .into_iter()
            .filter(|j| j.field == "work_notes")
            .map(|j| j.value)
            .collect();
    assert_eq!(notes.len(), 1, "{notes:?}");
    assert!(notes[0].contains("Jira did not say which"), "{notes:?}");

    // when a Server status change (no fieldId) moves it to In Progress
    let status = retarget(status, &key, &id);
    assert_eq!(r.post("jira", &status, "srv-4").await, 202);
    assert_eq!(r.pump().await, 0);
    // then
    assert!(r.dead_letters().await.is_empty());
    let inc = r.sn.find("incident", "sys_id", &sys_id).unwrap();
    assert_eq!(text(&inc["state"]), "2");
}
