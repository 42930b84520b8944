//! Fault-injection soak through the AWS path (issue #6): the ingress router
//! enqueues into moto's SQS FIFO queue, and the worker Lambda's own handler
//! (`worker::handle`) is invoked with real `SqsEvent`s by pollers that play
//! Lambda's event source mapping (4 at once), writing into the
//! ServiceNow and Jira contract servers. The scenario is the one the
//! `relay serve` soak uses ([`sandbox::soak`]), with the same faults:
//!
//! - 20 % 503, 10 % 429 with `Retry-After: 1`, 2 % answers after 3 s (the
//!   connectors' call timeout is 2 s: real client-side timeouts);
//! - 10 % of ServiceNow's writes committed with their answer lost (the
//!   connection cut, or the answer after 3 s);
//! - out of order: for 20 % of the issues the first update or comment is
//!   delivered before the create, and 10 % of the deliveries are posted once
//!   more at the end with the same identifier (Jira's late retries);
//! - the worker instances share one link store, a DynamoDB table in moto,
//!   as the deployed functions share `LinksTable`: parked events and the
//!   memory of deliveries survive the instance that wrote them;
//! - at 40 % the pollers are killed mid-batch and a new worker (a new Lambda
//!   instance, empty caches) takes over. The dead pollers' messages come back
//!   through an explicit visibility change to 0, standing in for the
//!   visibility timeout: moto strands timed-out FIFO messages when several of
//!   one group were received together (`../shared/TOOLING.md`);
//! - at 60 % the ServiceNow password is rotated in Secrets Manager, then the
//!   old one refused (401, secret re-read, call repeated);
//! - at 75 % SQS is unreachable for 5 s (a proxy in front of moto drops every
//!   connection): the ingress answers 503 and the sender re-posts; the
//!   pollers' receives fail and they try again.
//!
//! moto reorders a FIFO group when several of its messages were received
//! together and come back through a timeout or a non-zero visibility change
//! (checked against moto 5.2.5: received m0, m1, m2, all three set to 1 s,
//! the next receive returns m2 alone) — real SQS keeps the order. A crash,
//! a receive whose answer the outage cut off, or a worker's `Retry-After`
//! delay would trip it, so the pollers receive one message per invocation
//! (several pollers still run at once, and the group stays locked while its
//! message is in flight, which moto does get right); the batch-level FIFO
//! rule is covered by `worker_flow`. Failed items are released with
//! visibility 0, as `worker_flow` does. Size: `RELAY_SOAK_SQS_WEBHOOKS`
//! (default 200).

use relay_tests::jira_server::{JiraServer, DEFAULT_API_TOKEN, DEFAULT_EMAIL};
use relay_tests::servicenow_server::{ServiceNowServer, DEFAULT_PASSWORD, DEFAULT_USER};
use relay_tests::{
    aws_endpoint, create_fifo_queue, event_source, jira_webhook, sdk_config, status_of, unique,
};
use sandbox::faults::Rates;
use sandbox::soak::{bodies, check, rates, scenario_with, Sender, SoakOptions};
use serde_json::{json, Value};
use shared::config::Config;
use shared::intake::router::{app, IngressState};
use shared::outbound::executor::Connectors;
use shared::outbound::rest::http_client;
use shared::outbound::rest::ConnectorSettings;
use shared::queue::{SqsInbox, SqsQueue};
use shared::secrets::{AwsSecretStore, CachedSecretStore, SecretStore};
use shared::support::clock::SystemClock;
use shared::worker::{BatchSettings, Worker};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const TOKEN: &str = "soak-sqs-token-8e2d";
const ROTATED: &str = "snow-password-rotated-sqs";
const POLLERS: usize = 4;

/// A TCP proxy in front of moto that can be switched off: while down it
/// refuses new connections and cuts the open ones.
struct Proxy {
    url: String,
    down: tokio::sync::watch::Sender<bool>,
}

async fn proxy(upstream: String) -> Proxy {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let (down, watch) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        loop {
            let Ok((mut inbound, _)) = listener.accept().await else {
                continue;
            };
            if *watch.borrow() {
                continue; // dropped: connection reset
            }
            let upstream = upstream.clone();
            let mut watch = watch.clone();
            tokio::spawn(async move {
                let Ok(mut outbound) = tokio::net::TcpStream::connect(upstream).await else {
                    return;
                };
                tokio::select! {
                    _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                    _ = watch.wait_for(|down| *down) => {}
                }
            });
        }
    });
    Proxy { url, down }
}

