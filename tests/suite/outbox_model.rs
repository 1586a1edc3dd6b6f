//! Model check of the durable outbox: random sequences of enqueue, attempt
//! (read what is due), acknowledge, fail (retry later or dead letter), 410
//! Gone, redeliver, clock steps and crash-and-reopen go through the SQLite
//! outbox and the in-memory model side by side. After every step both must
//! give the same answers; nothing acknowledged may ever come back, and at
//! the end every message never acknowledged must still be there (live or
//! dead), whatever crashes happened in between.
//!
//! A crash is simulated by copying the database and its write-ahead log as
//! they are on disk while the connection is still open (no clean close, no
//! checkpoint), then opening the copy: what a power cut would leave.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use proptest::prelude::*;
use sightline::domain::Secret;
use sightline::store::{MemoryOutbox, NewMessage, Outbox, OutboxRow, Store};

const TARGETS: [&str; 3] = ["https://a.example/h", "https://b.example/h", "mqtt"];

#[derive(Debug, Clone)]
enum Op {
    Enqueue {
        target: usize,
        count: usize,
    },
    Due {
        target: usize,
    },
    Ack {
        pick: usize,
    },
    Fail {
        pick: usize,
        retry_in: Option<i64>,
    },
    Gone {
        target: usize,
    },
    Redeliver {
        pick: usize,
    },
    /// Keep only the newest `keep` dead letters (`[state] max_dead_letters`).
    Trim {
        keep: usize,
    },
    Advance {
        ms: i64,
    },
    Crash,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (0..3usize, 1..4usize).prop_map(|(target, count)| Op::Enqueue { target, count }),
        3 => (0..3usize).prop_map(|target| Op::Due { target }),
        3 => any::<usize>().prop_map(|pick| Op::Ack { pick }),
        2 => (any::<usize>(), proptest::option::of(0..5_000i64))
            .prop_map(|(pick, retry_in)| Op::Fail { pick, retry_in }),
        1 => (0..3usize).prop_map(|target| Op::Gone { target }),
        1 => any::<usize>().prop_map(|pick| Op::Redeliver { pick }),
        1 => (0..4usize).prop_map(|keep| Op::Trim { keep }),
        2 => (0..3_000i64).prop_map(|ms| Op::Advance { ms }),
        1 => Just(Op::Crash),
    ]
}

/// Where the databases of one case live: on tmpfs when there is one, so
/// `synchronous=FULL` costs nothing and ten thousand cases stay quick.
fn scratch() -> tempfile::TempDir {
    let shm = Path::new("/dev/shm");
    let made = if shm.is_dir() {
        tempfile::tempdir_in(shm)
    } else {
        tempfile::tempdir()
    };
    made.expect("a scratch directory")
}

/// Copies the files a power cut would leave, and opens them.
fn crash(current: &Path, next: &Path) -> Store {
    std::fs::create_dir_all(next).expect("crash directory");
    for name in ["state.sqlite3", "state.sqlite3-wal"] {
        let from = current.join(name);
        if from.exists() {
            std::fs::copy(&from, next.join(name)).expect("copying the database as it is on disk");
        }
    }
    Store::open(Some(next)).expect("reopening after the crash")
}

/// Every row, live and dead, of both outboxes (live first, by seq).
fn everything(o: &dyn Outbox) -> Vec<OutboxRow> {
    let mut rows: Vec<OutboxRow> = TARGETS
        .iter()
        .flat_map(|t| o.due(t, i64::MAX, 10_000).expect("due"))
        .collect();
    rows.sort_by_key(|r| r.seq);
    rows.extend(o.dead_letters(10_000).expect("dead letters"));
    rows
}

struct Case {
    dir: tempfile::TempDir,
    current: PathBuf,
    crashes: usize,
    sql: Store,
    model: MemoryOutbox,
    now: i64,
    known: Vec<i64>,
    acked: BTreeSet<i64>,
    secret: Secret,
}

impl Case {
    fn new() -> Case {
        let dir = scratch();
        let current = dir.path().join("0");
        let sql = Store::open(Some(&current)).expect("open");
        Case {
            dir,
            current,
            crashes: 0,
            sql,
            model: MemoryOutbox::default(),
            now: 1_000,
            known: Vec::new(),
            acked: BTreeSet::new(),
            secret: Secret::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").expect("secret"),
        }
    }

    fn pick(&self, i: usize) -> Option<i64> {
        (!self.known.is_empty()).then(|| self.known[i % self.known.len()])
    }

