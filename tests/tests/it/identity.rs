//! People, not tickets (`examples/servicenow-users-to-jira.yaml`): a joiner in
//! ServiceNow becomes a Jira Cloud account in the mapped group, a mover
//! changes Jira group membership, a leaver loses the product groups and
//! nothing is deleted, and an account removed from the Jira site deactivates
//! the ServiceNow user. Each with the echoes the systems send for the relay's
//! own writes, and with lost answers on the Jira writes.

use crate::worker_flow::{Relay, JIRA_EMAIL, JIRA_TOKEN, SN_USER};
use relay_tests::text;
use sandbox::faults::{Fault, Match};
use serde_json::{json, Value};

const GROUPS: [&str; 3] = [
    "jira-software-users",
    "jira-servicemanagement-users",
    "jira-admins",
];

async fn start() -> Option<Relay> {
    let r = Relay::start("servicenow-users-to-jira").await?;
    r.jira.set_basic(JIRA_EMAIL, JIRA_TOKEN);
    for g in GROUPS {
        r.jira.add_group(g);
    }
    r.sn.allow_fields("sys_user", &["u_jira_account_id", "locked_out"]);
    Some(r)
}

/// A ServiceNow user (as an admin creates it) and its `sys_user.created`.
fn new_user(r: &Relay, user_name: &str) -> (String, Value) {
    let email = format!("{user_name}@example.com");
    let sys_id = r.sn.seed(
        "sys_user",
        json!({"user_name": user_name, "email": email, "name": user_name.replace('.', " "), "active": "true"}),
    );
    let event = json!({"event": "sys_user.created", "sys_id": sys_id, "user_name": user_name,
        "email": email, "name": user_name.replace('.', " "), "active": "true",
        "sys_updated_by": "admin", "sys_updated_on": "2026-12-06 07:00:00", "changes": []});
    (sys_id, event)
}

fn membership(sys_id: &str, user_name: &str, group: &str, op: &str, n: u32) -> Value {
    json!({"event": format!("sys_user_grmember.{op}"), "sys_id": sys_id, "membership": format!("m-{n}"),
        "user_name": user_name, "email": format!("{user_name}@example.com"), "active": "true",
        "group": group, "sys_updated_by": "admin", "sys_updated_on": format!("2026-12-06 07:0{n}:00")})
}

fn account_of(r: &Relay, email: &str) -> String {
    let all = r.jira.accounts();
    let mine: Vec<_> = all
        .iter()
        .filter(|(_, e, _)| e.as_deref() == Some(email))
        .collect();
    assert_eq!(mine.len(), 1, "one account for {email}: {all:?}");
    mine[0].0.clone()
}

fn members(r: &Relay, group: &str) -> Vec<String> {
    r.jira.group_members(group).unwrap()
}

/// Writes the relay made to Jira and ServiceNow, by method and path.
fn writes(r: &Relay) -> Vec<String> {
    let jira = r.jira.requests();
    let sn = r.sn.requests();
    jira.iter()
        .chain(sn.iter())
        .filter(|q| q.method != "GET")
        .map(|q| format!("{} {}", q.method, q.path))
        .collect()
}

/// Posts the webhooks the systems send about the relay's own writes and
/// checks that the relay writes nothing more.
async fn no_echo(r: &Relay, sn: &[Value], jira: &[Value]) {
    let before = writes(r);
    for e in sn {
        assert_eq!(r.post_sn(e).await, 202);
    }
    for (i, e) in jira.iter().enumerate() {
        assert_eq!(r.post("jira", e, &format!("echo-{i}")).await, 202);
    }
    assert_eq!(r.pump().await, 0);
    assert_eq!(writes(r), before, "an echo made the relay write again");
    assert!(r.dead_letters().await.is_empty());
}

