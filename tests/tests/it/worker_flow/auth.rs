//! Target credentials: a rotated password re-read after a 401, OAuth client
//! credentials for ServiceNow and Jira (tokens cached, renewed after a 401).

use super::*;

#[tokio::test]
async fn a_rotated_password_is_reread_after_a_401() {
    // given an incident created with the first password
    let Some(r) = Relay::start("jira-to-servicenow").await else {
        return;
    };
    let created = fixture("relay-jira__jira-issue-created_cloud.json").unwrap();
    assert_eq!(r.post("jira", &created, "rot-1").await, 202);
    r.pump().await;
    // when the password is rotated: ServiceNow and the secret change; the
    // worker's cached copy is stale
    r.rotate_servicenow_password("snow-password-2").await;
    // and an update follows
    let status = retarget(
        fixture("mattermost__jira-issue-updated-status_cloud.json").unwrap(),
        "REL-23",
        "10022",
    );
    assert_eq!(r.post("jira", &status, "rot-2").await, 202);
    // then the worker re-reads it after the 401 and applies the update
    assert_eq!(r.pump().await, 0);
    assert_eq!(text(&r.incident("REL-23")["state"]), "6");
}

#[tokio::test]
async fn servicenow_oauth_tokens_are_cached_and_renewed_after_a_401() {
    // given ServiceNow over OAuth client credentials
    let Some(r) = Relay::start_with(
        "jira-to-servicenow",
        |y, s| {
            set_auth(
                &y,
                "servicenow",
                &format!(
                    "    auth:\n      kind: oauth2\n      client_id: {p}/servicenow#client_id\n      client_secret: {p}/servicenow#client_secret\n      token_url: {sn}/oauth_token.do",
                    p = s.prefix,
                    sn = s.sn
                ),
            )
        },
        ConnectorSettings::default(),
    )
    .await
    else {
        return;
    };
    // when a create and a comment are applied
    let (key, id) = ("KT-22", "10509");
    let created = fixture("mattermost__jira-issue-created_cloud.json").unwrap();
    let comment = retarget(
        fixture("mattermost__comment-created_cloud.json").unwrap(),
        key,
        id,
    );
    assert_eq!(r.post("jira", &created, "o-1").await, 202);
    assert_eq!(r.post("jira", &comment, "o-2").await, 202);
    assert_eq!(r.pump().await, 0);
    // then one token served every call
    assert_eq!(r.sn.oauth_tokens_issued(), 1, "one token for every call");
    // when the token is revoked early
    r.sn.expire_tokens();
    let status = retarget(
        fixture("mattermost__jira-issue-updated-status_cloud.json").unwrap(),
        key,
        id,
    );
    assert_eq!(r.post("jira", &status, "o-3").await, 202);
    assert_eq!(r.pump().await, 0);
    // then the 401 brings a new one and the event still applies
    assert_eq!(r.sn.oauth_tokens_issued(), 2);
    assert_eq!(text(&r.incident(key)["state"]), "6");
    assert!(r
        .sn
        .requests()
        .iter()
        .filter(|q| q.path != "/oauth_token.do")
        .all(|q| q.header("authorization") == Some("<redacted>")));
}

#[tokio::test]
async fn jira_oauth_client_credentials() {
    // given Jira over OAuth client credentials
    let Some(r) = Relay::start_with(
        "servicenow-to-jira",
        |y, s| {
            set_auth(
                &y,
                "jira",
                &format!(
                    "    auth:\n      kind: oauth2\n      client_id: {p}/jira#client_id\n      client_secret: {p}/jira#client_secret\n      token_url: {j}/oauth/token",
                    p = s.prefix,
                    j = s.jira
                ),
            )
        },
        ConnectorSettings::default(),
    )
    .await
    else {
        return;
    };
    // when
    for name in [
        "servicenow-incident-created.json",
        "servicenow-incident-commented.json",
    ] {
        assert_eq!(r.post_sn(&sn_event(name)).await, 202);
    }
    assert_eq!(r.pump().await, 0);
    // then
    assert_eq!(r.jira.oauth_tokens_issued(), 1);
    assert_eq!(r.jira.issues()[0].comments.len(), 1);
}
