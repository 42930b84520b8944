//! The embedded queue's tests (the test names keep the module path
//! `queue::embedded::tests::…`, which the kill -9 test relies on).

use super::store::CHECKPOINT_FRAMES;
use super::*;
use crate::queue::port::{InMessage, Inbox, OutgoingMessage, Queue, QueueError, Receiver};
use rusqlite::{params, Connection};
use std::collections::HashSet;
use std::io::{BufRead, Write};
use std::path::Path;
use std::time::{Duration, Instant};

fn msg(group: &str, dedup: &str, body: &str) -> OutgoingMessage {
    OutgoingMessage {
        group_id: group.into(),
        dedup_id: dedup.into(),
        body: body.into(),
        attributes: vec![("event", "jira:issue_updated".into())],
    }
}

fn settings() -> EmbeddedSettings {
    EmbeddedSettings::default()
}

fn open(dir: &tempfile::TempDir, s: EmbeddedSettings) -> EmbeddedQueue {
    EmbeddedQueue::open(&dir.path().join("q").join("queue.db"), s).expect("open")
}

fn sql_count(q: &EmbeddedQueue, sql: &str) -> i64 {
    let conn = q.inner.conn.lock().unwrap();
    conn.query_row(sql, [], |r| r.get(0)).unwrap()
}

/// Queues `n` visible messages in one transaction, straight into the table
/// (faster than `send` for large backlogs): ids `m0000`, `m0001`, …, each its
/// own dedup id, in the group `group(i)`.
fn queue_directly(q: &EmbeddedQueue, n: usize, group: impl Fn(usize) -> String) {
    let mut conn = q.inner.conn.lock().unwrap();
    let tx = conn.transaction().unwrap();
    for i in 0..n {
        tx.execute(
            "INSERT INTO messages (id, group_id, dedup_id, body, enqueued_at, visible_at)
             VALUES (?1, ?2, ?1, '{}', 0, 0)",
            params![format!("m{i:04}"), group(i)],
        )
        .unwrap();
    }
    tx.commit().unwrap();
}

async fn drain_all(q: &EmbeddedQueue) -> Vec<InMessage> {
    let mut all = Vec::new();
    loop {
        let got = q.receive(10).await.unwrap();
        if got.is_empty() {
            return all;
        }
        for m in &got {
            assert!(q.delete(m.receipt.as_deref().unwrap()).await.unwrap());
        }
        all.extend(got);
    }
}

#[tokio::test]
async fn fifo_within_a_group_across_many_messages() {
    let dir = tempfile::tempdir().unwrap();
    let q = open(&dir, settings());
    for i in 0..50 {
        q.send(msg("g", &format!("d{i}"), &i.to_string()))
            .await
            .unwrap();
    }
    let mut bodies = Vec::new();
    loop {
        let got = q.receive(10).await.unwrap();
        if got.is_empty() {
            break;
        }
        assert_eq!(got.len(), 1, "one group: one message at a time");
        // Until acked, nothing else of the group comes.
        assert!(q.receive(10).await.unwrap().is_empty());
        let m = &got[0];
        assert_eq!(m.receive_count, 1);
        assert_eq!(m.group_id.as_deref(), Some("g"));
        bodies.push(m.body.clone());
        assert!(q.delete(m.receipt.as_deref().unwrap()).await.unwrap());
    }
    let want: Vec<String> = (0..50).map(|i| i.to_string()).collect();
    assert_eq!(bodies, want);
}

#[tokio::test]
async fn groups_in_parallel_oldest_first_one_in_flight_each() {
    let dir = tempfile::tempdir().unwrap();
    let q = open(&dir, settings());
    // a1 b1 c1 a2 b2 c2 a3 …
    for i in 0..3 {
        for g in ["a", "b", "c"] {
            q.send(msg(g, &format!("{g}{i}"), &format!("{g}{i}")))
                .await
                .unwrap();
        }
    }
    let first = q.receive(10).await.unwrap();
    let bodies: Vec<_> = first.iter().map(|m| m.body.as_str()).collect();
    assert_eq!(bodies, ["a0", "b0", "c0"]);
    assert!(q.receive(10).await.unwrap().is_empty(), "all groups busy");
    let s = q.stats().await.unwrap();
    assert_eq!((s.in_flight, s.visible, s.groups), (3, 6, 3));
    // Ack b only: b's next comes, a and c stay blocked.
    assert!(q
        .delete(first[1].receipt.as_deref().unwrap())
        .await
        .unwrap());
    let next = q.receive(10).await.unwrap();
    assert_eq!(next.len(), 1);
    assert_eq!(next[0].body, "b1");
    // max limits the batch; oldest heads first.
    for m in first.iter().filter(|m| m.body != "b0").chain(&next) {
        q.delete(m.receipt.as_deref().unwrap()).await.unwrap();
    }
    let two = q.receive(2).await.unwrap();
    let bodies: Vec<_> = two.iter().map(|m| m.body.as_str()).collect();
    assert_eq!(bodies, ["a1", "c1"]);
}

#[tokio::test]
async fn dedup_within_window_and_new_send_after_it() {
    let dir = tempfile::tempdir().unwrap();
    let q = open(
        &dir,
        EmbeddedSettings {
            dedup_window: Duration::from_millis(150),
            ..settings()
        },
    );
    let a = q.send(msg("g", "same", "first")).await.unwrap();
    let b = q.send(msg("g", "same", "second")).await.unwrap();
    assert_eq!(
        a.message_id, b.message_id,
        "a duplicate answers the original id"
    );
    assert!(!a.duplicate && b.duplicate);
    assert_eq!(sql_count(&q, "SELECT COUNT(*) FROM messages"), 1);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let c = q.send(msg("g", "same", "third")).await.unwrap();
    assert_ne!(a.message_id, c.message_id);
    assert!(!c.duplicate);
    assert_eq!(sql_count(&q, "SELECT COUNT(*) FROM messages"), 2);
    // The expired entry was pruned: only the new one remains.
    assert_eq!(sql_count(&q, "SELECT COUNT(*) FROM dedup"), 1);
    // Acking does not reopen the window.
    let got = drain_all(&q).await;
    assert_eq!(got.len(), 2);
    let again = q.send(msg("g", "same", "x")).await.unwrap();
    assert_eq!(again.message_id, c.message_id);
    assert!(again.duplicate);
    // Invalid messages are refused.
    assert!(matches!(
        q.send(msg("", "d", "x")).await,
        Err(QueueError::Rejected(_))
    ));
}