#[tokio::test]
async fn a_joiner_becomes_a_jira_account_in_the_mapped_group() {
    // given a new active ServiceNow user in a mapped group, the membership
    // event arriving before the user's, and Jira losing the create's answer
    let Some(r) = start().await else { return };
    let (sys_id, created) = new_user(&r, "ann.lee");
    r.jira.faults().push(
        Match::method_path(http::Method::POST, "/rest/api/3/user"),
        Fault::answer_dropped(),
        1,
    );
    // when
    let joined = membership(&sys_id, "ann.lee", "Software Engineering", "created", 1);
    assert_eq!(r.post_sn(&joined).await, 202);
    assert_eq!(r.post_sn(&created).await, 202);
    r.pump().await;
    // then one account, with Jira Software, in jira-software-users only
    let id = account_of(&r, "ann.lee@example.com");
    assert_eq!(r.jira.faults().count("answer_lost"), 1);
    let products = r.jira.accounts().into_iter().find(|a| a.0 == id).unwrap().2;
    assert_eq!(products, ["jira-software"]);
    assert_eq!(
        members(&r, "jira-software-users"),
        std::slice::from_ref(&id)
    );
    assert!(members(&r, "jira-servicemanagement-users").is_empty());
    // and the pairing is in the ServiceNow user
    let user = r.sn.find("sys_user", "sys_id", &sys_id).unwrap();
    assert_eq!(text(&user["u_jira_account_id"]), id);
    assert!(r.dead_letters().await.is_empty());
    assert!(r.jira.violations().is_empty(), "{:?}", r.jira.violations());
    // A group that grants no Jira access is skipped.
    let other = membership(&sys_id, "ann.lee", "Facilities", "created", 2);
    assert_eq!(r.post_sn(&other).await, 202);
    assert_eq!(r.pump().await, 0);
    // and the echoes change nothing: ServiceNow's update of the user by the
    // integration user (the pairing), Jira's user_created for the account
    let echo_sn = json!({"event": "sys_user.updated", "sys_id": sys_id, "user_name": "ann.lee",
        "email": "ann.lee@example.com", "active": "true", "sys_updated_by": SN_USER,
        "sys_updated_on": "2026-12-06 07:05:00",
        "changes": [{"field": "u_jira_account_id", "from": "", "to": id}]});
    let echo_jira = json!({"webhookEvent": "user_created", "timestamp": 1765004700000u64,
        "user": {"accountId": id, "displayName": "ann lee", "accountType": "atlassian", "active": true}});
    no_echo(&r, &[echo_sn], &[echo_jira]).await;
}

#[tokio::test]
async fn a_mover_changes_groups_and_a_leaver_loses_access_with_nothing_deleted() {
    // given a joiner in Software Engineering
    let Some(r) = start().await else { return };
    let (sys_id, created) = new_user(&r, "bo.chen");
    assert_eq!(r.post_sn(&created).await, 202);
    let joined = membership(&sys_id, "bo.chen", "Software Engineering", "created", 1);
    assert_eq!(r.post_sn(&joined).await, 202);
    r.pump().await;
    let id = account_of(&r, "bo.chen@example.com");
    assert_eq!(
        members(&r, "jira-software-users"),
        std::slice::from_ref(&id)
    );
    // when the user moves to the Service Desk, Jira losing the add's answer
    r.jira.faults().push(
        Match::method_path(http::Method::POST, "/rest/api/3/group/user"),
        Fault::answer_dropped(),
        1,
    );
    let left = membership(&sys_id, "bo.chen", "Software Engineering", "deleted", 2);
    let joined = membership(&sys_id, "bo.chen", "Service Desk", "created", 3);
    assert_eq!(r.post_sn(&left).await, 202);
    assert_eq!(r.post_sn(&joined).await, 202);
    r.pump().await;
    // then the Jira groups follow, the add made once (no "already a member")
    assert!(members(&r, "jira-software-users").is_empty());
    assert_eq!(
        members(&r, "jira-servicemanagement-users"),
        std::slice::from_ref(&id)
    );
    assert_eq!(r.jira.faults().count("answer_lost"), 1);
    assert!(r.dead_letters().await.is_empty());
    // when the user leaves (active=false)
    let deactivated = json!({"event": "sys_user.updated", "sys_id": sys_id, "user_name": "bo.chen",
        "email": "bo.chen@example.com", "active": "false", "sys_updated_by": "admin",
        "sys_updated_on": "2026-12-06 07:09:00",
        "changes": [{"field": "active", "from": "true", "to": "false"}]});
    assert_eq!(r.post_sn(&deactivated).await, 202);
    r.pump().await;
    // then no group grants the account Jira access any more, the account is
    // still there and nothing was deleted but memberships
    for g in GROUPS {
        assert!(members(&r, g).is_empty(), "{g}");
    }
    account_of(&r, "bo.chen@example.com");
    let deletes: Vec<String> = writes(&r)
        .into_iter()
        .filter(|w| w.starts_with("DELETE"))
        .collect();
    assert!(
        deletes
            .iter()
            .all(|d| d.ends_with("/rest/api/3/group/user")),
        "{deletes:?}"
    );
    assert_eq!(deletes.len(), 2, "{deletes:?}");
    assert!(r.dead_letters().await.is_empty());
    assert!(r.jira.violations().is_empty(), "{:?}", r.jira.violations());
}

