//! SANDBOX, not a product: starts the ServiceNow and Jira contract servers
//! from the test support on 127.0.0.1 and prints their base URLs as one JSON
//! line, then serves until stdin closes or Ctrl-C. For trying the worker by
//! hand (`cargo lambda watch` + `cargo lambda invoke`) without a real
//! ServiceNow or Jira. Default credentials: see `sandbox::*_server`.
#![forbid(unsafe_code)]

use sandbox::jira_server::JiraServer;
use sandbox::servicenow_server::ServiceNowServer;

#[tokio::main]
async fn main() {
    let sn = ServiceNowServer::start().await;
    let jira = JiraServer::start().await;
    println!(
        "{}",
        serde_json::json!({"sandbox": true, "servicenow": sn.base_url(), "jira": jira.base_url()})
    );
    let stdin_closed = tokio::task::spawn_blocking(|| {
        let mut sink = String::new();
        while std::io::stdin().read_line(&mut sink).is_ok_and(|n| n > 0) {
            sink.clear();
        }
    });
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = stdin_closed => {}
    }
    let incidents = sn.records("incident");
    eprintln!(
        "sandbox: {} incident(s), {} Jira issue(s)",
        incidents.len(),
        jira.issues().len()
    );
    for i in incidents {
        eprintln!("  {}", serde_json::Value::Object(i));
    }
}