#[tokio::test]
async fn visibility_timeout_redelivers_and_stale_receipts_are_noops() {
    let dir = tempfile::tempdir().unwrap();
    let q = open(
        &dir,
        EmbeddedSettings {
            visibility_timeout: Duration::from_millis(80),
            ..settings()
        },
    );
    q.send(msg("g", "d1", "one")).await.unwrap();
    q.send(msg("g", "d2", "two")).await.unwrap();
    let first = q.receive(10).await.unwrap();
    assert_eq!(first.len(), 1);
    assert!(q.receive(10).await.unwrap().is_empty());
    tokio::time::sleep(Duration::from_millis(120)).await;
    let again = q.receive(10).await.unwrap();
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].id, first[0].id);
    assert_eq!(again[0].body, "one", "the head again, not the next one");
    assert_eq!(again[0].receive_count, 2);
    assert_ne!(again[0].receipt, first[0].receipt);
    // The old receipt is stale now.
    let old = first[0].receipt.as_deref().unwrap();
    assert!(!q.delete(old).await.unwrap());
    assert!(!q.release(old, Duration::ZERO).await.unwrap());
    assert!(q
        .delete(again[0].receipt.as_deref().unwrap())
        .await
        .unwrap());
    let next = q.receive(10).await.unwrap();
    assert_eq!(next[0].body, "two");
    // release(0) makes it visible at once, same place.
    assert!(q
        .release(next[0].receipt.as_deref().unwrap(), Duration::ZERO)
        .await
        .unwrap());
    let back = q.receive(10).await.unwrap();
    assert_eq!((back[0].body.as_str(), back[0].receive_count), ("two", 2));
}

#[tokio::test]
async fn receive_count_exhausted_moves_to_dead_and_receive_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let q = open(
        &dir,
        EmbeddedSettings {
            max_receive_count: 3,
            ..settings()
        },
    );
    q.send(msg("g", "d1", "poison")).await.unwrap();
    q.send(msg("g", "d2", "next")).await.unwrap();
    for n in 1..=3 {
        let got = q.receive(10).await.unwrap();
        assert_eq!((got[0].body.as_str(), got[0].receive_count), ("poison", n));
        q.release(got[0].receipt.as_deref().unwrap(), Duration::ZERO)
            .await
            .unwrap();
    }
    // 4th receive: poison is dead-lettered, and "next" is handed out.
    let got = q.receive(10).await.unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!((got[0].body.as_str(), got[0].receive_count), ("next", 1));
    let dead = q.dead_list(10).await.unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].body, "poison");
    assert_eq!(dead[0].group_id, "g");
    assert_eq!(dead[0].dedup_id, "d1");
    assert_eq!(dead[0].receive_count, 3);
    assert_eq!(
        dead[0].reason,
        "max_receive_count: received 3 times without success"
    );
    assert!(dead[0].dead_at >= dead[0].enqueued_at);
    assert_eq!(q.stats().await.unwrap().dead, 1);
}

#[tokio::test]
async fn dead_letter_moves_atomically_with_reason() {
    let dir = tempfile::tempdir().unwrap();
    let q = open(&dir, settings());
    q.send(msg("g", "d1", "bad")).await.unwrap();
    q.send(msg("g", "d2", "good")).await.unwrap();
    let got = q.receive(1).await.unwrap();
    let m = &got[0];
    q.dead_letter(m, "bad_envelope: expected value")
        .await
        .unwrap();
    // Idempotent: the same call again is fine.
    q.dead_letter(m, "bad_envelope: expected value")
        .await
        .unwrap();
    let dead = q.dead_get(&m.id).await.unwrap().expect("dead row");
    assert_eq!(dead.reason, "bad_envelope: expected value");
    assert_eq!(dead.body, "bad");
    assert_eq!(dead.receive_count, 1);
    assert_eq!(sql_count(&q, "SELECT COUNT(*) FROM messages"), 1);
    assert_eq!(sql_count(&q, "SELECT COUNT(*) FROM dead"), 1);
    // The host's ack afterwards is a harmless no-op.
    assert!(!q.delete(m.receipt.as_deref().unwrap()).await.unwrap());
    // The group moves on.
    let good = q.receive(1).await.unwrap();
    assert_eq!(good[0].body, "good");
    // A stale or missing receipt is refused (the caller must not count it handled).
    let mut stale = m.clone();
    stale.id = "other".into();
    assert!(matches!(
        q.dead_letter(&stale, "x").await,
        Err(QueueError::Rejected(_))
    ));
    // Without a receipt: refused for a queued message, written once for
    // one that is not in the queue (a parked event given up on).
    let mut queued = m.clone();
    queued.receipt = None;
    queued.id = good[0].id.clone();
    assert!(q.dead_letter(&queued, "x").await.is_err());
    stale.receipt = None;
    stale.id = "parked:issue:1:changelog:2".into();
    q.dead_letter(&stale, "never_correlated: x").await.unwrap();
    q.dead_letter(&stale, "never_correlated: x").await.unwrap();
    assert_eq!(sql_count(&q, "SELECT COUNT(*) FROM dead"), 2);
    assert!(q.dead_get("nope").await.unwrap().is_none());
}

#[tokio::test]
async fn delay_hides_for_the_duration() {
    let dir = tempfile::tempdir().unwrap();
    let q = open(&dir, settings());
    q.send(msg("g", "d1", "later")).await.unwrap();
    q.send(msg("h", "d2", "other")).await.unwrap();
    let got = q.receive(1).await.unwrap();
    assert_eq!(got[0].body, "later");
    q.delay(&got[0], Duration::from_millis(150)).await.unwrap();
    let s = q.stats().await.unwrap();
    assert_eq!((s.delayed, s.in_flight, s.visible), (1, 0, 1));
    // The host's nack with the old receipt cannot shorten the wait.
    assert!(!q
        .release(got[0].receipt.as_deref().unwrap(), Duration::ZERO)
        .await
        .unwrap());
    assert!(q.delay(&got[0], Duration::ZERO).await.is_err(), "stale");
    let now = q.receive(10).await.unwrap();
    assert_eq!(now.len(), 1);
    assert_eq!(now[0].body, "other");
    tokio::time::sleep(Duration::from_millis(200)).await;
    let later = q.receive(10).await.unwrap();
    assert_eq!(later.len(), 1);
    assert_eq!(
        (later[0].body.as_str(), later[0].receive_count),
        ("later", 2)
    );
}