#[tokio::test]
async fn an_account_removed_in_jira_deactivates_the_servicenow_user() {
    // given a paired joiner
    let Some(r) = start().await else { return };
    let (sys_id, created) = new_user(&r, "cy.diaz");
    assert_eq!(r.post_sn(&created).await, 202);
    r.pump().await;
    let id = account_of(&r, "cy.diaz@example.com");
    // when an admin removes the account from the Jira site
    let deleted = json!({"webhookEvent": "user_deleted", "timestamp": 1765005000000u64,
        "user": {"accountId": id, "displayName": "cy diaz", "accountType": "atlassian"}});
    assert_eq!(r.post("jira", &deleted, "user-del-1").await, 202);
    // (Jira retries the same delivery: one change)
    assert_eq!(r.post("jira", &deleted, "user-del-1").await, 202);
    r.pump().await;
    // then the ServiceNow user is deactivated and locked out, not deleted
    let users = r.sn.records("sys_user");
    assert_eq!(users.len(), 1);
    let user = r.sn.find("sys_user", "sys_id", &sys_id).unwrap();
    assert_eq!(text(&user["active"]), "false");
    assert_eq!(text(&user["locked_out"]), "true");
    assert!(writes(&r).iter().all(|w| !w.starts_with("DELETE")));
    assert!(r.dead_letters().await.is_empty());
    // and ServiceNow's update by the integration user is no new leaver
    let echo = json!({"event": "sys_user.updated", "sys_id": sys_id, "user_name": "cy.diaz",
        "email": "cy.diaz@example.com", "active": "false", "sys_updated_by": SN_USER,
        "sys_updated_on": "2026-12-06 07:12:00",
        "changes": [{"field": "active", "from": "true", "to": "false"}]});
    no_echo(&r, &[echo], &[]).await;
}

/// The Jira groups of the Data Center example.
const DC_GROUPS: [&str; 3] = [
    "jira-software-users",
    "jira-servicedesk-users",
    "jira-administrators",
];

/// Jira Data Center (`examples/servicenow-users-to-jira-datacenter.yaml`).
async fn start_dc() -> Option<Relay> {
    let r = Relay::start("servicenow-users-to-jira-datacenter").await?;
    r.jira.set_data_center(true);
    DC_GROUPS.iter().for_each(|g| r.jira.add_group(g));
    r.sn.allow_fields("sys_user", &["u_jira_username", "locked_out"]);
    Some(r)
}

/// The Data Center users with `email`: (username, active, application keys).
fn dc_users(r: &Relay, email: &str) -> Vec<(String, bool, Vec<String>)> {
    r.jira
        .dc_accounts()
        .into_iter()
        .filter(|a| a.2.as_deref() == Some(email))
        .map(|(_, name, _, active, keys)| (name, active, keys))
        .collect()
}

fn groups_of(r: &Relay, username: &str) -> Vec<&'static str> {
    let key = r
        .jira
        .dc_accounts()
        .into_iter()
        .find(|a| a.1 == username)
        .map(|a| a.0)
        .unwrap();
    DC_GROUPS
        .into_iter()
        .filter(|g| members(r, g).contains(&key))
        .collect()
}

