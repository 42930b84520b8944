//! Failures: retried (rate limits, outages), dead-lettered with their reason
//! (permanent refusals, parked events that never correlate, a DLQ outage),
//! and cut at the invocation deadline.

use super::*;

#[tokio::test]
async fn rate_limits_and_outages_are_retried_and_applied() {
    // given a 429, a 502 and a timeout on ServiceNow's incident table
    let settings = ConnectorSettings {
        call_timeout: Duration::from_secs(1),
        ..ConnectorSettings::default()
    };
    let Some(r) = Relay::start_with("jira-to-servicenow", |y, _| y, settings).await else {
        return;
    };
    let f = r.sn.faults();
    f.push(
        Match::path("/api/now/table/incident"),
        Fault::rate_limited(1),
        1,
    );
    f.push(
        Match::path("/api/now/table/incident"),
        Fault::status(502),
        1,
    );
    f.push(
        Match::path("/api/now/table/incident"),
        Fault::Timeout(Duration::from_secs(3)),
        1,
    );
    // when a create is posted and the queue drained
    let created = fixture("relay-jira__jira-issue-created_cloud.json").unwrap();
    assert_eq!(r.post("jira", &created, "rl-1").await, 202);
    r.pump().await;
    // then
    assert_eq!(r.incidents(), 1);
    assert_eq!(f.injected().len(), 3);
    assert!(r.dead_letters().await.is_empty());
}

#[tokio::test]
async fn permanent_failures_go_to_the_dlq_with_their_reason_after_one_receive() {
    // given ServiceNow refusing the create (400)
    let Some(r) = Relay::start("jira-to-servicenow").await else {
        return;
    };
    r.sn.faults().push(
        Match::method_path(http::Method::POST, "/api/now/table/incident"),
        Fault::Status {
            status: 400,
            retry_after: None,
            headers: Vec::new(),
            body: Some(
                json!({"error": {"message": "Mandatory field missing", "detail": "caller_id"}, "status": "failure"})
                    .to_string(),
            ),
        },
        1,
    );
    // when
    let created = fixture("relay-jira__jira-issue-created_cloud.json").unwrap();
    assert_eq!(r.post("jira", &created, "dead-1").await, 202);
    assert_eq!(r.pump().await, 0, "a dead letter is not a batch failure");
    // then
    let dead = r.dead_letters().await;
    assert_eq!(dead.len(), 1);
    assert!(
        dead[0]
            .0
            .starts_with("target_rejected: 400 from servicenow")
            && dead[0].0.contains("Mandatory field missing: caller_id"),
        "{dead:?}"
    );
    // The body is the original envelope, ready for a redrive.
    assert!(shared::intake::envelope::Envelope::decode(&dead[0].1).is_ok());
    assert_eq!(r.incidents(), 0);
}

#[tokio::test]
async fn an_update_for_an_unknown_record_waits_then_dead_letters_with_the_reason() {
    // given
    let Some(r) = Relay::start("jira-to-servicenow").await else {
        return;
    };
    // No incident for INDEV-6: the update is parked in the link store (its
    // queue group moves on at once), and dead-lettered `never_correlated`
    // when no record appeared within the park time.
    let t0: jiff::Timestamp = "2026-12-04T10:00:00Z".parse().unwrap();
    let clock = Arc::new(shared::support::clock::FixedClock::new(t0));
    let links = shared::links::Links::memory().with_clock(clock.clone());
    let r = Relay {
        worker: r.worker.with_links(links),
        ..r
    };
    // when the update is posted and the queue drained
    let status = fixture("jira-to-matrix__jira-issue-updated-status.json").unwrap();
    assert_eq!(r.post("jira", &status, "wait-1").await, 202);
    // then it is parked, not retried
    assert_eq!(r.pump().await, 0, "parked, not retried");
    assert!(r.dead_letters().await.is_empty());
    assert_eq!(r.worker.links().all_parked(10).await.unwrap().len(), 1);
    // when the park time passes
    let budget = shared::outbound::Budget::from_now(Duration::from_secs(30));
    // Within the park time nothing happens.
    clock.set(t0 + jiff::SignedDuration::from_hours(23));
    assert_eq!(r.worker.replay_parked(&r.inbox, &budget).await, (0, 0));
    clock.set(t0 + jiff::SignedDuration::from_hours(25));
    assert_eq!(r.worker.replay_parked(&r.inbox, &budget).await, (0, 1));
    // then
    let dead = r.dead_letters().await;
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert!(dead[0].0.starts_with("never_correlated: "), "{dead:?}");
    assert!(shared::intake::envelope::Envelope::decode(&dead[0].1).is_ok());
    assert!(r.worker.links().all_parked(10).await.unwrap().is_empty());
}