#[tokio::test]
async fn redrive_one_and_all_to_the_end_of_the_group() {
    let dir = tempfile::tempdir().unwrap();
    let q = open(&dir, settings());
    for i in 0..3 {
        q.send(msg("g", &format!("d{i}"), &format!("m{i}")))
            .await
            .unwrap();
    }
    let mut ids = Vec::new();
    for _ in 0..3 {
        let m = q.receive(1).await.unwrap().remove(0);
        q.dead_letter(&m, "nope").await.unwrap();
        ids.push(m.id);
    }
    assert_eq!(
        q.dead_list(10)
            .await
            .unwrap()
            .iter()
            .map(|d| d.body.as_str())
            .collect::<Vec<_>>(),
        ["m2", "m1", "m0"],
        "newest first"
    );
    assert_eq!(q.dead_list(1).await.unwrap().len(), 1);
    q.send(msg("g", "d9", "m9")).await.unwrap();
    assert_eq!(q.redrive(Some(&ids[1])).await.unwrap(), 1);
    assert_eq!(q.redrive(Some("unknown")).await.unwrap(), 0);
    // Dedup bypassed: its dedup id is still in the window, yet it is back.
    let m9 = q.receive(1).await.unwrap().remove(0);
    assert_eq!(m9.body, "m9");
    q.delete(m9.receipt.as_deref().unwrap()).await.unwrap();
    let m1 = q.receive(1).await.unwrap().remove(0);
    assert_eq!((m1.body.as_str(), m1.receive_count), ("m1", 1));
    assert_eq!(m1.id, ids[1], "same message id");
    q.delete(m1.receipt.as_deref().unwrap()).await.unwrap();
    assert_eq!(q.redrive(None).await.unwrap(), 2);
    assert_eq!(q.stats().await.unwrap().dead, 0);
    let rest: Vec<_> = drain_all(&q).await.into_iter().map(|m| m.body).collect();
    assert_eq!(rest, ["m0", "m2"], "oldest dead first");
}

#[tokio::test]
async fn stats_count_every_state() {
    let dir = tempfile::tempdir().unwrap();
    let q = open(&dir, settings());
    assert_eq!(q.stats().await.unwrap(), QueueStats::default());
    for (g, d) in [("a", "1"), ("a", "2"), ("b", "3"), ("c", "4"), ("d", "5")] {
        q.send(msg(g, d, d)).await.unwrap();
    }
    tokio::time::sleep(Duration::from_millis(20)).await;
    let got = q.receive(3).await.unwrap(); // a1 b3 c4 in flight
    q.release(got[1].receipt.as_deref().unwrap(), Duration::from_secs(60))
        .await
        .unwrap(); // b3 delayed
    q.dead_letter(&got[2], "x").await.unwrap(); // c4 dead
    let s = q.stats().await.unwrap();
    assert_eq!(s.visible, 2, "a2 (blocked) and d5");
    assert_eq!(s.in_flight, 1);
    assert_eq!(s.delayed, 1);
    assert_eq!(s.dead, 1);
    assert_eq!(s.groups, 3);
    let age = s.oldest_age.expect("age");
    assert!(age >= Duration::from_millis(20) && age < Duration::from_secs(10));
}

#[tokio::test]
async fn refuses_newer_schema_and_foreign_files() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("queue.db");
    {
        let q = EmbeddedQueue::open(&path, settings()).unwrap();
        assert_eq!(q.path(), path);
        q.send(msg("g", "d", "kept")).await.unwrap();
        let conn = q.inner.conn.lock().unwrap();
        conn.pragma_update(None, "user_version", SCHEMA_VERSION + 1)
            .unwrap();
    }
    let err = EmbeddedQueue::open(&path, settings()).unwrap_err();
    assert!(err.to_string().contains("newer"), "{err}");
    {
        let conn = Connection::open(&path).unwrap();
        conn.pragma_update(None, "user_version", SCHEMA_VERSION)
            .unwrap();
    }
    let q = EmbeddedQueue::open(&path, settings()).unwrap();
    assert_eq!(q.receive(1).await.unwrap()[0].body, "kept");

    let other = dir.path().join("other.db");
    Connection::open(&other)
        .unwrap()
        .execute_batch("CREATE TABLE t (x)")
        .unwrap();
    let err = EmbeddedQueue::open(&other, settings()).unwrap_err();
    assert!(err.to_string().contains("something else"), "{err}");
}

/// Drop without any shutdown: the object is leaked (no close, no
/// checkpoint), and the file is reopened from scratch.
#[tokio::test]
async fn crash_without_shutdown_keeps_every_message_once() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("queue.db");
    let s = EmbeddedSettings {
        visibility_timeout: Duration::from_millis(100),
        ..settings()
    };
    let q = EmbeddedQueue::open(&path, s.clone()).unwrap();
    for i in 0..100 {
        q.send(msg(
            &format!("g{}", i % 10),
            &format!("d{i}"),
            &i.to_string(),
        ))
        .await
        .unwrap();
    }
    let in_flight = q.receive(10).await.unwrap();
    assert_eq!(in_flight.len(), 10);
    std::mem::forget(q);

    let q = EmbeddedQueue::open(&path, s).unwrap();
    let st = q.stats().await.unwrap();
    assert_eq!((st.in_flight, st.visible), (10, 90));
    assert!(q.receive(10).await.unwrap().is_empty(), "still in flight");
    tokio::time::sleep(Duration::from_millis(150)).await;
    let all = drain_all(&q).await;
    let mut bodies: Vec<u32> = all.iter().map(|m| m.body.parse().unwrap()).collect();
    bodies.sort_unstable();
    assert_eq!(bodies, (0..100).collect::<Vec<_>>());
    let redelivered: HashSet<_> = in_flight.iter().map(|m| m.id.clone()).collect();
    for m in &all {
        let want = if redelivered.contains(&m.id) { 2 } else { 1 };
        assert_eq!(m.receive_count, want);
    }
}

const CHILD_ENV: &str = "RELAY_EMBEDDED_QUEUE_CHILD";

/// Senders at once in the kill -9 child: their sends share group commits.
const CHILD_SENDERS: u32 = 16;

