//! The schema, as ordered steps. `PRAGMA user_version` counts the steps a
//! database has had; [`super::Store::open`] applies the rest.

/// Schema steps, applied in order; `user_version` counts those applied.
/// Append only: never edit a step that has shipped.
pub(super) const MIGRATIONS: &[&str] = &[
    // 1: the first schema.
    "CREATE TABLE streams (id TEXT PRIMARY KEY, body TEXT NOT NULL);
     CREATE TABLE indexes (id TEXT PRIMARY KEY, stream_id TEXT NOT NULL, body TEXT NOT NULL);
     CREATE TABLE events (id TEXT PRIMARY KEY, body TEXT NOT NULL);
     CREATE TABLE alerts (id TEXT PRIMARY KEY, body TEXT NOT NULL);
     CREATE TABLE scene_records (
         seq INTEGER PRIMARY KEY AUTOINCREMENT,
         index_id TEXT NOT NULL,
         start REAL NOT NULL,
         end REAL NOT NULL,
         body TEXT NOT NULL);
     CREATE INDEX scene_records_by_index ON scene_records (index_id, start);",
    // 2: the durable webhook outbox (see alert/outbox.rs).
    "CREATE TABLE outbox (
         seq INTEGER PRIMARY KEY AUTOINCREMENT,
         target TEXT NOT NULL,
         message_id TEXT NOT NULL,
         alert_id TEXT NOT NULL,
         body BLOB NOT NULL,
         secrets TEXT NOT NULL,
         attempts INTEGER NOT NULL DEFAULT 0,
         next_at INTEGER NOT NULL,
         created_at INTEGER NOT NULL,
         last_error TEXT,
         dead INTEGER NOT NULL DEFAULT 0);
     CREATE INDEX outbox_due ON outbox (target, dead, next_at);",
    // 3: MQTT messages in the outbox need their topic.
    "ALTER TABLE outbox ADD COLUMN topic TEXT NOT NULL DEFAULT '';",
    // 4: frame embeddings of dual-encoder models (see embeddings.rs).
    "CREATE TABLE embeddings (
         seq INTEGER PRIMARY KEY AUTOINCREMENT,
         stream_id TEXT NOT NULL,
         wall_ms INTEGER NOT NULL,
         t REAL NOT NULL,
         scale REAL NOT NULL,
         q BLOB NOT NULL);
     CREATE INDEX embeddings_by_time ON embeddings (wall_ms);",
    // 5: webhook URLs whose receiver answered 410 Gone stay disabled across
    // restarts, until an operator redelivers one of their dead letters.
    "CREATE TABLE gone_targets (
         target TEXT PRIMARY KEY,
         reason TEXT NOT NULL,
         at_ms INTEGER NOT NULL);",
    // 6: text embeddings of prompts, by text encoder and token ids, so a
    // restart does not run the text encoder again (see model/clip.rs).
    "CREATE TABLE text_embeddings (
         model TEXT NOT NULL,
         ids BLOB NOT NULL,
         vec BLOB NOT NULL,
         used_ms INTEGER NOT NULL,
         PRIMARY KEY (model, ids));
     CREATE INDEX text_embeddings_by_use ON text_embeddings (used_ms);",
    // 7: a clip per occurrence (record/): its span in wall time, kept
    // so the player page can show it and retention keeps its segments.
    "CREATE TABLE clips (
         occurrence_id TEXT PRIMARY KEY,
         stream_id TEXT NOT NULL,
         body TEXT NOT NULL,
         start_ms INTEGER NOT NULL,
         end_ms INTEGER,
         created_ms INTEGER NOT NULL);
     CREATE INDEX clips_by_creation ON clips (created_ms);",
    // 8: clips the recording budget evicted keep their row, marked with
    // why, so their links answer 410 Gone and History shows them expired.
    "ALTER TABLE clips ADD COLUMN expired TEXT;",
];
