//! End-to-end stories, one per shipped example: what a target ends up with
//! after a sequence of real webhooks.

use super::*;

#[tokio::test]
async fn jira_story_becomes_one_incident_with_state_comment_and_attachment() {
    // given a Jira story: create, status change, comment, attachment
    let Some(r) = Relay::start("jira-to-servicenow").await else {
        return;
    };
    let created = fixture("mattermost__jira-issue-created_cloud.json").unwrap();
    let (key, id) = ("KT-22", "10509");
    let status = retarget(
        fixture("mattermost__jira-issue-updated-status_cloud.json").unwrap(),
        key,
        id,
    );
    let comment = retarget(
        fixture("mattermost__comment-created_cloud.json").unwrap(),
        key,
        id,
    );
    let url = r.jira.add_file(
        "screenshot.png",
        "image/png",
        b"\x89PNG fake image bytes".to_vec(),
    );
    let mut attachment = retarget(
        fixture("zulip__attachment-created_cloud.json").unwrap(),
        key,
        id,
    );
    attachment["attachment"]["content"] = json!(url);

    // when it is posted and the queue drained
    for (i, p) in [&created, &status, &comment, &attachment]
        .iter()
        .enumerate()
    {
        assert_eq!(r.post("jira", p, &format!("story-{i}")).await, 202);
    }
    assert_eq!(r.pump().await, 0, "nothing should fail");

    // then one incident holds all of it
    assert_eq!(r.incidents(), 1);
    let inc = r.incident(key);
    assert_eq!(text(&inc["correlation_display"]), "jira-relay");
    assert!(
        text(&inc["short_description"]).starts_with("[KT-22] "),
        "{inc:?}"
    );
    // Done in Jira: the status rule sets 6 and the resolution rule closes it out.
    assert_eq!(text(&inc["state"]), "6");
    assert_eq!(text(&inc["close_code"]), "Solved (Permanently)");
    // Every value comes back a string, like ServiceNow's.
    assert!(inc.values().all(|v| v.is_string() || v.is_object()));
    let sys_id = text(&inc["sys_id"]).to_owned();
    let journal = r.sn.journal("incident", &sys_id);
    assert_eq!(journal.len(), 1, "{journal:?}");
    assert_eq!(journal[0].field, "comments");
    assert!(journal[0].value.contains("(Jira): "), "{journal:?}");
    let files = r.sn.attachments();
    assert_eq!(files.len(), 1);
    assert_eq!(files[0].table_sys_id, sys_id);
    assert_eq!(files[0].file_name, "screenshot.png");
    assert_eq!(files[0].content_type, "image/png");
    assert_eq!(files[0].bytes, b"\x89PNG fake image bytes");
    assert!(r.dead_letters().await.is_empty());
}

#[tokio::test]
async fn servicenow_incidents_become_jira_issues_with_adf_comments_and_transitions() {
    // given ServiceNow's create, comment and resolve events
    let Some(r) = Relay::start("servicenow-to-jira").await else {
        return;
    };
    let created = sn_event("servicenow-incident-created.json");
    let commented = sn_event("servicenow-incident-commented.json");
    let resolved = sn_event("servicenow-incident-resolved.json");
    // when they are posted and the queue drained
    for p in [&created, &commented, &resolved] {
        assert_eq!(r.post_sn(p).await, 202);
    }
    assert_eq!(r.pump().await, 0);
    // then one Jira issue holds all of it
    assert!(r.dead_letters().await.is_empty());
    let violations = r.jira.violations();
    assert!(violations.is_empty(), "{violations:?}");
    let issues = r.jira.issues();
    assert_eq!(issues.len(), 1);
    let issue = &issues[0];
    assert_eq!(issue.fields["customfield_10050"], "INC0010019");
    assert_eq!(issue.fields["summary"], "Email server is down");
    assert_eq!(issue.fields["description"]["type"], "doc");
    assert_eq!(issue.status, "Resolved");
    assert_eq!(issue.fields["resolution"]["name"], "Done");
    assert_eq!(issue.comments.len(), 1);
    assert_eq!(issue.comments[0]["body"]["type"], "doc");
    assert_eq!(
        issue.properties["jira-relay"],
        json!({"key": "INC0010019", "sys_id": "9d385017c611228701d22104cc95c371"})
    );
    assert_eq!(issue.remote_links.len(), 1);
    assert_eq!(
        issue.remote_links[0]["object"]["title"],
        "ServiceNow INC0010019"
    );
}

