//! Attachments: copied (to ServiceNow, to Jira as multipart), refused from
//! other hosts, when too large, or behind a redirect off the allowed hosts.

use super::*;

#[tokio::test]
async fn attachments_from_other_hosts_and_oversized_files_are_dead() {
    // given a 1 KiB attachment limit and an issue
    let Some(r) = Relay::start_with(
        "jira-to-servicenow",
        |y, _| y,
        ConnectorSettings {
            max_attachment_bytes: 1024,
            ..ConnectorSettings::default()
        },
    )
    .await
    else {
        return;
    };
    let created = fixture("zulip__attachment-created_cloud.json").unwrap();
    let issue = json!({"webhookEvent": "jira:issue_created", "issue_event_type_name": "issue_created",
        "user": {"accountId": "5c76b994e1bcdf6294d0eb0f"},
        "issue": {"id": "10000", "key": "BUG-15", "fields": {"summary": "New bug with hook", "priority": {"name": "High"}}}});
    assert_eq!(r.post("jira", &issue, "att-0").await, 202);
    // when an attachment from another site (the fixture's own URL)
    assert_eq!(r.post("jira", &created, "att-1").await, 202);
    // and one too large are posted
    let mut big = created.clone();
    // Another attachment (its own id: the same id is the same change, deduplicated).
    big["attachment"]["id"] = json!("10001");
    big["attachment"]["content"] =
        json!(r
            .jira
            .add_file("big.bin", "application/octet-stream", vec![7u8; 4096]));
    assert_eq!(r.post("jira", &big, "att-2").await, 202);
    r.pump().await;
    // then both are dead letters with their reasons
    let dead = r.dead_letters().await;
    let reasons: Vec<&str> = dead.iter().map(|(r, _)| r.as_str()).collect();
    assert_eq!(reasons.len(), 2, "{reasons:?}");
    assert!(
        reasons[0].starts_with("attachment_url_not_allowed: "),
        "{reasons:?}"
    );
    assert!(
        reasons[1].starts_with("attachment_too_large: "),
        "{reasons:?}"
    );
    assert!(r.sn.attachments().is_empty());
}

#[tokio::test]
async fn attachments_are_copied_to_jira_as_multipart() {
    // given an issue and its attachment on the Jira source
    let Some(r) = Relay::start("jira-to-jira").await else {
        return;
    };
    let created = fixture("mattermost__jira-issue-created_cloud.json").unwrap();
    let url = r
        .jira
        .add_file("trace.log", "text/plain", b"line 1\nline 2\n".to_vec());
    let mut attachment = retarget(
        fixture("zulip__attachment-created_cloud.json").unwrap(),
        "KT-22",
        "10509",
    );
    attachment["attachment"]["content"] = json!(url);
    attachment["attachment"]["filename"] = json!("trace.log");
    attachment["attachment"]["mimeType"] = json!("text/plain");
    // The example's whitelist admits listed projects only; this fixture's
    // issue carries no project, so it would be filtered (as it should).
    attachment["issue"]["fields"]["project"] = json!({"key": "KT"});
    // when
    assert_eq!(r.post_signed("jira-cloud", &created, "ja-1").await, 202);
    assert_eq!(r.post_signed("jira-cloud", &attachment, "ja-2").await, 202);
    assert_eq!(r.pump().await, 0);
    // then
    assert!(r.dead_letters().await.is_empty());
    let violations = r.jira.violations();
    assert!(violations.is_empty(), "{violations:?}");
    let copy = r
        .jira
        .issues()
        .into_iter()
        .find(|i| i.key.starts_with("OPS-"))
        .unwrap();
    assert_eq!(copy.attachments.len(), 1);
    assert_eq!(copy.attachments[0].filename, "trace.log");
    assert_eq!(copy.attachments[0].mime, "text/plain");
    assert_eq!(copy.attachments[0].bytes, b"line 1\nline 2\n");
    let upload = r
        .jira
        .requests()
        .into_iter()
        .find(|q| q.path.ends_with("/attachments"))
        .unwrap();
    assert_eq!(upload.header("x-atlassian-token"), Some("no-check"));
    assert!(upload
        .header("content-type")
        .unwrap()
        .starts_with("multipart/form-data; boundary="));
}

#[tokio::test]
async fn attachment_redirects_are_followed_only_within_the_allowed_hosts() {
    // given an issue
    let Some(r) = Relay::start("jira-to-servicenow").await else {
        return;
    };
    let issue = json!({"webhookEvent": "jira:issue_created", "issue_event_type_name": "issue_created",
        "user": {"accountId": "5c76b994e1bcdf6294d0eb0f"},
        "issue": {"id": "10000", "key": "BUG-15", "fields": {"summary": "Redirects", "priority": {"name": "High"}}}});
    assert_eq!(r.post("jira", &issue, "rd-0").await, 202);
    assert_eq!(r.pump().await, 0);
    let attachment = |id: &str, name: &str, url: &str| {
        let mut a = fixture("zulip__attachment-created_cloud.json").unwrap();
        a["attachment"]["id"] = json!(id);
        a["attachment"]["filename"] = json!(name);
        a["attachment"]["content"] = json!(url);
        a["attachment"]["size"] = json!(6);
        a
    };
    // when an attachment's download redirects under the Jira base URL
    let url = r.jira.add_file("ok.txt", "text/plain", b"fine!\n".to_vec());
    r.jira.set_content_redirect(Some(format!(
        "{}/rest/api/3/attachment/content/{{id}}?redirect=false",
        r.jira.base_url()
    )));
    assert_eq!(
        r.post("jira", &attachment("20001", "ok.txt", &url), "rd-1")
            .await,
        202
    );
    assert_eq!(r.pump().await, 0);
    // then it is followed
    assert!(r.dead_letters().await.is_empty());
    assert_eq!(r.sn.attachments().len(), 1);
    // when it redirects to another host (here another port on loopback:
    // another origin)
    let url = r
        .jira
        .add_file("evil.txt", "text/plain", b"nope!\n".to_vec());
    r.jira
        .set_content_redirect(Some(format!("{}/steal/{{id}}", r.hook.url)));
    assert_eq!(
        r.post("jira", &attachment("20002", "evil.txt", &url), "rd-2")
            .await,
        202
    );
    r.pump().await;
    // then it is not followed: the credentials and the request stay home
    let dead = r.dead_letters().await;
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert!(
        dead[0]
            .0
            .starts_with("attachment_redirect_not_allowed: 302"),
        "{dead:?}"
    );
    assert!(
        r.hook.seen.lock().unwrap().is_empty(),
        "the other host got nothing"
    );
    assert_eq!(r.sn.attachments().len(), 1);
}
