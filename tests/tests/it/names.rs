//! Names at runtime: one config that names the Jira project, the
//! correlation field, the issue type and the priority by their display
//! names (no ids) serves two sites whose ids differ, both ways; a field
//! recreated under a new id while the relay runs is found again.

use crate::two_way::shipped;
use crate::worker_flow::{Relay, JIRA_EMAIL, JIRA_TOKEN};
use relay_tests::text;
use serde_json::json;

/// `config/relay.yaml` with every Jira id replaced by a name.
fn by_names(yaml: String, s: &crate::worker_flow::Servers) -> String {
    let yaml = shipped(yaml, s)
        .replace("customfield_10050", "ServiceNow Number")
        .replace(
            "fields.project.key: { value: SUP }",
            "fields.project.name: { value: Service Desk }",
        )
        // A source read by name as well: the payload holds it by id.
        .replacen(
            "description: { template: \"{{ issue.fields.description | text | default:(no description) }}\" }",
            "description: 'issue.fields[\"Customer Impact\"]'",
            1,
        );
    assert!(!yaml.contains("customfield_"), "an id is left");
    assert!(yaml.contains("fields.project.name"), "{yaml}");
    assert!(yaml.contains("Customer Impact"), "{yaml}");
    yaml
}

/// A site: its project key and the correlation field's id.
struct Site {
    project: &'static str,
    field: &'static str,
    high: &'static str,
    /// The id of "Customer Impact".
    impact: &'static str,
}

const TEST_SITE: Site = Site {
    project: "SUP",
    field: "customfield_10050",
    high: "2",
    impact: "customfield_10300",
};
const PROD_SITE: Site = Site {
    project: "HELP",
    field: "customfield_10233",
    high: "20",
    impact: "customfield_10400",
};

/// An incident opened in ServiceNow and its event posted: (sys_id, number).
async fn opened(r: &Relay, summary: &str, priority: &str) -> (String, String) {
    let inc = r
        .sn_create(
            "incident",
            json!({"short_description": summary, "priority": priority, "state": "1"}),
        )
        .await;
    let (sys_id, number) = (
        text(&inc["sys_id"]).to_owned(),
        text(&inc["number"]).to_owned(),
    );
    let created = json!({"event": "incident.created", "sys_id": sys_id, "number": number,
        "short_description": summary, "description": "", "priority": priority,
        "state": "1", "sys_updated_by": "beth.anglin", "sys_updated_on": "2026-12-04 10:00:00"});
    assert_eq!(r.post_sn(&created).await, 202);
    (sys_id, number)
}