#[tokio::test]
async fn data_center_joiner_mover_leaver_and_returner_by_username() {
    // given Jira Data Center, a joiner whose membership arrives first, and
    // Jira losing the answer of the user's create
    let Some(r) = start_dc().await else { return };
    let (sys_id, created) = new_user(&r, "dee.ng");
    r.jira.faults().push(
        Match::method_path(http::Method::POST, "/rest/api/2/user"),
        Fault::answer_dropped(),
        1,
    );
    let joined = membership(&sys_id, "dee.ng", "Software Engineering", "created", 1);
    assert_eq!(r.post_sn(&joined).await, 202);
    assert_eq!(r.post_sn(&created).await, 202);
    r.pump().await;
    // then one user named by the ServiceNow user_name, Jira Software access,
    // in jira-software-users, paired in ServiceNow by username
    assert_eq!(r.jira.faults().count("answer_lost"), 1);
    assert_eq!(
        dc_users(&r, "dee.ng@example.com"),
        [("dee.ng".to_owned(), true, vec!["jira-software".to_owned()])]
    );
    assert_eq!(groups_of(&r, "dee.ng"), ["jira-software-users"]);
    let user = r.sn.find("sys_user", "sys_id", &sys_id).unwrap();
    assert_eq!(text(&user["u_jira_username"]), "dee.ng");

    // when the user moves to the Service Desk, Jira losing the add's answer
    r.jira.faults().push(
        Match::method_path(http::Method::POST, "/rest/api/2/group/user"),
        Fault::answer_dropped(),
        1,
    );
    let left = membership(&sys_id, "dee.ng", "Software Engineering", "deleted", 2);
    let joined = membership(&sys_id, "dee.ng", "Service Desk", "created", 3);
    assert_eq!(r.post_sn(&left).await, 202);
    assert_eq!(r.post_sn(&joined).await, 202);
    r.pump().await;
    assert_eq!(groups_of(&r, "dee.ng"), ["jira-servicedesk-users"]);

    // when the user leaves: deactivated, groups and account kept
    let leaver = |active: &str, at: &str| {
        json!({"event": "sys_user.updated", "sys_id": sys_id, "user_name": "dee.ng",
            "email": "dee.ng@example.com", "name": "dee ng", "active": active, "sys_updated_by": "admin",
            "sys_updated_on": at,
            "changes": [{"field": "active", "from": if active == "true" { "false" } else { "true" }, "to": active}]})
    };
    assert_eq!(
        r.post_sn(&leaver("false", "2026-12-06 07:09:00")).await,
        202
    );
    r.pump().await;
    assert_eq!(
        dc_users(&r, "dee.ng@example.com"),
        [("dee.ng".to_owned(), false, vec!["jira-software".to_owned()])]
    );
    assert_eq!(groups_of(&r, "dee.ng"), ["jira-servicedesk-users"]);

    // when the person returns: the same account reactivated, not a second one
    assert_eq!(r.post_sn(&leaver("true", "2026-12-06 07:19:00")).await, 202);
    r.pump().await;
    assert_eq!(
        dc_users(&r, "dee.ng@example.com"),
        [("dee.ng".to_owned(), true, vec!["jira-software".to_owned()])]
    );
    // an update that changes nothing sends nothing (the state is read first)
    let before = writes(&r);
    let phone = json!({"event": "sys_user.updated", "sys_id": sys_id, "user_name": "dee.ng",
        "email": "dee.ng@example.com", "name": "dee ng", "active": "true", "sys_updated_by": "admin",
        "sys_updated_on": "2026-12-06 07:29:00",
        "changes": [{"field": "phone", "from": "", "to": "555"}]});
    assert_eq!(r.post_sn(&phone).await, 202);
    r.pump().await;
    assert_eq!(writes(&r), before);
    assert!(writes(&r)
        .iter()
        .all(|w| !w.starts_with("DELETE /rest/api/2/user")));
    assert!(r.dead_letters().await.is_empty());
    assert!(r.jira.violations().is_empty(), "{:?}", r.jira.violations());

    // and the pairing echo changes nothing; a user deleted in Jira
    // deactivates the ServiceNow user
    let echo_sn = json!({"event": "sys_user.updated", "sys_id": sys_id, "user_name": "dee.ng",
        "email": "dee.ng@example.com", "active": "true", "sys_updated_by": SN_USER,
        "sys_updated_on": "2026-12-06 07:31:00",
        "changes": [{"field": "u_jira_username", "from": "", "to": "dee.ng"}]});
    no_echo(&r, &[echo_sn], &[]).await;
    let deleted = json!({"webhookEvent": "user_deleted", "timestamp": 1765005000000u64,
        "user": {"name": "dee.ng", "key": "JIRAUSER10100", "displayName": "dee ng"}});
    assert_eq!(r.post("jira", &deleted, "dc-user-del-1").await, 202);
    r.pump().await;
    let user = r.sn.find("sys_user", "sys_id", &sys_id).unwrap();
    assert_eq!(text(&user["active"]), "false");
    assert_eq!(text(&user["locked_out"]), "true");
    assert!(r.dead_letters().await.is_empty());
}