/// Child mode of `kill9_child_process_loses_nothing` (a no-op otherwise):
/// [`CHILD_SENDERS`] tasks send until killed, each printing every index
/// whose send returned (committed).
#[tokio::test]
async fn kill9_child_mode() {
    let Ok(path) = std::env::var(CHILD_ENV) else {
        return;
    };
    let q = EmbeddedQueue::open(Path::new(&path), settings()).unwrap();
    let started = Instant::now();
    let out = std::sync::Arc::new(std::sync::Mutex::new(std::io::stdout()));
    let senders: Vec<_> = (0..CHILD_SENDERS)
        .map(|t| {
            let (q, out) = (q.clone(), out.clone());
            tokio::spawn(async move {
                // Bounded even if the parent never kills us.
                for i in (t..100_000u32).step_by(CHILD_SENDERS as usize) {
                    if started.elapsed() > Duration::from_secs(20) {
                        break;
                    }
                    q.send(msg(
                        &format!("g{}", i % 7),
                        &format!("d{i}"),
                        &i.to_string(),
                    ))
                    .await
                    .unwrap();
                    let mut out = out.lock().unwrap();
                    writeln!(out, "committed {i}").unwrap();
                    out.flush().unwrap();
                }
            })
        })
        .collect();
    for s in senders {
        s.await.unwrap();
    }
}

#[tokio::test]
async fn kill9_child_process_loses_nothing() {
    if std::env::var_os(CHILD_ENV).is_some() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("queue.db");
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "queue::embedded::tests::kill9_child_mode",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, &path)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut reported = Vec::new();
    let mut killed = false;
    for line in std::io::BufReader::new(stdout).lines() {
        let Ok(line) = line else { break };
        // libtest may print `test … ... ` on the same line before the
        // child's first line, so look for the marker anywhere.
        if let Some(i) = line.split("committed ").nth(1) {
            reported.push(i.trim().parse::<u32>().unwrap());
        }
        if reported.len() >= 2000 && !killed {
            child.kill().unwrap(); // SIGKILL
            killed = true;
        }
    }
    child.wait().unwrap();
    assert!(
        killed && reported.len() >= 2000,
        "child reported {reported:?}"
    );

    let q = EmbeddedQueue::open(&path, settings()).unwrap();
    let conn = q.inner.conn.lock().unwrap();
    let ok: String = conn
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(ok, "ok");
    let mut stmt = conn
        .prepare("SELECT body, COUNT(*) FROM messages GROUP BY body")
        .unwrap();
    let counts: std::collections::HashMap<u32, i64> = stmt
        .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))
        .unwrap()
        .map(|r| {
            let (b, n) = r.unwrap();
            (b.parse().unwrap(), n)
        })
        .collect();
    assert!(counts.values().all(|&n| n == 1), "a duplicate: {counts:?}");
    for i in &reported {
        assert_eq!(counts.get(i), Some(&1), "committed {i} is missing");
    }
    // At most the sends in progress at the kill are there unreported (one
    // per sender: committed, the process killed before it printed).
    let unreported: Vec<&u32> = counts.keys().filter(|i| !reported.contains(i)).collect();
    assert!(
        unreported.len() <= CHILD_SENDERS as usize,
        "{} committed, {} reported; unreported: {unreported:?}; last reported: {:?}",
        counts.len(),
        reported.len(),
        reported.iter().rev().take(3).collect::<Vec<_>>()
    );
}

/// Receive latency over a large backlog (ignored: a measurement, ~2 s).
/// `cargo test -p shared --features embedded --lib queue::embedded::tests::backlog -- --ignored --nocapture`
#[tokio::test]
#[ignore]
async fn backlog() {
    let dir = tempfile::tempdir().unwrap();
    let q = open(&dir, settings());
    let n = 50_000;
    // Half in one big group, half over 1000 groups.
    queue_directly(&q, n, |i| {
        if i % 2 == 0 {
            "big".to_owned()
        } else {
            format!("g{}", i % 1000)
        }
    });
    let t = Instant::now();
    let rounds = 20;
    for _ in 0..rounds {
        let got = q.receive(10).await.unwrap();
        assert_eq!(got.len(), 10);
        for m in &got {
            q.delete(m.receipt.as_deref().unwrap()).await.unwrap();
        }
    }
    println!(
        "backlog {n}: receive(10)+10 deletes {:?} per round",
        t.elapsed() / rounds
    );
}

/// `cargo test -p shared --features embedded --lib queue::embedded::tests::throughput -- --nocapture`
#[tokio::test]
async fn throughput() {
    let dir = tempfile::tempdir().unwrap();
    let q = open(&dir, settings());
    let n = 1000;
    let t = Instant::now();
    for i in 0..n {
        q.send(msg(&format!("g{}", i % 100), &format!("d{i}"), "{\"k\":1}"))
            .await
            .unwrap();
    }
    let send = t.elapsed();
    let t = Instant::now();
    let got = drain_all(&q).await;
    let drain = t.elapsed();
    assert_eq!(got.len(), n);
    println!(
        "embedded queue (synchronous=FULL): send {n} in {send:?} = {:.0}/s; \
         receive(10)+delete {n} in {drain:?} = {:.0}/s",
        n as f64 / send.as_secs_f64(),
        n as f64 / drain.as_secs_f64()
    );
}

#[tokio::test]
async fn concurrent_sends_and_deletes_share_commits() {
    let dir = tempfile::tempdir().unwrap();
    let q = open(&dir, settings());
    // 64 senders, 8 sends each; every 8th dedup id is sent twice at once.
    let tasks: Vec<_> = (0..64u32)
        .map(|t| {
            let q = q.clone();
            tokio::spawn(async move {
                let mut ids = Vec::new();
                for k in 0..8u32 {
                    let i = t * 8 + k;
                    let dedup = if i % 8 == 7 {
                        format!("twin{}", i / 16)
                    } else {
                        format!("d{i}")
                    };
                    ids.push((
                        dedup.clone(),
                        q.send(msg(&format!("g{}", i % 10), &dedup, &i.to_string()))
                            .await
                            .unwrap(),
                    ));
                }
                ids
            })
        })
        .collect();
    let mut by_dedup: std::collections::HashMap<String, HashSet<String>> = Default::default();
    for t in tasks {
        for (dedup, r) in t.await.unwrap() {
            by_dedup.entry(dedup).or_default().insert(r.message_id);
        }
    }
    // One message per deduplication id, the same id answered to both twins.
    assert!(by_dedup.values().all(|ids| ids.len() == 1), "{by_dedup:?}");
    let unique = by_dedup.len() as i64;
    assert_eq!(sql_count(&q, "SELECT COUNT(*) FROM messages"), unique);
    let (commits, writes) = q.group_commits();
    assert_eq!(writes, 512);
    assert!(commits < writes / 2, "{commits} commits for {writes} sends");
    // Deletes share commits too, and every message is received once.
    let got = drain_all(&q).await;
    assert_eq!(got.len() as i64, unique);
    assert_eq!(sql_count(&q, "SELECT COUNT(*) FROM messages"), 0);
}