#[tokio::test]
async fn no_message_or_call_outlives_the_invocation_deadline() {
    // given a queued create
    let Some(r) = Relay::start("jira-to-servicenow").await else {
        return;
    };
    let inbox = shared::queue::memory::MemoryInbox::default();
    let created = fixture("relay-jira__jira-issue-created_cloud.json").unwrap();
    assert_eq!(r.post("jira", &created, "dl-1").await, 202);
    let msgs = receive(&r).await;
    assert_eq!(msgs.len(), 1);

    // when
    // Less than `min_message_time` left: the message is not started.
    let budget = shared::outbound::Budget::from_now(Duration::from_millis(1500));
    let report = r.worker.run_batch(&inbox, &msgs, &budget).await;
    // then
    assert_eq!(report.failed, vec![msgs[0].id.clone()]);
    assert_eq!(report.outcomes[0].1, "deadline");
    assert!(r.sn.requests().is_empty(), "no call was made");

    // when
    // Enough to start, but the target hangs: the call is cut at the deadline
    // and the message handed back, well before the hung call would end.
    r.sn.faults().push(
        Match::path("/api/now/table/incident"),
        Fault::Timeout(Duration::from_secs(20)),
        1,
    );
    let started = std::time::Instant::now();
    let budget = shared::outbound::Budget::from_now(Duration::from_millis(3000));
    let report = r.worker.run_batch(&inbox, &msgs, &budget).await;
    let took = started.elapsed();
    // then
    assert_eq!(report.outcomes[0].1, "retry");
    assert!(took < Duration::from_millis(3500), "{took:?}");
    assert_eq!(r.incidents(), 0);
    assert!(inbox.dead.lock().unwrap().is_empty());
}

/// A message handed to the worker while its send's commit syncs (the
/// embedded queue's lease at send) is prepared but not applied until the
/// queue says the send is durable; one whose commit failed is not applied at
/// all (its sender was answered with the error and retries).
#[tokio::test]
async fn nothing_is_written_for_a_message_whose_send_did_not_commit() {
    // given a queued create whose send (as the queue will say) did not commit
    let Some(r) = Relay::start("jira-to-servicenow").await else {
        return;
    };
    let inbox = shared::queue::memory::MemoryInbox::default();
    inbox
        .sends_not_committed
        .store(true, std::sync::atomic::Ordering::Relaxed);
    let created = fixture("relay-jira__jira-issue-created_cloud.json").unwrap();
    assert_eq!(r.post("jira", &created, "nc-1").await, 202);
    let msgs = receive(&r).await;
    assert_eq!(msgs.len(), 1);
    let budget = shared::outbound::Budget::from_now(Duration::from_secs(30));
    // when
    let report = r.worker.run_batch(&inbox, &msgs, &budget).await;
    // then nothing was called or written, and the message is not handled
    assert_eq!(report.outcomes[0].1, "retry");
    assert_eq!(report.failed, vec![msgs[0].id.clone()]);
    assert!(r.sn.requests().is_empty(), "no call was made");
    let key = created["issue"]["key"].as_str().unwrap();
    let change = format!("issue:{}:created", created["issue"]["id"].as_str().unwrap());
    assert!(
        !r.worker.links().seen(&change).await.unwrap(),
        "not remembered as handled"
    );
    assert!(inbox.dead.lock().unwrap().is_empty());
    // when the same message comes with its send durable
    inbox
        .sends_not_committed
        .store(false, std::sync::atomic::Ordering::Relaxed);
    let report = r.worker.run_batch(&inbox, &msgs, &budget).await;
    // then it is applied, once
    assert_eq!(report.outcomes[0].1, "applied");
    assert_eq!(r.incidents(), 1);
    r.incident(key);
}