#[tokio::test]
async fn jira_cloud_to_jira_dc_over_v2_with_a_pat() {
    // given a create delivered twice, the second after the dedup window
    let Some(r) = Relay::start("jira-to-jira").await else {
        return;
    };
    let created = fixture("mattermost__jira-issue-created_cloud.json").unwrap();
    // when both are posted (HMAC) and the queue drained
    assert_eq!(r.post_signed("jira-cloud", &created, "j2j-1").await, 202);
    // A second delivery of the same change after the dedup window: the
    // upsert finds the copy by its label and updates it.
    assert_eq!(
        r.post_signed("jira-cloud", &created, "j2j-1-late").await,
        202
    );
    assert_eq!(r.pump().await, 0);
    // then one copy over v2, updated in place
    let violations = r.jira.violations();
    assert!(violations.is_empty(), "{violations:?}");
    assert!(r.dead_letters().await.is_empty());
    let issues = r.jira.issues();
    assert_eq!(issues.len(), 1, "{issues:?}");
    assert_eq!(issues[0].key.split('-').next(), Some("OPS"));
    assert_eq!(issues[0].fields["labels"], json!(["src-KT-22"]));
    assert!(r
        .jira
        .requests()
        .iter()
        .filter(|q| q.method != "GET")
        .all(|q| q.path.starts_with("/rest/api/2/")));
}

#[tokio::test]
async fn comment_edits_and_deletions_follow_their_twin_into_a_jira_target() {
    // given an issue and a comment copied into the Jira target
    let Some(r) = Relay::start("jira-to-jira").await else {
        return;
    };
    let created = fixture("mattermost__jira-issue-created_cloud.json").unwrap();
    let mut comment = retarget(
        fixture("mattermost__comment-created_cloud.json").unwrap(),
        "KT-22",
        "10509",
    );
    comment["issue"]["fields"]["project"] = json!({"key": "KT"});
    comment["comment"]["id"] = json!("70001");
    comment["comment"]["body"] = json!("first words");
    assert_eq!(r.post_signed("jira-cloud", &created, "tw-1").await, 202);
    assert_eq!(r.post_signed("jira-cloud", &comment, "tw-2").await, 202);
    assert_eq!(r.pump().await, 0);
    assert!(r.dead_letters().await.is_empty());
    // then the comment has its twin
    let copy = |r: &Relay| {
        r.jira
            .issues()
            .into_iter()
            .find(|i| i.key.starts_with("OPS-"))
            .unwrap()
    };
    let key = copy(&r).key;
    let comments = r.jira.comments(&key).unwrap();
    assert_eq!(comments.len(), 1);
    assert!(comments[0].body.to_string().contains("first words"));

    // when the comment is edited in the source
    // (the twin is known to the link store)
    let mut edited = comment.clone();
    edited["webhookEvent"] = json!("comment_updated");
    edited["comment"]["body"] = json!("second thoughts");
    assert_eq!(r.post_signed("jira-cloud", &edited, "tw-3").await, 202);
    assert_eq!(r.pump().await, 0);
    // then the twin is edited, not added
    let comments = r.jira.comments(&key).unwrap();
    assert_eq!(comments.len(), 1, "edited, not added: {comments:?}");
    assert!(comments[0].body.to_string().contains("second thoughts"));

    // when it is deleted in the source (twice), with the link store lost
    // meanwhile
    let r = r.with_links(shared::links::Links::memory());
    let mut deleted = comment.clone();
    deleted["webhookEvent"] = json!("comment_deleted");
    assert_eq!(r.post_signed("jira-cloud", &deleted, "tw-4").await, 202);
    // A redelivery of the deletion is harmless.
    assert_eq!(r.post_signed("jira-cloud", &deleted, "tw-5").await, 202);
    assert_eq!(r.pump().await, 0);
    // then the twin is found by the `jira-relay` property it was created
    // with, and deleted
    assert!(r.dead_letters().await.is_empty());
    assert!(r.jira.comments(&key).unwrap().is_empty());
    let violations = r.jira.violations();
    assert!(violations.is_empty(), "{violations:?}");
}

#[tokio::test]
async fn jira_events_to_a_generic_http_api() {
    // given the jira-to-http example
    let Some(r) = Relay::start("jira-to-http").await else {
        return;
    };
    // when a create and a delete are posted and the queue drained
    let created = fixture("mattermost__jira-issue-created_cloud.json").unwrap();
    let deleted = fixture("mattermost__jira-issue-deleted_cloud.json").unwrap();
    assert_eq!(r.post("jira", &created, "h-1").await, 202);
    assert_eq!(r.post("jira", &deleted, "h-2").await, 202);
    assert_eq!(r.pump().await, 0);
    // then the API saw one POST and one DELETE
    let seen = r.hook.seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 2, "{seen:?}");
    let post = seen.iter().find(|s| s.0 == "POST").unwrap();
    assert_eq!(post.1, "/jira/events/KT-22");
    assert_eq!(post.2.as_deref(), Some("jira"));
    assert_eq!(post.3["key"], "KT-22");
    assert_eq!(post.3["event"], "jira:issue_created");
    let delete = seen.iter().find(|s| s.0 == "DELETE").unwrap();
    assert_eq!(delete.1, "/jira/events/IDT-19");
}
