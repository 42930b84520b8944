//! The queue file's tables, versioned with `PRAGMA user_version` and marked
//! with `PRAGMA application_id`.

use super::base::unavailable;
use crate::queue::port::QueueError;
use rusqlite::{Connection, TransactionBehavior};
use std::path::Path;

/// The schema this build writes and reads. 2: long bodies are stored
/// compressed (`stored`); the tables are those of 1, whose text bodies read
/// as they are.
pub const SCHEMA_VERSION: i64 = 2;
/// `PRAGMA application_id` of a queue file ("JRQ1").
const APPLICATION_ID: i64 = 0x4A52_5131;

const SCHEMA: &str = "
CREATE TABLE messages (
    seq           INTEGER PRIMARY KEY AUTOINCREMENT,
    id            TEXT    NOT NULL UNIQUE,
    group_id      TEXT    NOT NULL,
    dedup_id      TEXT    NOT NULL,
    body          TEXT    NOT NULL,
    attributes    TEXT    NOT NULL DEFAULT '[]',
    enqueued_at   INTEGER NOT NULL,
    visible_at    INTEGER NOT NULL,
    receive_count INTEGER NOT NULL DEFAULT 0,
    receipt       TEXT    UNIQUE
);
CREATE INDEX messages_group ON messages (group_id, seq);
CREATE TABLE dedup (
    dedup_id   TEXT    PRIMARY KEY,
    message_id TEXT    NOT NULL,
    sent_at    INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX dedup_sent ON dedup (sent_at);
CREATE TABLE dead (
    dseq          INTEGER PRIMARY KEY AUTOINCREMENT,
    id            TEXT    NOT NULL UNIQUE,
    group_id      TEXT    NOT NULL,
    dedup_id      TEXT    NOT NULL,
    body          TEXT    NOT NULL,
    attributes    TEXT    NOT NULL DEFAULT '[]',
    reason        TEXT    NOT NULL,
    receive_count INTEGER NOT NULL,
    enqueued_at   INTEGER NOT NULL,
    dead_at       INTEGER NOT NULL
);
";

/// Creates or checks the schema, in one transaction.
pub(super) fn migrate(conn: &mut Connection, path: &Path) -> Result<(), QueueError> {
    let at = |e: rusqlite::Error| unavailable(format_args!("{}: {e}", path.display()));
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(at)?;
    let app: i64 = tx
        .pragma_query_value(None, "application_id", |r| r.get(0))
        .map_err(at)?;
    let version: i64 = tx
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .map_err(at)?;
    if app != APPLICATION_ID && (app != 0 || version != 0) {
        return Err(QueueError::Unavailable(format!(
            "{} is not a jira-relay queue (application_id {app:#x})",
            path.display()
        )));
    }
    if version > SCHEMA_VERSION {
        return Err(QueueError::Unavailable(format!(
            "{} has queue schema version {version}, newer than this relay knows \
             ({SCHEMA_VERSION}); it was written by a newer jira-relay — upgrade, or \
             point the queue at another file",
            path.display()
        )));
    }
    if version == 0 {
        let tables: i64 = tx
            .query_row(
                "SELECT COUNT(*) FROM sqlite_schema WHERE type = 'table'",
                [],
                |r| r.get(0),
            )
            .map_err(at)?;
        if tables > 0 {
            return Err(QueueError::Unavailable(format!(
                "{} is an SQLite database of something else (it has tables but no \
                 queue schema version)",
                path.display()
            )));
        }
        tx.execute_batch(SCHEMA).map_err(at)?;
        tx.pragma_update(None, "application_id", APPLICATION_ID)
            .map_err(at)?;
        tx.pragma_update(None, "user_version", SCHEMA_VERSION)
            .map_err(at)?;
    }
    // The receive's walk in queue order reads this index, not the table. Its
    // one definition, for new files and for version-2 files written before it
    // (added within version 2: a relay without it maintains it all the same).
    tx.execute_batch(
        "CREATE INDEX IF NOT EXISTS messages_fifo ON messages (seq, visible_at, group_id)",
    )
    .map_err(at)?;
    if version == 1 {
        // Nothing to rewrite: its text bodies are read as they are. The new
        // number keeps a relay of version 1 from reading compressed bodies.
        tx.pragma_update(None, "user_version", SCHEMA_VERSION)
            .map_err(at)?;
    }
    tx.commit().map_err(at)
}