#[tokio::test]
async fn a_dead_letter_queue_outage_loses_nothing() {
    // given a mapping that cannot work for this event: a required field it lacks
    let Some(r) = Relay::start_with(
        "jira-to-servicenow",
        |y, _| {
            y.replacen(
                "caller_id: { value: jira.integration }",
                "caller_id: { path: issue.fields.customfield_99999, required: true }",
                1,
            )
        },
        ConnectorSettings::default(),
    )
    .await
    else {
        return;
    };
    // and a dead-letter queue that refuses
    let inbox = shared::queue::memory::MemoryInbox::default();
    inbox
        .fail_dead_letters
        .store(true, std::sync::atomic::Ordering::Relaxed);
    let created = fixture("relay-jira__jira-issue-created_cloud.json").unwrap();
    assert_eq!(r.post("jira", &created, "dlq-down").await, 202);
    let msgs = receive(&r).await;
    let budget = shared::outbound::Budget::from_now(Duration::from_secs(30));
    // when
    let report = r.worker.run_batch(&inbox, &msgs, &budget).await;
    // then dead, but the DLQ refused it: reported failed so the queue keeps it
    assert_eq!(report.outcomes[0].1, "dead");
    assert_eq!(report.failed, vec![msgs[0].id.clone()]);
    // when the DLQ is back
    inbox
        .fail_dead_letters
        .store(false, std::sync::atomic::Ordering::Relaxed);
    let report = r.worker.run_batch(&inbox, &msgs, &budget).await;
    // then it lands there, with its reason
    assert!(report.failed.is_empty());
    let dead = inbox.dead.lock().unwrap();
    assert_eq!(dead.len(), 1);
    assert!(
        dead[0]
            .1
            .starts_with("mapping_error: rule `create incident`: required field `caller_id`"),
        "{dead:?}"
    );
    assert!(r.sn.requests().is_empty(), "nothing was applied");
}

/// A Jira create on its first receive goes out without the correlation
/// lookup (the key is new), but marked in the link store before it is sent:
/// when the worker dies after ServiceNow committed the incident and before
/// anything else happened, the redelivery looks the record up and finds it.
/// One incident, not two.
#[tokio::test]
async fn a_create_sent_without_a_lookup_is_looked_up_after_a_crash() {
    use shared::queue::port::InMessage;
    // given ServiceNow committing the create and answering only after 10 s
    let Some(r) = Relay::start("jira-to-servicenow").await else {
        return;
    };
    r.sn.faults().push(
        Match::method_path(http::Method::POST, "/api/now/table/incident"),
        Fault::answer_late(Duration::from_secs(10)),
        1,
    );
    let created = fixture("relay-jira__jira-issue-created_cloud.json").unwrap();
    assert_eq!(r.post("jira", &created, "crash-1").await, 202);
    let body = r.take_bodies().await.pop().expect("queued");
    let message = |receive_count| InMessage {
        id: "m-1".into(),
        group_id: None,
        dedup_id: None,
        body: body.clone(),
        receive_count,
        receipt: None,
    };
    let budget = || shared::outbound::Budget::from_now(Duration::from_secs(30));
    // when the worker is killed 1 s into its first receive
    let first = [message(1)];
    let killed = tokio::time::timeout(
        Duration::from_secs(1),
        r.worker.run_batch(&r.inbox, &first, &budget()),
    )
    .await;
    assert!(
        killed.is_err(),
        "the worker was still waiting for the answer"
    );
    // then the create went out alone: no lookup on first sight
    let calls = |r: &Relay| -> Vec<String> {
        r.sn.requests()
            .iter()
            .filter(|q| q.path.starts_with("/api/now/table/incident"))
            .map(|q| q.method.clone())
            .collect()
    };
    assert_eq!(calls(&r), ["POST"]);
    assert_eq!(r.incidents(), 1, "committed before the answer");
    // when the queue hands the message out again — counted as a first
    // receive even (SQS's count is "approximate"): the mark alone must do
    let report = r.worker.run_batch(&r.inbox, &[message(1)], &budget()).await;
    // then the record is looked up and found: nothing sent again
    assert!(report.failed.is_empty(), "{report:?}");
    assert_eq!(calls(&r), ["POST", "GET"]);
    assert_eq!(r.incidents(), 1, "one incident, not two");
    assert!(r.dead_letters().await.is_empty());
}