/// Sends from 64 tasks at once: one commit carries many.
/// `cargo test -p shared --all-features --lib queue::embedded::tests::throughput_concurrent -- --nocapture`
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throughput_concurrent() {
    let dir = tempfile::tempdir().unwrap();
    let q = open(&dir, settings());
    let n = 4000u32;
    let t = Instant::now();
    let tasks: Vec<_> = (0..64u32)
        .map(|k| {
            let q = q.clone();
            tokio::spawn(async move {
                for i in (k..n).step_by(64) {
                    q.send(msg(&format!("g{}", i % 100), &format!("d{i}"), "{\"k\":1}"))
                        .await
                        .unwrap();
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    let send = t.elapsed();
    let (commits, writes) = q.group_commits();
    assert_eq!(writes, u64::from(n));
    println!(
        "embedded queue (synchronous=FULL), 64 senders: {n} sends in {send:?} = {:.0}/s in {commits} commits ({:.1} per commit)",
        f64::from(n) / send.as_secs_f64(),
        writes as f64 / commits as f64
    );
}

/// A webhook-sized body is stored compressed and comes back whole through
/// every path that reads a body: receive, the worker's dead letter, the dead
/// list, redrive and receive again.
#[tokio::test]
async fn long_bodies_are_stored_compressed_and_read_back_everywhere() {
    let dir = tempfile::tempdir().unwrap();
    let q = open(&dir, settings());
    let body = format!(
        "{{\"webhookEvent\":\"jira:issue_created\",\"issue\":{{\"key\":\"ÉTÉ-1\",\"d\":\"{}\"}}}}",
        "https://example.atlassian.net/rest/api/2/issue/10001 ".repeat(200)
    );
    q.send(msg("g", "long", &body)).await.unwrap();
    q.send(msg("h", "short", "{\"a\":1}")).await.unwrap();
    {
        let conn = q.inner.conn.lock().unwrap();
        let (kind, bytes): (String, i64) = conn
            .query_row(
                "SELECT typeof(body), length(body) FROM messages WHERE dedup_id = 'long'",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .unwrap();
        assert_eq!(kind, "blob");
        assert!(
            (bytes as usize) * 4 < body.len(),
            "{bytes} of {}",
            body.len()
        );
        let kind: String = conn
            .query_row(
                "SELECT typeof(body) FROM messages WHERE dedup_id = 'short'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(kind, "text");
    }
    let got = q.receive(10).await.unwrap();
    let long = got
        .iter()
        .find(|m| m.group_id.as_deref() == Some("g"))
        .unwrap();
    assert_eq!(long.body, body);
    q.dead_letter(long, "mapping_error: test").await.unwrap();
    let dead = q.dead_list(10).await.unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].body, body);
    assert_eq!(q.redrive(None).await.unwrap(), 1);
    let again = drain_all(&q).await;
    assert!(again.iter().any(|m| m.body == body), "redriven body intact");
}

/// A queue file of schema version 1 (every body text) opens as version 2
/// without a rewrite, and its bodies read as they were.
#[tokio::test]
async fn a_version_1_file_is_upgraded_in_place() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("queue.db");
    let long = "x".repeat(5000);
    {
        let q = EmbeddedQueue::open(&path, settings()).unwrap();
        let conn = q.inner.conn.lock().unwrap();
        // As version 1 wrote them: text, however long.
        conn.execute(
            "INSERT INTO messages (id, group_id, dedup_id, body, enqueued_at, visible_at)
             VALUES ('m1', 'g', 'd1', ?1, 0, 0)",
            [&long],
        )
        .unwrap();
        conn.pragma_update(None, "user_version", 1).unwrap();
    }
    let q = EmbeddedQueue::open(&path, settings()).unwrap();
    let version: i64 = q
        .inner
        .conn
        .lock()
        .unwrap()
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .unwrap();
    assert_eq!(version, SCHEMA_VERSION);
    assert_eq!(q.receive(1).await.unwrap()[0].body, long);
}

/// Message ids are 32 hex digits that sort by send time (the id index grows
/// at its end), and stay unique within one millisecond.
#[tokio::test]
async fn message_ids_sort_by_send_time() {
    let dir = tempfile::tempdir().unwrap();
    let q = open(&dir, settings());
    let mut ids = Vec::new();
    for i in 0..40 {
        let r = q
            .send(msg(&format!("g{i}"), &format!("d{i}"), "x"))
            .await
            .unwrap();
        assert_eq!(r.message_id.len(), 32, "{}", r.message_id);
        assert!(r.message_id.bytes().all(|b| b.is_ascii_hexdigit()));
        ids.push(r.message_id);
        if i % 10 == 9 {
            std::thread::sleep(Duration::from_millis(2));
        }
    }
    let unique: HashSet<&String> = ids.iter().collect();
    assert_eq!(unique.len(), ids.len());
    // Ids of different milliseconds sort by time (within one they may not).
    for w in ids.windows(2) {
        if w[0][..12] != w[1][..12] {
            assert!(w[0] < w[1], "{} then {}", w[0], w[1]);
        }
    }
    assert!(ids[0][..12] < ids[39][..12], "{} .. {}", ids[0], ids[39]);
}

/// A stored body that does not unpack (a damaged blob) does not stop the
/// queue: the receive dead-letters it with the reason and hands out the
/// rest, and the dead-letter list shows it without failing.
#[tokio::test]
async fn an_unreadable_body_is_dead_lettered_not_fatal() {
    let dir = tempfile::tempdir().unwrap();
    let q = open(&dir, settings());
    {
        let conn = q.inner.conn.lock().unwrap();
        // The LZ4 format byte and a length of 5 000, then a cut block.
        let damaged: Vec<u8> = [&[1u8, 0x88, 0x13, 0, 0][..], &[0xf0, 1, 2][..]].concat();
        conn.execute(
            "INSERT INTO messages (id, group_id, dedup_id, body, enqueued_at, visible_at)
             VALUES ('damaged', 'g1', 'd1', ?1, 0, 0)",
            [damaged],
        )
        .unwrap();
    }
    q.send(msg("g2", "d2", "kept")).await.unwrap();
    let got = q.receive(10).await.unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].body, "kept");
    let dead = q.dead_list(10).await.unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].id, "damaged");
    assert!(
        dead[0]
            .reason
            .starts_with("unreadable_body: stored body does not unpack"),
        "{}",
        dead[0].reason
    );
    assert!(
        dead[0].body.starts_with("(the stored body cannot be read:"),
        "{}",
        dead[0].body
    );
}

