//! A damaged state database is never used silently: one page overwritten in
//! the middle of a real database makes `sightline run` refuse to start with
//! the file and the recovery command; `sightline state recover` copies the
//! readable rows into a fresh database that opens; with
//! `[state] on_corruption = "rebuild"` the daemon starts and says so.

use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use sightline::store::{NewMessage, Outbox, Store};

const MESSAGES: usize = 300;

/// A state database of a few hundred 2 kB outbox messages (well over a
/// hundred pages), closed so its WAL is folded in.
fn populate(dir: &Path) {
    let store = Store::open(Some(dir)).expect("store");
    let body = vec![b'x'; 2000];
    for i in 0..MESSAGES {
        let id = format!("m{i}");
        store
            .add(
                &[NewMessage {
                    target: "http://receiver.example/hook",
                    message_id: &id,
                    alert_id: "a",
                    topic: "",
                    body: &body,
                    secrets: &[],
                }],
                0,
            )
            .expect("add");
    }
}

/// Overwrites the page in the middle of the file with garbage.
fn damage(dir: &Path) {
    let path = dir.join("state.sqlite3");
    assert!(
        !dir.join("state.sqlite3-wal").exists()
            || std::fs::metadata(dir.join("state.sqlite3-wal"))
                .map(|m| m.len())
                .unwrap_or(0)
                == 0
    );
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&path)
        .expect("open");
    let mut head = [0u8; 18];
    f.read_exact(&mut head).expect("header");
    let page = u64::from(u16::from_be_bytes([head[16], head[17]]));
    let pages = f.metadata().expect("meta").len() / page;
    assert!(pages > 50, "{pages} pages");
    f.seek(SeekFrom::Start(pages / 2 * page)).expect("seek");
    let garbage: Vec<u8> = (0..page).map(|i| (i * 7 + 13) as u8).collect();
    f.write_all(&garbage).expect("overwrite");
}

/// Runs `sightline run` on a config until it exits or `wait` passes;
/// returns (exit code if it exited, everything it printed).
fn run_daemon(config: &Path, wait: Duration) -> (Option<i32>, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_sightline"))
        .args(["run", "--config"])
        .arg(config)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run sightline");
    let deadline = Instant::now() + wait;
    let code = loop {
        if let Ok(Some(s)) = child.try_wait() {
            break s.code();
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let mut text = String::new();
    for mut s in [
        child.stdout.take().map(|s| Box::new(s) as Box<dyn Read>),
        child.stderr.take().map(|s| Box::new(s) as Box<dyn Read>),
    ]
    .into_iter()
    .flatten()
    {
        let _ = s.read_to_string(&mut text);
    }
    (code, text)
}

fn config(dir: &Path, extra: &str) -> std::path::PathBuf {
    let p = dir.join("sightline.toml");
    let text = format!(
        "[[streams]]\nid = \"cam\"\nurl = \"test:ball\"\n[[events]]\nid = \"p\"\nprompt = \"person\"\n\
         [state]\ndir = \"{}\"\n{extra}",
        dir.join("state").display()
    );
    std::fs::write(&p, text).expect("config");
    p
}

#[test]
fn a_damaged_database_is_refused_recovered_or_rebuilt_never_used() {
    let dir = tempfile::tempdir().expect("temp dir");
    let state = dir.path().join("state");
    populate(&state);
    damage(&state);

    // Refused, with the file and the command.
    let cfg = config(dir.path(), "");
    let (code, text) = run_daemon(&cfg, Duration::from_secs(30));
    assert_eq!(code, Some(1), "{text}");
    assert!(
        text.contains(&state.join("state.sqlite3").display().to_string())
            && text.contains("sightline state recover --state-dir"),
        "{text}"
    );

    // Recovered: a sound database with the readable rows, the old one kept.
    let out = Command::new(env!("CARGO_BIN_EXE_sightline"))
        .args(["state", "recover", "--state-dir"])
        .arg(&state)
        .output()
        .expect("recover");
    let said =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{said}");
    let store = Store::open(Some(&state)).expect("the recovered database opens and checks");
    let kept = store
        .due("http://receiver.example/hook", i64::MAX, 10_000)
        .expect("rows");
    assert!(
        kept.len() >= MESSAGES / 2 && kept.len() < MESSAGES,
        "the readable rows, not the damaged page's: {} of {MESSAGES} ({said})",
        kept.len()
    );
    drop(store);
    let aside = std::fs::read_dir(&state).expect("dir").flatten().any(|e| {
        e.file_name()
            .to_string_lossy()
            .starts_with("state.sqlite3.corrupt-")
    });
    assert!(aside, "the damaged file is kept beside the new one");

    // Rebuilt: damage the (recovered) database again; the daemon starts
    // from a fresh one and says so loudly.
    damage_after_close(&state);
    let cfg = config(dir.path(), "on_corruption = \"rebuild\"\n");
    let (code, text) = run_daemon(&cfg, Duration::from_secs(8));
    assert_eq!(code, None, "still running: {text}");
    assert!(text.contains("STATE DATABASE DAMAGED"), "{text}");
    Store::open(Some(&state)).expect("the fresh database is sound");
}

/// Grows the database past a few pages again (the recovered one may be
/// compact) and damages it.
fn damage_after_close(state: &Path) {
    populate(state);
    damage(state);
}