/// One Lambda instance: a worker with its own connection caches.
struct Instance {
    worker: Worker,
    inbox: SqsInbox,
}

struct Aws {
    sqs: aws_sdk_sqs::Client,
    queue_url: String,
    /// Receipt handles received and not yet settled, per message id.
    in_flight: Mutex<HashMap<String, String>>,
    invocations: AtomicUsize,
    failed_items: AtomicUsize,
}

impl Aws {
    /// One event-source-mapping round: receive, invoke, settle. Returns
    /// whether anything was received.
    async fn round(&self, instance: &Instance) -> bool {
        let Ok(msgs) = event_source::receive(&self.sqs, &self.queue_url, 1).await else {
            tokio::time::sleep(Duration::from_millis(200)).await;
            return false;
        };
        if msgs.is_empty() {
            return false;
        }
        {
            let mut f = self.in_flight.lock().unwrap();
            for m in &msgs {
                f.insert(
                    m.message_id.clone().unwrap(),
                    m.receipt_handle.clone().unwrap(),
                );
            }
        }
        let event = event_source::sqs_event(&msgs, &self.queue_url);
        self.invocations.fetch_add(1, Ordering::Relaxed);
        let failed = event_source::invoke(
            &instance.worker,
            &instance.inbox,
            event,
            Duration::from_secs(25),
        )
        .await;
        self.failed_items.fetch_add(failed.len(), Ordering::Relaxed);
        for m in &msgs {
            let id = m.message_id.clone().unwrap();
            // As the event source mapping does, retried on a queue outage.
            for _ in 0..100 {
                if event_source::settle(&self.sqs, &self.queue_url, m, failed.contains(&id)).await {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            self.in_flight.lock().unwrap().remove(&id);
        }
        true
    }

    /// The queue is empty: nothing visible, nothing in flight.
    async fn empty(&self) -> bool {
        use aws_sdk_sqs::types::QueueAttributeName as A;
        let Ok(out) = self
            .sqs
            .get_queue_attributes()
            .queue_url(&self.queue_url)
            .attribute_names(A::ApproximateNumberOfMessages)
            .attribute_names(A::ApproximateNumberOfMessagesNotVisible)
            .send()
            .await
        else {
            return false;
        };
        let attrs = out.attributes.unwrap_or_default();
        [
            A::ApproximateNumberOfMessages,
            A::ApproximateNumberOfMessagesNotVisible,
        ]
        .iter()
        .all(|a| attrs.get(a).map(String::as_str) == Some("0"))
    }
}

/// Posts one delivery to the ingress as Jira does; returns the status.
async fn post(ingress: &axum::Router, id: &str, body: &Value) -> u16 {
    let req = jira_webhook(
        &format!("/webhooks/jira?token={TOKEN}"),
        body.to_string(),
        id,
    );
    status_of(ingress, req).await
}

fn pollers(
    aws: &Arc<Aws>,
    instance: &Arc<Instance>,
    stop: &Arc<AtomicBool>,
) -> Vec<tokio::task::JoinHandle<()>> {
    (0..POLLERS)
        .map(|_| {
            let (aws, instance, stop) = (aws.clone(), instance.clone(), stop.clone());
            tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    if !aws.round(&instance).await {
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                }
            })
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn soak_through_sqs_and_the_worker_handler() {
    // given moto behind a switchable proxy, the contract servers with their fault rates, the ingress and 4 pollers
    let Some(moto) = aws_endpoint() else { return };
    let webhooks: usize = std::env::var("RELAY_SOAK_SQS_WEBHOOKS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200);
    let issues = (webhooks / 6).clamp(1, 2000);
    let started = Instant::now();

    let upstream = moto
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_owned();
    let proxy = proxy(upstream).await;
    let direct = sdk_config(&moto).await;
    let via_proxy = sdk_config(&proxy.url).await;
    let sqs_direct = aws_sdk_sqs::Client::new(&direct);
    let sm = aws_sdk_secretsmanager::Client::new(&direct);
    let queue_url = create_fifo_queue(&sqs_direct, &unique("soak")).await;
    let dlq_url = create_fifo_queue(&sqs_direct, &unique("soak-dlq")).await;

    let sn = ServiceNowServer::start().await;
    let jira = JiraServer::start().await;
    let prefix = unique("soak");
    let put = |id: &str, value: Value| {
        sm.create_secret()
            .name(format!("{prefix}/{id}"))
            .secret_string(value.to_string())
            .send()
    };
    put("webhook", json!({"token": TOKEN, "hmac": "unused-hmac"}))
        .await
        .unwrap();
    put(
        "servicenow",
        json!({"username": DEFAULT_USER, "password": DEFAULT_PASSWORD}),
    )
    .await
    .unwrap();
    put(
        "jira",
        json!({"email": DEFAULT_EMAIL, "api_token": DEFAULT_API_TOKEN}),
    )
    .await
    .unwrap();
    let yaml = relay_tests::example_yaml("jira-to-servicenow", &sn.base_url(), &jira.base_url())
        .replace("relay/", &format!("{prefix}/"));
    let config = Arc::new(Config::from_yaml(&yaml, "soak.yaml", |_| None).unwrap());

    // The ingress function: secrets direct, the queue through the proxy.
    let ingress_secrets: Arc<dyn SecretStore> =
        Arc::new(CachedSecretStore::new(AwsSecretStore::from_conf(&direct)));
    let ingress = app(IngressState {
        config: config.clone(),
        secrets: ingress_secrets,
        queue: Arc::new(SqsQueue::from_conf(&via_proxy, queue_url.clone())),
        clock: Arc::new(SystemClock),
    });
    // The worker's link store: one table for every instance.
    let links_table = relay_tests::create_links_table(&direct, &unique("links")).await;
    let links_backend: Arc<dyn shared::links::LinkBackend> = Arc::new(
        shared::links::dynamo::DynamoBackend::from_conf(&direct, &links_table),
    );
    // A worker Lambda instance, as its main() builds one.
    let instance = || {
        let secrets = Arc::new(CachedSecretStore::new(AwsSecretStore::from_conf(&direct)));
        let connectors = Connectors::from_config(
            &config,
            http_client(),
            secrets,
            ConnectorSettings {
                call_timeout: Duration::from_secs(2),
                // Failed items come back at visibility 0 here (moto, see the
                // module docs), so a lost answer is looked up and, if absent,
                // sent again at once; `relay serve`'s soak waits it out.
                settle: Some(Duration::ZERO),
                ..ConnectorSettings::default()
            },
        );
        Arc::new(Instance {
            worker: Worker::new(
                config.clone(),
                connectors,
                BatchSettings {
                    max_receive_count: Some(10),
                    ..BatchSettings::default()
                },
            )
            .with_links(shared::links::Links::new(
                links_backend.clone(),
                shared::links::LinkSettings::default(),
            )),
            inbox: SqsInbox::from_conf(&via_proxy, queue_url.clone(), dlq_url.clone()),
        })
    };
    let aws = Arc::new(Aws {
        sqs: aws_sdk_sqs::Client::new(&via_proxy),
        queue_url: queue_url.clone(),
        in_flight: Mutex::new(HashMap::new()),
        invocations: AtomicUsize::new(0),
        failed_items: AtomicUsize::new(0),
    });
    let stop = Arc::new(AtomicBool::new(false));
    let mut running = pollers(&aws, &instance(), &stop);

    let options = SoakOptions {
        out_of_order: 0.2,
        late_retry: 0.1,
        seed: 0x5a50,
    };
    let plan = scenario_with(issues, webhooks, 0x5a5, &jira, &options);
    let (expected, injected_order, late) = (plan.expected, plan.injected, plan.late);
    let bodies = bodies(plan.issues);
    let rates = rates();
    sn.faults().set_rates(
        Rates {
            answer_lost: 0.1,
            answer_lost_late_ms: 3000,
            ..rates.clone()
        },
        17,
    );
    jira.faults().set_rates(rates, 19);

    // when
    // Jira's side: each issue in order, 64 issues at a time, re-posting the
    // same delivery after a 5xx.
    let sender = Arc::new(Sender::default());
    let gate = Arc::new(tokio::sync::Semaphore::new(64));
    let mut tasks = tokio::task::JoinSet::new();
    for issue in bodies {
        let (ingress, sender, gate) = (ingress.clone(), sender.clone(), gate.clone());
        tasks.spawn(async move {
            let _permit = gate.acquire_owned().await.unwrap();
            for (id, body) in issue {
                sender.deliver(&id, || post(&ingress, &id, &body)).await;
            }
        });
    }
    let limit = Duration::from_secs(120 + webhooks as u64 / 3);
    let until = |n: usize| sender.wait_until(n, limit);

    // and 40 %: the instance dies mid-batch; a fresh one takes over.
    until(webhooks * 4 / 10).await;
    for p in running.drain(..) {
        p.abort();
    }
    let orphans: Vec<String> = aws
        .in_flight
        .lock()
        .unwrap()
        .drain()
        .map(|(_, r)| r)
        .collect();
    for receipt in &orphans {
        let _ = sqs_direct
            .change_message_visibility()
            .queue_url(&queue_url)
            .receipt_handle(receipt)
            .visibility_timeout(0)
            .send()
            .await;
    }
    running = pollers(&aws, &instance(), &stop);

    // and 60 %: rotate the ServiceNow password (Secrets Manager first).
    until(webhooks * 6 / 10).await;
    sm.put_secret_value()
        .secret_id(format!("{prefix}/servicenow"))
        .secret_string(json!({"username": DEFAULT_USER, "password": ROTATED}).to_string())
        .send()
        .await
        .unwrap();
    sn.set_basic(DEFAULT_USER, ROTATED);

    // and 75 %: SQS unreachable for 5 s.
    until(webhooks * 3 / 4).await;
    proxy.down.send_replace(true);
    tokio::time::sleep(Duration::from_secs(5)).await;
    proxy.down.send_replace(false);

    while let Some(r) = tasks.join_next().await {
        r.unwrap();
    }
    // and jira's late retries: the same deliveries again, same identifiers.
    for d in &late {
        sender
            .deliver(&d.id, || post(&ingress, &d.id, &d.body))
            .await;
    }
    let posted = started.elapsed();
    // Drained: empty twice in a row, a second apart.
    let drain_start = Instant::now();
    let mut empty_rounds = 0;
    while empty_rounds < 2 {
        assert!(drain_start.elapsed() < limit, "the queue did not drain");
        tokio::time::sleep(Duration::from_secs(1)).await;
        empty_rounds = if aws.empty().await {
            empty_rounds + 1
        } else {
            0
        };
    }
    stop.store(true, Ordering::Relaxed);
    for p in running {
        p.await.unwrap();
    }
    let wall = started.elapsed();

    // then
    let dead = relay_tests::drain(&sqs_direct, &dlq_url).await;
    let f = check(&sn, &expected);
    let injected = sn.faults().injected().len() + jira.faults().injected().len();
    let answers_lost = sn.faults().count("answer_lost");
    eprintln!(
        "soak (SQS + worker handler): sent {webhooks} webhooks over {issues} issues ({} re-posted); \
         {answers_lost} answers lost after the commit, {} issues delivered out of order, {} late retries; \
         duplicates {}; lost {}; out of order {}; wrong fields {}; dead-lettered {}; \
         faults injected {injected}; invocations {}, failed batch items {}; \
         {} messages orphaned by the crash; posting {:.1} s, wall {:.1} s",
        sender.reposts(),
        injected_order.out_of_order_issues,
        injected_order.late_retries,
        f.duplicates,
        f.lost,
        f.out_of_order,
        f.wrong_fields,
        dead.len(),
        aws.invocations.load(Ordering::Relaxed),
        aws.failed_items.load(Ordering::Relaxed),
        orphans.len(),
        posted.as_secs_f64(),
        wall.as_secs_f64(),
    );
    for p in f.problems.iter().take(20) {
        eprintln!("  {p}");
    }
    // and nothing was lost, duplicated, out of order or wrong
    let reasons: Vec<&String> = dead
        .iter()
        .filter_map(|d| d.attributes.get("relay-dead-reason"))
        .collect();
    assert_eq!(
        reasons.len(),
        dead.len(),
        "every dead letter has its reason"
    );
    assert!(
        f.lost <= dead.len(),
        "lost beyond the dead letters: {reasons:?}"
    );
    assert!(
        dead.is_empty(),
        "nothing should exhaust 10 receives: {reasons:?}"
    );
    assert_eq!(f.duplicates, 0, "{:?}", f.problems);
    assert_eq!(f.out_of_order, 0, "{:?}", f.problems);
    assert_eq!(f.wrong_fields, 0, "{:?}", f.problems);
    assert!(injected > webhooks / 10, "faults were injected: {injected}");
    assert!(
        answers_lost > 0,
        "no answer was lost: the fault did not run"
    );
    assert!(injected_order.out_of_order_issues > 0 && injected_order.late_retries > 0);
}