/// A message that is not in the queue (a parked event given up on) is
/// written to the dead table directly, once, long bodies packed like any;
/// one that is queued needs its receipt.
#[tokio::test]
async fn dead_letter_without_a_receipt_writes_the_dead_table_once() {
    let dir = tempfile::tempdir().unwrap();
    let q = open(&dir, settings());
    let body = "{\"parked\":\"".to_owned() + &"event ".repeat(300) + "\"}";
    let parked = InMessage {
        id: "parked:issue:1:created".into(),
        group_id: None,
        dedup_id: Some("issue:1:created".into()),
        body: body.clone(),
        receive_count: 1,
        receipt: None,
    };
    q.dead_letter(&parked, "not_correlated: gave up")
        .await
        .unwrap();
    q.dead_letter(&parked, "not_correlated: gave up")
        .await
        .unwrap();
    let dead = q.dead_list(10).await.unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(
        (dead[0].group_id.as_str(), dead[0].dedup_id.as_str()),
        ("dead", "issue:1:created")
    );
    assert_eq!(dead[0].body, body);
    assert_eq!(
        sql_count(&q, "SELECT COUNT(*) FROM dead WHERE typeof(body) = 'blob'"),
        1
    );

    let sent = q.send(msg("g", "d", "queued")).await.unwrap();
    let queued = InMessage {
        id: sent.message_id.clone(),
        receipt: None,
        ..parked
    };
    let err = q.dead_letter(&queued, "x").await.unwrap_err();
    assert!(err.to_string().contains("needs its receipt"), "{err}");
}

/// A receive reads a few index entries, not the whole queue: with 2 000
/// single-message groups queued it walks from the oldest and stops at its
/// batch. (The earlier query found every group's head first: its steps grew
/// with the queue.) A version-2 file written before the index existed gets it
/// when opened.
#[tokio::test]
async fn a_receive_walks_from_the_oldest_and_stops_at_its_batch() {
    use rusqlite::StatementStatus;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("queue.db");
    {
        let q = EmbeddedQueue::open(&path, settings()).unwrap();
        queue_directly(&q, 2000, |i| format!("g{i:04}"));
        let conn = q.inner.conn.lock().unwrap();
        conn.execute_batch("DROP INDEX messages_fifo").unwrap();
    }
    let q = EmbeddedQueue::open(&path, settings()).unwrap();
    let steps = {
        let conn = q.inner.conn.lock().unwrap();
        let plan: Vec<String> = conn
            .prepare(&format!("EXPLAIN QUERY PLAN {}", receive::HEADS))
            .unwrap()
            .query_map(params![1, 8], |r| r.get(3))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert!(plan.iter().any(|p| p.contains("messages_fifo")), "{plan:?}");
        let mut stmt = conn.prepare(receive::HEADS).unwrap();
        let seqs: Vec<i64> = stmt
            .query_map(params![1, 8], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(seqs, (1..=8).collect::<Vec<i64>>());
        stmt.get_status(StatementStatus::VmStep)
    };
    assert!(steps < 1000, "{steps} VM steps for 8 heads of 2 000");
    let got = q.receive(8).await.unwrap();
    let ids: Vec<_> = got.iter().map(|m| m.id.as_str()).collect();
    assert_eq!(
        ids,
        ["m0000", "m0001", "m0002", "m0003", "m0004", "m0005", "m0006", "m0007"]
    );
}

/// A send for a waiting receiver is received in its own commit: on disk it
/// is in flight with receive count 1 (what the worker's first sight rests
/// on) before `send_leased` returns, and the next receive takes it without
/// writing anything. A send whose group has a message queued is not leased
/// (FIFO within the group).
#[tokio::test]
async fn a_send_for_a_waiting_receiver_is_received_in_its_own_commit() {
    let dir = tempfile::tempdir().unwrap();
    let q = open(&dir, settings());
    let r1 = q.send_leased(msg("g1", "d1", "{\"n\":1}")).await.unwrap();
    let on_disk = |id: &str| -> (i64, Option<String>, i64) {
        let other = Connection::open(dir.path().join("q").join("queue.db")).unwrap();
        other
            .query_row(
                "SELECT receive_count, receipt, visible_at FROM messages WHERE id = ?1",
                [id],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .unwrap()
    };
    let (count, receipt, hidden) = on_disk(&r1.message_id);
    assert_eq!(count, 1);
    assert!(receipt.is_some());
    assert!(
        hidden > settings().now_ms() + 50_000,
        "hidden for the visibility timeout"
    );
    // Same group: not leased while d1 is in flight.
    let r2 = q.send_leased(msg("g1", "d2", "{\"n\":2}")).await.unwrap();
    assert_eq!(on_disk(&r2.message_id).0, 0);
    assert_eq!(on_disk(&r2.message_id).1, None);

    let changes = q.inner.conn.lock().unwrap().total_changes();
    let got = q.receive(10).await.unwrap();
    assert_eq!(
        q.inner.conn.lock().unwrap().total_changes(),
        changes,
        "no write"
    );
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].id, r1.message_id);
    assert_eq!(got[0].body, "{\"n\":1}");
    assert_eq!(got[0].receive_count, 1);
    assert_eq!(got[0].receipt, receipt);
    assert_eq!(got[0].group_id.as_deref(), Some("g1"));
    assert_eq!(got[0].dedup_id.as_deref(), Some("d1"));
    // d2 waits for its group's head, then comes from the table.
    assert!(q.receive(10).await.unwrap().is_empty());
    assert!(q.delete(receipt.as_deref().unwrap()).await.unwrap());
    let next = q.receive(10).await.unwrap();
    assert_eq!(next.len(), 1);
    assert_eq!(next[0].id, r2.message_id);
    assert_eq!(next[0].receive_count, 1);
    // A duplicate send leases nothing.
    let again = q.send_leased(msg("g1", "d1", "{\"n\":1}")).await.unwrap();
    assert!(again.duplicate);
    assert!(q.unclaimed().is_empty());
}

