//! Deliveries, duplicates and order: one record per change, and a FIFO group
//! held back behind its failed message (only that group).

use super::*;

#[tokio::test]
async fn a_delivery_seen_twice_creates_one_record() {
    // given a create
    let Some(r) = Relay::start("jira-to-servicenow").await else {
        return;
    };
    let created = fixture("relay-jira__jira-issue-created_cloud.json").unwrap();
    // when Jira retries within the dedup window: SQS drops it
    assert_eq!(r.post("jira", &created, "dup-1").await, 202);
    assert_eq!(r.post("jira", &created, "dup-1").await, 202);
    r.pump().await;
    // and a late retry after the window (a new dedup id, the same change): the
    // lookup by correlation_id finds the incident, nothing is created.
    assert_eq!(r.post("jira", &created, "dup-1-late").await, 202);
    r.pump().await;
    // then one incident, one POST
    assert_eq!(r.incidents(), 1);
    let posts =
        r.sn.requests()
            .iter()
            .filter(|q| q.method == "POST" && q.path == "/api/now/table/incident")
            .count();
    assert_eq!(posts, 1);
}

#[tokio::test]
async fn a_comment_waits_for_its_create_to_succeed() {
    // given a create and its comment
    let Some(r) = Relay::start("jira-to-servicenow").await else {
        return;
    };
    let created = fixture("mattermost__jira-issue-created_cloud.json").unwrap();
    let comment = retarget(
        fixture("mattermost__comment-created_cloud.json").unwrap(),
        "KT-22",
        "10509",
    );
    // and more 503s than the in-process attempts: the create goes back to
    // the queue twice
    r.sn.faults().push(
        Match::method_path(http::Method::POST, "/api/now/table/incident"),
        Fault::status(503),
        8,
    );
    // when both are posted and the queue drained
    assert_eq!(r.post("jira", &created, "c-1").await, 202);
    assert_eq!(r.post("jira", &comment, "c-2").await, 202);
    let failing = r.pump().await;
    // then the create was handed back, and the comment applied after it
    assert!(
        failing >= 2,
        "the create should have been handed back: {failing}"
    );
    let inc = r.incident("KT-22");
    let journal = r.sn.journal("incident", text(&inc["sys_id"]));
    assert_eq!(journal.len(), 1);
    // The comment's PATCH comes after the create's POST that succeeded.
    let reqs = r.sn.requests();
    let created_at = reqs
        .iter()
        .rposition(|q| q.method == "POST" && q.path == "/api/now/table/incident")
        .unwrap();
    let commented_at = reqs.iter().position(|q| q.method == "PATCH").unwrap();
    assert!(created_at < commented_at);
    assert!(r.dead_letters().await.is_empty());
}

#[tokio::test]
async fn a_failed_message_holds_back_the_rest_of_its_group_only() {
    // given two issues' groups, KT-22's with two comments
    let Some(r) = Relay::start("jira-to-servicenow").await else {
        return;
    };
    let a = fixture("mattermost__jira-issue-created_cloud.json").unwrap();
    let comment = retarget(
        fixture("mattermost__comment-created_cloud.json").unwrap(),
        "KT-22",
        "10509",
    );
    let mut second = comment.clone();
    second["comment"]["id"] = json!("99001");
    second["comment"]["body"] = json!("second comment");
    let b = fixture("relay-jira__jira-issue-created_cloud.json").unwrap();
    for (i, p) in [&a, &comment, &second, &b].iter().enumerate() {
        assert_eq!(r.post("jira", p, &format!("grp-{i}")).await, 202);
    }
    // and only KT-22's group writes comments (PATCH): its first comment fails
    // every in-process attempt.
    r.sn.faults().push(
        Match::method_path(http::Method::PATCH, "/api/now/table/incident/"),
        Fault::status(503),
        4,
    );
    // when one batch runs
    let (seen, failed) = r.round().await;
    // then
    assert_eq!(seen.len(), 4, "one batch with both groups");
    // The failed comment and the one after it; REL-23 and KT-22's create went through.
    assert_eq!(failed.len(), 2, "{failed:?}");
    assert!(r.sn.find("incident", "correlation_id", "REL-23").is_some());
    let kt = r.incident("KT-22");
    assert!(r.sn.journal("incident", text(&kt["sys_id"])).is_empty());
    // when the queue is drained
    assert_eq!(r.pump().await, 0);
    // then both comments are applied, in order
    let journal = r.sn.journal("incident", text(&kt["sys_id"]));
    assert_eq!(journal.len(), 2);
    assert!(journal[1].value.ends_with("second comment"), "{journal:?}");
    assert_eq!(r.incidents(), 2);
}