    fn step(&mut self, op: &Op) -> Result<(), TestCaseError> {
        let (sql, model) = (&self.sql as &dyn Outbox, &self.model as &dyn Outbox);
        match *op {
            Op::Enqueue { target, count } => {
                let ids: Vec<String> = (0..count)
                    .map(|i| format!("m{}-{i}", self.known.len()))
                    .collect();
                let msgs: Vec<NewMessage> = ids
                    .iter()
                    .map(|id| NewMessage {
                        target: TARGETS[target],
                        message_id: id,
                        alert_id: "alr",
                        topic: if target == 2 {
                            "sightline/s/alerts/x"
                        } else {
                            ""
                        },
                        body: id.as_bytes(),
                        secrets: std::slice::from_ref(&self.secret),
                    })
                    .collect();
                let a = sql.add(&msgs, self.now).expect("sql add");
                let b = model.add(&msgs, self.now).expect("model add");
                prop_assert_eq!(&a, &b, "both number new messages alike");
                self.known.extend(a);
            }
            Op::Due { target } => {
                let a = sql.due(TARGETS[target], self.now, 5).expect("sql due");
                let b = model.due(TARGETS[target], self.now, 5).expect("model due");
                prop_assert_eq!(&a, &b);
                for r in &a {
                    prop_assert!(
                        !self.acked.contains(&r.seq),
                        "acknowledged {} came back",
                        r.seq
                    );
                }
            }
            Op::Ack { pick } => {
                if let Some(seq) = self.pick(pick) {
                    sql.done(seq).expect("sql done");
                    model.done(seq).expect("model done");
                    self.acked.insert(seq);
                }
            }
            Op::Fail { pick, retry_in } => {
                if let Some(seq) = self.pick(pick) {
                    let at = retry_in.map(|d| self.now + d);
                    sql.failed(seq, 1, at, "503").expect("sql failed");
                    model.failed(seq, 1, at, "503").expect("model failed");
                }
            }
            Op::Gone { target } => {
                let a = sql
                    .target_gone(TARGETS[target], "410", self.now)
                    .expect("sql gone");
                let b = model
                    .target_gone(TARGETS[target], "410", self.now)
                    .expect("model gone");
                prop_assert_eq!(a, b, "both kill the same live rows");
            }
            Op::Redeliver { pick } => {
                if let Some(seq) = self.pick(pick) {
                    let a = sql.redeliver(seq, self.now).expect("sql redeliver");
                    let b = model.redeliver(seq, self.now).expect("model redeliver");
                    prop_assert_eq!(a, b);
                }
            }
            Op::Trim { keep } => {
                let before: BTreeSet<i64> = everything(model).iter().map(|r| r.seq).collect();
                let a = sql.trim_dead(keep).expect("sql trim");
                let b = model.trim_dead(keep).expect("model trim");
                prop_assert_eq!(a, b, "both delete the same number of dead letters");
                let after: BTreeSet<i64> = everything(model).iter().map(|r| r.seq).collect();
                // Deleted on purpose: these are no longer owed.
                self.acked.extend(before.difference(&after));
            }
            Op::Advance { ms } => self.now += ms,
            Op::Crash => {
                self.crashes += 1;
                let next = self.dir.path().join(self.crashes.to_string());
                let reopened = crash(&self.current, &next);
                self.sql = reopened;
                self.current = next;
            }
        }
        Ok(())
    }

    fn agree(&self) -> Result<(), TestCaseError> {
        let (a, b) = (everything(&self.sql), everything(&self.model));
        prop_assert_eq!(&a, &b, "the SQLite outbox and the model disagree");
        let sorted = |mut t: Vec<String>| {
            t.sort();
            t
        };
        prop_assert_eq!(
            sorted(self.sql.targets().expect("targets")),
            sorted(self.model.targets().expect("targets"))
        );
        for t in TARGETS {
            prop_assert_eq!(
                self.sql.gone_reason(t).expect("gone"),
                self.model.gone_reason(t).expect("gone")
            );
        }
        Ok(())
    }
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 10_000,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn the_sqlite_outbox_behaves_like_its_model(ops in proptest::collection::vec(op(), 1..40)) {
        let mut case = Case::new();
        for op in &ops {
            case.step(op)?;
            case.agree()?;
        }
        // Nothing unacknowledged is lost: every message ever accepted and
        // not acknowledged is still stored, live or dead.
        let stored: BTreeSet<i64> = everything(&case.sql).iter().map(|r| r.seq).collect();
        for seq in &case.known {
            prop_assert_eq!(stored.contains(seq), !case.acked.contains(seq), "message {}", seq);
        }
    }
}