/// A queue whose clock stands at `t0` until the test moves it.
fn open_on_a_fixed_clock(
    dir: &tempfile::TempDir,
) -> (
    EmbeddedQueue,
    std::sync::Arc<crate::support::clock::FixedClock>,
    jiff::Timestamp,
) {
    let t0 = jiff::Timestamp::from_second(1_800_000_000).unwrap();
    let clock = std::sync::Arc::new(crate::support::clock::FixedClock::new(t0));
    let q = open(
        dir,
        EmbeddedSettings {
            clock: clock.clone(),
            ..settings()
        },
    );
    (q, clock, t0)
}

/// A lease nobody took is handed back: half gone, the next receive releases
/// it and hands it out again from the table (receive count 2); at a host's
/// stop, `unclaimed` gives its receipt to release.
#[tokio::test]
async fn leases_nobody_took_are_released() {
    let dir = tempfile::tempdir().unwrap();
    let (q, clock, t0) = open_on_a_fixed_clock(&dir);
    let r = q.send_leased(msg("g", "d1", "{}")).await.unwrap();
    clock.set(t0 + jiff::SignedDuration::from_secs(31));
    let got = q.receive(10).await.unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].id, r.message_id);
    assert_eq!(
        got[0].receive_count, 2,
        "released, then received from the table"
    );
    assert!(q.delete(got[0].receipt.as_deref().unwrap()).await.unwrap());

    let r = q.send_leased(msg("g", "d2", "{}")).await.unwrap();
    let left = q.unclaimed();
    assert_eq!(left.len(), 1);
    assert!(q.unclaimed().is_empty(), "taken once");
    assert!(q.release(&left[0], Duration::ZERO).await.unwrap());
    let got = q.receive(10).await.unwrap();
    assert_eq!(got[0].id, r.message_id);
    assert_eq!(got[0].receive_count, 2);
}

/// A hook on the queue's connection that holds its next COMMIT, once armed,
/// until the test says whether it goes through (`true`) or rolls back
/// (`false`), as a slow fsync or a failing disk would.
struct HeldCommit {
    armed: std::sync::Arc<std::sync::atomic::AtomicBool>,
    go: std::sync::mpsc::Sender<bool>,
    reached: std::sync::mpsc::Receiver<()>,
}

impl HeldCommit {
    fn install(q: &EmbeddedQueue) -> Self {
        let armed = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (go, verdict) = std::sync::mpsc::channel::<bool>();
        let (at, reached) = std::sync::mpsc::channel::<()>();
        let hook_armed = armed.clone();
        let _ = q.inner.conn.lock().unwrap().commit_hook(Some(move || {
            if !hook_armed.swap(false, std::sync::atomic::Ordering::SeqCst) {
                return false;
            }
            let _ = at.send(());
            // true turns the COMMIT into a ROLLBACK.
            !verdict
                .recv_timeout(Duration::from_secs(10))
                .unwrap_or(false)
        }));
        HeldCommit { armed, go, reached }
    }

    /// Runs `call` (a send or a receive) as a task whose COMMIT is held;
    /// returns once it is.
    fn hold<T: Send + 'static>(
        &self,
        call: impl std::future::Future<Output = T> + Send + 'static,
    ) -> tokio::task::JoinHandle<T> {
        self.armed.store(true, std::sync::atomic::Ordering::SeqCst);
        let task = tokio::spawn(call);
        tokio::task::block_in_place(|| self.reached.recv_timeout(Duration::from_secs(10)))
            .expect("the armed COMMIT was reached");
        task
    }

    fn release(&self, commit: bool) {
        self.go.send(commit).unwrap();
    }
}

/// A lease goes out while its commit syncs: the waiting loop is woken and
/// takes it before the COMMIT is done; its `durable` answers, and the
/// sender's send returns, only once it is.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lease_goes_out_before_its_commit_is_done_and_waits_for_it() {
    let dir = tempfile::tempdir().unwrap();
    let q = open(&dir, settings());
    let wake = std::sync::Arc::new(tokio::sync::Notify::new());
    assert!(q.wake_receivers_with(wake.clone()));
    let hold = HeldCommit::install(&q);
    let sender = hold.hold({
        let q = q.clone();
        async move { q.send_leased(msg("g", "d1", "{\"n\":1}")).await }
    });
    tokio::time::timeout(Duration::from_secs(5), wake.notified())
        .await
        .expect("a loop is woken before the COMMIT is done");
    let got = q.receive(10).await.unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].receive_count, 1);
    assert_eq!(got[0].body, "{\"n\":1}");
    let durable = tokio::spawn({
        let (q, m) = (q.clone(), got[0].clone());
        async move { q.durable(&m).await }
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        !durable.is_finished(),
        "not durable while the COMMIT is held"
    );
    assert!(!sender.is_finished(), "the sender waits for the COMMIT too");
    hold.release(true);
    durable.await.unwrap().expect("durable once committed");
    let sent = sender.await.unwrap().unwrap();
    assert_eq!(sent.message_id, got[0].id);
    assert!(q.inner.pending.lock().unwrap().is_empty());
    assert!(q.durable(&got[0]).await.is_ok(), "and stays so");
    // Committed as leased: deleted with its receipt.
    assert!(q.delete(got[0].receipt.as_deref().unwrap()).await.unwrap());
    // A send that is not leased wakes a loop once it is in the table.
    let sender = hold.hold({
        let q = q.clone();
        async move { q.send(msg("g", "d2", "{}")).await }
    });
    assert!(
        tokio::time::timeout(Duration::from_millis(200), wake.notified())
            .await
            .is_err(),
        "no wake before a message that is not leased is committed"
    );
    hold.release(true);
    sender.await.unwrap().unwrap();
    tokio::time::timeout(Duration::from_secs(5), wake.notified())
        .await
        .expect("woken once committed");
}