async fn round_trip_on(site: &Site) {
    // given a site with its own ids, and the config that names them
    let Some(r) = Relay::start_with_config("config/relay.yaml", by_names).await else {
        return;
    };
    r.jira.set_basic(JIRA_EMAIL, JIRA_TOKEN);
    r.jira.add_project(site.project, "Service Desk");
    r.jira.add_project("OTHER", "Service Desk Archive");
    r.jira.add_custom_field("customfield_10001", "Story Points");
    r.jira.add_custom_field(site.field, "ServiceNow Number");
    r.jira.add_custom_field(site.impact, "Customer Impact");
    let high = site.high;
    r.jira.configure_site(|s| {
        for p in &mut s.priorities {
            p.id = format!("{}{}", p.id, &high[1..]);
        }
    });

    // when ServiceNow opens an incident
    let (sys_id, number) = opened(&r, "Badge reader offline", "2").await;
    assert_eq!(r.pump().await, 0);
    // then the issue is in the site's project, with the site's field id
    assert!(
        r.dead_letters().await.is_empty(),
        "{:?}",
        r.dead_letters().await
    );
    let issues = r.jira.issues();
    assert_eq!(issues.len(), 1);
    let issue = &issues[0];
    assert!(
        issue.key.starts_with(&format!("{}-", site.project)),
        "{}",
        issue.key
    );
    assert_eq!(
        text(&issue.fields[site.field]),
        number,
        "{:?}",
        issue.fields
    );
    assert_eq!(
        issue.fields["priority"]["id"],
        json!(site.high),
        "{:?}",
        issue.fields
    );
    assert_eq!(issue.fields["priority"]["name"], json!("High"));
    assert_eq!(issue.fields["issuetype"]["name"], json!("Incident"));
    assert!(r.jira.violations().is_empty(), "{:?}", r.jira.violations());

    // when the incident is commented: the issue is found by the field's name
    let commented = json!({"event": "incident.commented", "sys_id": sys_id, "number": number,
        "short_description": "Badge reader offline", "state": "1", "priority": "2",
        "comments": "Power cycled it", "work_notes": "", "sys_updated_by": "beth.anglin",
        "sys_updated_on": "2026-12-04 10:05:00", "changes": []});
    assert_eq!(r.post_sn(&commented).await, 202);
    assert_eq!(r.pump().await, 0);
    assert!(r.dead_letters().await.is_empty());
    // then
    let issue = r.jira.issue(&issue.key).unwrap();
    assert_eq!(issue.comments.len(), 1, "{:?}", issue.comments);

    // when a Jira-born issue is paired: the number is written back by name
    let key = r.jira.seed_issue(
        site.project,
        json!({"summary": "Laptop stolen", "issuetype": {"name": "Incident"},
               "priority": {"name": "High"}}),
    );
    let id = r.jira.issue(&key).unwrap().id;
    let jira_created = json!({"webhookEvent": "jira:issue_created",
        "issue_event_type_name": "issue_created", "timestamp": 1764842400000u64,
        "user": {"accountId": "712020:agent", "displayName": "Ann Agent"},
        "issue": {"id": id, "key": key, "self": format!("{}/rest/api/2/issue/{id}", r.jira.base_url()),
            "fields": {"summary": "Laptop stolen", "priority": {"name": "High"},
                site.impact: "Whole sales floor"}}});
    assert_eq!(
        r.post("jira", &jira_created, &format!("n-{key}")).await,
        202
    );
    assert_eq!(r.pump().await, 0);
    assert!(
        r.dead_letters().await.is_empty(),
        "{:?}",
        r.dead_letters().await
    );
    // then
    let inc =
        r.sn.find("incident", "correlation_id", &key)
            .expect("incident");
    assert_eq!(
        text(&inc["description"]),
        "Whole sales floor",
        "read by the field's name"
    );
    let issue = r.jira.issue(&key).unwrap();
    assert_eq!(
        issue.fields[site.field], inc["number"],
        "{:?}",
        issue.fields
    );

    // when an admin recreates the field under a new id while the relay runs
    r.jira
        .recreate_custom_field("ServiceNow Number", "customfield_19999");
    let (_, number) = opened(&r, "Projector dim", "3").await;
    assert_eq!(r.pump().await, 0);
    // then the relay's cached id is refused once, the name resolved again
    assert!(
        r.dead_letters().await.is_empty(),
        "{:?}",
        r.dead_letters().await
    );
    let issue = r
        .jira
        .issues()
        .into_iter()
        .find(|i| i.fields.get("customfield_19999") == Some(&json!(number)))
        .expect("the third issue carries the number in the recreated field");
    assert_eq!(issue.fields["summary"], json!("Projector dim"));
    let field_reads = r
        .jira
        .requests()
        .iter()
        .filter(|q| q.method == "GET" && q.path.ends_with("/field"))
        .count();
    // Once by the writes' resolver, once by the payload reader (sources
    // named by name), once more by the resolver after the 400.
    assert_eq!(
        field_reads, 3,
        "fields read once each, and once more after the 400"
    );
}

#[tokio::test]
async fn one_config_of_names_serves_the_test_site() {
    round_trip_on(&TEST_SITE).await;
}

#[tokio::test]
async fn one_config_of_names_serves_the_production_site() {
    round_trip_on(&PROD_SITE).await;
}

#[tokio::test]
async fn a_name_the_site_does_not_have_is_a_dead_letter_that_says_so() {
    // given a config that names a field the site does not have
    let Some(r) = Relay::start_with_config("config/relay.yaml", |y, s| {
        by_names(y, s).replace(
            "fields.labels: { value: [servicenow] }",
            "fields.labels: { value: [servicenow] }\n      fields.Customer Impact: { value: High }",
        )
    })
    .await
    else {
        return;
    };
    r.jira.set_basic(JIRA_EMAIL, JIRA_TOKEN);
    r.jira.add_project("SUP", "Service Desk");
    r.jira
        .add_custom_field("customfield_10050", "ServiceNow Number");
    // when
    opened(&r, "x", "2").await;
    r.pump().await;
    // then
    let dead = r.dead_letters().await;
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert!(
        dead[0].0.contains("unknown_field") && dead[0].0.contains("Customer Impact"),
        "{dead:?}"
    );
    assert!(r.jira.issues().is_empty());
}