#[tokio::test]
async fn data_center_pairs_an_existing_user_instead_of_a_second_one() {
    // given a Data Center user an admin made by hand for the same address
    // (Data Center would accept a second user with that address)
    let Some(r) = start_dc().await else { return };
    let pat = crate::worker_flow::DC_PAT;
    let c = reqwest::Client::new();
    let made = c
        .post(format!("{}/rest/api/2/user", r.jira.base_url()))
        .bearer_auth(pat)
        .json(
            &json!({"name": "eli.ross.old", "emailAddress": "eli.ross@example.com",
                      "displayName": "Eli Ross", "applicationKeys": ["jira-software"]}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(made.status(), 201);
    // when ServiceNow sends the joiner (username eli.ross)
    let (sys_id, created) = new_user(&r, "eli.ross");
    assert_eq!(r.post_sn(&created).await, 202);
    r.pump().await;
    // then the existing user is paired, and no second one is made
    assert_eq!(
        dc_users(&r, "eli.ross@example.com"),
        [(
            "eli.ross.old".to_owned(),
            true,
            vec!["jira-software".to_owned()]
        )]
    );
    let user = r.sn.find("sys_user", "sys_id", &sys_id).unwrap();
    assert_eq!(text(&user["u_jira_username"]), "eli.ross.old");
    assert!(r.dead_letters().await.is_empty());
    assert!(r.jira.violations().is_empty(), "{:?}", r.jira.violations());
}

/// The user sweep (`reconcile_users`) of the Cloud example, applied: a
/// ServiceNow member with no Jira account, one missing from a group, one
/// ServiceNow deactivated who is still in a group, and two Jira members
/// ServiceNow does not know (an admin, an address Jira hides).
#[tokio::test]
async fn the_user_sweep_reports_then_heals_group_membership() {
    use shared::outbound::executor::Connectors;
    use shared::outbound::rest::http_client;
    use shared::outbound::{Budget, ConnectorSettings};
    use shared::reconcile::{MemoryStore, Reconciler};
    use std::sync::Arc;

    let Some(r) = Relay::start_with_config("examples/servicenow-users-to-jira.yaml", |y, _| {
        y.replace("      apply: false\n", "      apply: true\n")
    })
    .await
    else {
        return;
    };
    r.jira.set_basic(JIRA_EMAIL, JIRA_TOKEN);
    GROUPS.iter().for_each(|g| r.jira.add_group(g));
    r.sn.allow_fields("sys_user", &["u_jira_account_id", "locked_out"]);
    // ServiceNow: groups, users, memberships.
    let eng =
        r.sn.seed("sys_user_group", json!({"name": "Software Engineering"}));
    let desk = r.sn.seed("sys_user_group", json!({"name": "Service Desk"}));
    let user = |name: &str, active: &str| {
        r.sn.seed(
            "sys_user",
            json!({"user_name": name, "email": format!("{name}@example.com"),
                   "name": name.replace('.', " "), "active": active}),
        )
    };
    let (ann, bo, cy) = (
        user("ann.lee", "true"),
        user("bo.chen", "true"),
        user("cy.diaz", "false"),
    );
    for (u, g) in [(&ann, &eng), (&bo, &eng), (&bo, &desk), (&cy, &eng)] {
        r.sn.seed("sys_user_grmember", json!({"user": u, "group": g}));
    }
    // Jira: bo and cy in jira-software-users; an admin and a hidden address.
    r.jira
        .add_user("712020:bo", "bo chen", Some("bo.chen@example.com"));
    r.jira
        .add_user("712020:cy", "cy diaz", Some("cy.diaz@example.com"));
    r.jira
        .add_user("712020:admin", "Site Admin", Some("admin@example.com"));
    r.jira.add_user("712020:hidden", "Hidden", None);
    r.jira
        .add_user("712020:bot", "Service Bot", Some("svc.bot@example.com"));
    let c = reqwest::Client::new();
    for (id, g) in [
        ("712020:bo", "jira-software-users"),
        ("712020:cy", "jira-software-users"),
        ("712020:hidden", "jira-software-users"),
        ("712020:bot", "jira-software-users"),
        ("712020:admin", "jira-admins"),
    ] {
        let s = c
            .post(format!(
                "{}/rest/api/3/group/user?groupname={g}",
                r.jira.base_url()
            ))
            .basic_auth(JIRA_EMAIL, Some(JIRA_TOKEN))
            .json(&json!({"accountId": id}))
            .send()
            .await
            .unwrap()
            .status();
        assert_eq!(s, 201);
    }
    let connectors = Connectors::from_config(
        &r.config,
        http_client(),
        r.secrets.clone(),
        ConnectorSettings::default(),
    );
    let rec = Reconciler::new(
        r.config.clone(),
        connectors,
        Arc::new(shared::queue::SqsQueue::from_conf(&r.aws, r.queue_url())),
        Arc::new(MemoryStore::new()),
        Arc::new(shared::support::clock::SystemClock),
    );
    let budget = || Budget::from_now(std::time::Duration::from_secs(60));

    // when: a dry run first
    let dry = rec
        .sweep_users("servicenow", true, &budget())
        .await
        .unwrap();
    // then: what differs, per Jira group, and nothing queued or written
    let group = |rep: &shared::reconcile::UserSweepReport, g: &str| {
        rep.groups
            .iter()
            .find(|x| x.jira_group == g)
            .unwrap()
            .clone()
    };
    let sw = group(&dry, "jira-software-users");
    assert_eq!(sw.missing, ["ann.lee@example.com"]);
    assert_eq!(sw.extra, ["cy.diaz@example.com"]);
    assert_eq!(
        sw.unmanaged, 2,
        "the hidden address, the bot ServiceNow does not know"
    );
    assert_eq!(
        group(&dry, "jira-servicemanagement-users").missing,
        ["bo.chen@example.com"]
    );
    let admins = group(&dry, "jira-admins");
    // ("Jira Administrators" is not a ServiceNow group here: its Jira group
    // is not emptied for that)
    assert_eq!(dry.unknown_servicenow_groups, ["Jira Administrators"]);
    assert!(admins.extra.is_empty(), "{admins:?}");
    assert!(
        admins
            .removals_held
            .as_deref()
            .is_some_and(|h| h.contains("`Jira Administrators`")),
        "{admins:?}"
    );
    assert_eq!((dry.enqueued, dry.drift()), (0, 3));
    assert_eq!(r.pump().await, 0);

    // when: applied, and the worker runs
    let done = rec
        .sweep_users("servicenow", false, &budget())
        .await
        .unwrap();
    assert_eq!(done.enqueued, 5, "{done:?}");
    r.pump().await;
    // then: ann has an account in jira-software-users, bo is in both of his
    // groups, cy is out, the admin and the hidden account are untouched
    let ann_id = account_of(&r, "ann.lee@example.com");
    let mut sw = members(&r, "jira-software-users");
    sw.sort();
    let mut want = vec![
        ann_id,
        "712020:bo".to_owned(),
        "712020:bot".to_owned(),
        "712020:hidden".to_owned(),
    ];
    want.sort();
    assert_eq!(sw, want);
    assert_eq!(members(&r, "jira-servicemanagement-users"), ["712020:bo"]);
    assert_eq!(members(&r, "jira-admins"), ["712020:admin"]);
    assert_eq!(
        account_of(&r, "cy.diaz@example.com"),
        "712020:cy",
        "nothing deleted"
    );
    assert!(r.dead_letters().await.is_empty());
    assert!(r.jira.violations().is_empty(), "{:?}", r.jira.violations());

    // and a sweep after that finds nothing to do
    let again = rec
        .sweep_users("servicenow", false, &budget())
        .await
        .unwrap();
    assert_eq!((again.drift(), again.enqueued), (0, 0), "{again:?}");
}

/// The Cloud example with the organization admin API turned on: an `http`
/// connection to it, `org_admin` on the Jira connection, leavers deactivated
/// and returners reactivated.
fn with_org_admin(yaml: String, s: &crate::worker_flow::Servers) -> String {
    let org = format!(
        "connections:\n  - name: atlassian-org\n    kind: http\n    base_url: {}\n    auth:\n      kind: bearer\n      token: {}/atlassian-org#api_key\n",
        s.jira, s.prefix
    );
    let leaver = "\n  - name: leaver deactivated\n    from: servicenow\n    when:\n      events: [sys_user.updated]\n      conditions:\n        - { changed: active, to: \"false\" }\n    to: jira\n    action: user\n    correlate: { key: email, field: emailAddress }\n    map:\n      active: { value: false }\n";
    let y = yaml
        .replacen("connections:\n", &org, 1)
        .replacen(
            "    api: v3\n    auth:\n      kind: email_token",
            "    api: v3\n    org_admin: atlassian-org\n    auth:\n      kind: email_token",
            1,
        )
        .replacen(
            "      products: { value: [jira-software] }\n",
            "      products: { value: [jira-software] }\n      active: { value: true }\n",
            1,
        );
    assert!(y.contains("org_admin: atlassian-org") && y.contains("active: { value: true }"));
    y + leaver
}

#[tokio::test]
async fn a_cloud_leaver_is_deactivated_through_the_organization_admin_api() {
    // given the organization admin API (its own key), a paired joiner
    let Some(r) =
        Relay::start_with_config("examples/servicenow-users-to-jira.yaml", with_org_admin).await
    else {
        return;
    };
    r.jira.set_basic(JIRA_EMAIL, JIRA_TOKEN);
    r.jira.set_org_api_key(crate::worker_flow::ORG_API_KEY);
    GROUPS.iter().for_each(|g| r.jira.add_group(g));
    r.sn.allow_fields("sys_user", &["u_jira_account_id", "locked_out"]);
    let (sys_id, created) = new_user(&r, "gus.ward");
    assert_eq!(r.post_sn(&created).await, 202);
    r.pump().await;
    let id = account_of(&r, "gus.ward@example.com");
    assert_eq!(r.jira.account_active(&id), Some(true));
    // when the person leaves, and the admin API's answer is lost
    let path = format!("/users/{}/manage/lifecycle/disable", id.replace(':', "%3A"));
    r.jira.faults().push(
        Match::method_path(http::Method::POST, &path),
        Fault::answer_dropped(),
        1,
    );
    let left = |active: &str, at: &str| {
        json!({"event": "sys_user.updated", "sys_id": sys_id, "user_name": "gus.ward",
            "email": "gus.ward@example.com", "name": "gus ward", "active": active,
            "sys_updated_by": "admin", "sys_updated_on": at,
            "changes": [{"field": "active", "from": if active == "true" { "false" } else { "true" }, "to": active}]})
    };
    assert_eq!(r.post_sn(&left("false", "2026-12-06 08:00:00")).await, 202);
    r.pump().await;
    // then the account is deactivated (once: the retry found it so) and kept
    let lifecycle = |verb: &str| {
        r.jira
            .requests()
            .iter()
            .filter(|q| q.method == "POST" && q.path.ends_with(&format!("/lifecycle/{verb}")))
            .count()
    };
    assert_eq!(
        r.jira.faults().count("answer_lost"),
        1,
        "{:?}",
        r.jira
            .requests()
            .iter()
            .map(|q| q.path.clone())
            .collect::<Vec<_>>()
    );
    assert_eq!(r.jira.account_active(&id), Some(false));
    assert_eq!(lifecycle("disable"), 1);
    assert!(r.dead_letters().await.is_empty());
    // when the person returns
    assert_eq!(r.post_sn(&left("true", "2026-12-06 09:00:00")).await, 202);
    r.pump().await;
    // then the same account is active again, no second one
    assert_eq!(r.jira.account_active(&id), Some(true));
    assert_eq!(account_of(&r, "gus.ward@example.com"), id);
    assert_eq!(lifecycle("enable"), 1);
    // and an update that changes nothing sends nothing to the admin API
    let phone = json!({"event": "sys_user.updated", "sys_id": sys_id, "user_name": "gus.ward",
        "email": "gus.ward@example.com", "name": "gus ward", "active": "true",
        "sys_updated_by": "admin", "sys_updated_on": "2026-12-06 10:00:00",
        "changes": [{"field": "phone", "from": "", "to": "555"}]});
    assert_eq!(r.post_sn(&phone).await, 202);
    r.pump().await;
    assert_eq!((lifecycle("disable"), lifecycle("enable")), (1, 1));
    assert!(r.dead_letters().await.is_empty());
    assert!(r.jira.violations().is_empty(), "{:?}", r.jira.violations());
}

/// `group_member` toward ServiceNow: an account created in Jira puts the
/// paired ServiceNow user in "Jira Users", one removed from the site takes
/// them out; a group ServiceNow does not have is a dead letter with its
/// reason.
#[tokio::test]
async fn jira_accounts_drive_servicenow_group_membership() {
    let rules = "\n  - name: jira users group\n    from: jira\n    when:\n      events: [user_created]\n    to: servicenow\n    action: group_member\n    correlate: { key: user.accountId, field: u_jira_account_id }\n    map:\n      group: { value: Jira Users }\n  - name: jira users group left\n    from: jira\n    when:\n      events: [user_deleted]\n    to: servicenow\n    action: group_member\n    correlate: { key: user.accountId, field: u_jira_account_id }\n    map:\n      group: { value: [Jira Users, Jira Admins] }\n      member: { value: false }\n";
    let Some(r) =
        Relay::start_with_config("examples/servicenow-users-to-jira.yaml", |y, _| y + rules).await
    else {
        return;
    };
    r.sn.allow_fields("sys_user", &["u_jira_account_id", "locked_out"]);
    let user = r.sn.seed(
        "sys_user",
        json!({"user_name": "hal.ito", "email": "hal.ito@example.com", "active": "true",
               "u_jira_account_id": "712020:hal"}),
    );
    let group = r.sn.seed("sys_user_group", json!({"name": "Jira Users"}));
    let memberships = |r: &Relay| {
        r.sn.records("sys_user_grmember")
            .into_iter()
            .filter(|m| text(&m["user"]) == user && text(&m["group"]) == group)
            .count()
    };
    // when Jira sends user_created (twice: a retried delivery), with the
    // membership write's answer lost
    r.sn.faults().push(
        Match::method_path(http::Method::POST, "/api/now/table/sys_user_grmember"),
        Fault::answer_dropped(),
        1,
    );
    let created = json!({"webhookEvent": "user_created", "timestamp": 1765010000000u64,
        "user": {"accountId": "712020:hal", "displayName": "hal ito", "accountType": "atlassian"}});
    assert_eq!(r.post("jira", &created, "hal-1").await, 202);
    r.pump().await;
    assert_eq!(r.post("jira", &created, "hal-2").await, 202);
    r.pump().await;
    // then one membership
    assert_eq!(r.sn.faults().count("answer_lost"), 1);
    assert_eq!(memberships(&r), 1);
    assert!(r.dead_letters().await.is_empty());
    // when the account is removed from the site: out of Jira Users, and
    // "Jira Admins", which ServiceNow does not have, is a dead letter saying so
    let deleted = json!({"webhookEvent": "user_deleted", "timestamp": 1765010100000u64,
        "user": {"accountId": "712020:hal", "displayName": "hal ito", "accountType": "atlassian"}});
    assert_eq!(r.post("jira", &deleted, "hal-3").await, 202);
    r.pump().await;
    assert_eq!(memberships(&r), 0);
    let dead = r.dead_letters().await;
    assert!(
        dead.iter().any(|(reason, _)| reason
            .contains("not_found: rule `jira users group left` step `group1`")
            && reason.contains("name=Jira Admins")),
        "{dead:?}"
    );
    // the user itself is never deleted
    assert!(r.sn.find("sys_user", "sys_id", &user).is_some());
}

/// Jira's `group_created`, mirrored into `sys_user_group` by a rule: one
/// group however often Jira delivers it.
#[tokio::test]
async fn a_jira_group_is_mirrored_into_servicenow_once() {
    let rule = "\n  - name: group mirrored\n    from: jira\n    when:\n      events: [group_created]\n    to: servicenow\n    action: upsert\n    table: sys_user_group\n    correlate: { key: group.name, field: name }\n    map:\n      name: group.name\n      description: { value: Jira group (jira-relay) }\n";
    let Some(r) =
        Relay::start_with_config("examples/servicenow-users-to-jira.yaml", |y, _| y + rule).await
    else {
        return;
    };
    r.sn.allow_fields("sys_user_group", &["name", "description"]);
    let created = json!({"timestamp": 1765010000000u64, "webhookEvent": "group_created",
        "group": {"name": "jira-testers", "groupId": "276f955c-63d7-42c8-9520-92d01dca0625"}});
    assert_eq!(r.post("jira", &created, "grp-1").await, 202);
    assert_eq!(r.post("jira", &created, "grp-2").await, 202);
    r.pump().await;
    let groups = r.sn.records("sys_user_group");
    assert_eq!(groups.len(), 1, "{groups:?}");
    assert_eq!(text(&groups[0]["name"]), "jira-testers");
    assert!(r.dead_letters().await.is_empty());
}

/// `action: delete` correlated by e-mail address removes the account from
/// the site, under the connection's `deletes_per_minute` like every delete.
#[tokio::test]
async fn an_account_is_removed_from_the_site_only_under_the_delete_cap() {
    let rule = "\n  - name: account removed\n    from: servicenow\n    when:\n      events: [sys_user.deleted]\n    to: jira\n    action: delete\n    correlate: { key: email, field: emailAddress }\n";
    let Some(r) = Relay::start_with_config("examples/servicenow-users-to-jira.yaml", |y, _| {
        let y = y.replacen(
            "    api: v3\n",
            "    api: v3\n    deletes_per_minute: 1\n",
            1,
        );
        assert!(y.contains("deletes_per_minute: 1"));
        y + rule
    })
    .await
    else {
        return;
    };
    r.jira.set_basic(JIRA_EMAIL, JIRA_TOKEN);
    r.jira
        .add_user("712020:ida", "ida", Some("ida.moe@example.com"));
    r.jira
        .add_user("712020:jo", "jo", Some("jo.park@example.com"));
    let gone = |name: &str, n: u32| {
        json!({"event": "sys_user.deleted", "sys_id": format!("u{n}"), "user_name": name,
            "email": format!("{name}@example.com"), "active": "false", "sys_updated_by": "admin",
            "sys_updated_on": "2026-12-06 07:00:00", "changes": []})
    };
    // when two ServiceNow users are deleted within a minute
    assert_eq!(r.post_sn(&gone("ida.moe", 1)).await, 202);
    assert_eq!(r.post_sn(&gone("jo.park", 2)).await, 202);
    r.pump().await;
    // then one account leaves the site (whichever the worker took first:
    // two people, two FIFO groups); the other is not deleted and its event
    // is a dead letter saying why
    let ids: Vec<String> = r.jira.accounts().into_iter().map(|a| a.0).collect();
    assert_eq!(ids.len(), 1, "{ids:?}");
    assert!(ids[0] == "712020:jo" || ids[0] == "712020:ida", "{ids:?}");
    let deletes: Vec<String> = writes(&r)
        .into_iter()
        .filter(|w| w.starts_with("DELETE"))
        .collect();
    assert_eq!(deletes, ["DELETE /rest/api/3/user"]);
    let dead = r.dead_letters().await;
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert!(dead[0].0.contains("delete_cap_reached"), "{dead:?}");
    // a user Jira never had: nothing to delete, no new dead letter
    assert_eq!(r.post_sn(&gone("nobody", 3)).await, 202);
    r.pump().await;
    assert!(r.dead_letters().await.is_empty());
    assert_eq!(r.jira.accounts().len(), 1);
}