/// A COMMIT that fails takes its leases back: the loop that took one is
/// told the send did not commit, one nobody took is never handed out, and
/// the queue holds neither.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lease_whose_commit_fails_is_withdrawn() {
    let dir = tempfile::tempdir().unwrap();
    let q = open(&dir, settings());
    let hold = HeldCommit::install(&q);
    // Taken before the failure.
    let sender = hold.hold({
        let q = q.clone();
        async move { q.send_leased(msg("g1", "d1", "{}")).await }
    });
    let got = q.receive(10).await.unwrap();
    assert_eq!(got.len(), 1);
    hold.release(false);
    let err = q
        .durable(&got[0])
        .await
        .expect_err("the send did not commit");
    assert!(matches!(err, QueueError::Unavailable(_)), "{err:?}");
    assert!(sender.await.unwrap().is_err(), "the sender gets the error");
    // Not taken before the failure.
    let sender = hold.hold({
        let q = q.clone();
        async move { q.send_leased(msg("g2", "d2", "{}")).await }
    });
    hold.release(false);
    assert!(sender.await.unwrap().is_err());
    assert!(q.receive(10).await.unwrap().is_empty(), "withdrawn");
    assert!(q.unclaimed().is_empty());
    assert!(q.inner.pending.lock().unwrap().is_empty());
    assert_eq!(sql_count(&q, "SELECT COUNT(*) FROM messages"), 0);
    // The failed receipt is stale; a retry of the send goes through.
    assert!(!q
        .release(got[0].receipt.as_deref().unwrap(), Duration::ZERO)
        .await
        .unwrap());
    let again = q.send_leased(msg("g1", "d1", "{}")).await.unwrap();
    assert!(!again.duplicate, "a failed send leaves no dedup entry");
    assert_eq!(q.receive(10).await.unwrap().len(), 1);
}

/// A receive whose transaction fails (it releases a half-gone lease) keeps
/// the fresh leases it had taken: the next receive hands them out, rather
/// than them staying hidden until their lease runs out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_receive_keeps_the_fresh_leases_it_took() {
    let dir = tempfile::tempdir().unwrap();
    let (q, clock, t0) = open_on_a_fixed_clock(&dir);
    q.send_leased(msg("g1", "d1", "{}")).await.unwrap();
    clock.set(t0 + jiff::SignedDuration::from_secs(31));
    let fresh = q.send_leased(msg("g2", "d2", "{}")).await.unwrap();
    // d1's lease is half gone: the receive releases it in a transaction, which fails.
    let hold = HeldCommit::install(&q);
    let receive = hold.hold({
        let q = q.clone();
        async move { q.receive(10).await }
    });
    hold.release(false);
    assert!(receive.await.unwrap().is_err());
    let got = q.receive(10).await.unwrap();
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0].id, fresh.message_id);
    assert_eq!(got[0].receive_count, 1);
}

/// The send whose commit takes the log past the checkpoint mark is answered
/// before the committer's checkpoint and its restart of the log (the
/// restart's commit, which comes after the checkpoint, is held here); the
/// log is short again after it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_log_is_checkpointed_after_the_sender_is_answered() {
    let dir = tempfile::tempdir().unwrap();
    let q = open(&dir, settings());
    let frames = q.inner.log_frames.clone();
    let (at, reached) = std::sync::mpsc::channel::<u64>();
    let (go, verdict) = std::sync::mpsc::channel::<()>();
    let held = std::sync::atomic::AtomicBool::new(false);
    // Holds the first commit made while the log is past the mark: the
    // restart's (a send's commit raises the count only once it is done).
    let _ = q.inner.conn.lock().unwrap().commit_hook(Some(move || {
        let n = frames.load(std::sync::atomic::Ordering::SeqCst);
        if n >= CHECKPOINT_FRAMES && !held.swap(true, std::sync::atomic::Ordering::SeqCst) {
            let _ = at.send(n);
            let _ = verdict.recv_timeout(Duration::from_secs(10));
        }
        false
    }));
    let mut sent = 0;
    let before = loop {
        let send = tokio::spawn({
            let (q, m) = (q.clone(), msg("g", &format!("d{sent}"), "{}"));
            async move { q.send(m).await }
        });
        let answered = tokio::time::timeout(Duration::from_secs(5), send).await;
        assert!(
            answered.is_ok(),
            "send {sent} was not answered: it waited for the checkpoint"
        );
        answered.unwrap().unwrap().unwrap();
        sent += 1;
        if let Ok(n) = reached.try_recv() {
            break n;
        }
        // The restart may not have reached its COMMIT yet.
        if q.inner.log_frames.load(std::sync::atomic::Ordering::SeqCst) >= CHECKPOINT_FRAMES {
            let n = tokio::task::block_in_place(|| reached.recv_timeout(Duration::from_secs(5)))
                .expect("the committer restarts the log once it passed the mark");
            break n;
        }
        assert!(sent < 10_000, "the log never reached the mark");
    };
    assert!(before >= CHECKPOINT_FRAMES);
    go.send(()).unwrap();
    // The next send waits for the committer (still busy or done) and finds
    // the log restarted.
    q.send(msg("g", "after", "{}")).await.unwrap();
    let now = q.inner.log_frames.load(std::sync::atomic::Ordering::SeqCst);
    assert!(
        now < 100,
        "the log restarted: {now} frames after the checkpoint"
    );
    assert_eq!(
        sql_count(&q, "SELECT COUNT(*) FROM messages"),
        sent as i64 + 1
    );
}

/// Commits outside the group commit (here: straight on the connection, as
/// receives and the admin commands write) that take the log past the inline
/// mark checkpoint it themselves: the log stays bounded.
#[tokio::test]
async fn a_log_no_group_commit_follows_is_checkpointed_by_its_commits() {
    let dir = tempfile::tempdir().unwrap();
    let q = open(&dir, settings());
    let mut most = 0;
    {
        let conn = q.inner.conn.lock().unwrap();
        conn.execute_batch("CREATE TABLE scratch (b BLOB)").unwrap();
        for _ in 0..150 {
            // About 50 pages a commit.
            conn.execute("INSERT INTO scratch VALUES (zeroblob(200000))", [])
                .unwrap();
            most = most.max(q.inner.log_frames.load(std::sync::atomic::Ordering::SeqCst));
        }
    }
    assert!(
        most >= CHECKPOINT_FRAMES * 3,
        "the log grew to {most} frames only"
    );
    assert!(
        most < CHECKPOINT_FRAMES * 4 + 100,
        "the log grew to {most} frames: not checkpointed inline"
    );
    // And the log itself started over (about 7 500 frames if it had not).
    let (log, _) = q
        .inner
        .conn
        .lock()
        .unwrap()
        .wal_checkpoint_v2(
            Some(rusqlite::MAIN_DB),
            rusqlite::wal::CheckpointMode::PASSIVE,
        )
        .unwrap();
    assert!(
        (log as u64) < CHECKPOINT_FRAMES * 4,
        "{log} frames in the log: it never restarted"
    );
}
