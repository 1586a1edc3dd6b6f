//! Catalog rows, scene records and prompt embeddings through a real SQLite
//! file: reopening, versioning, paging and bounds.

use anyhow::Context;
use rusqlite::Connection;

use super::embeddings::TEXT_EMBEDDINGS_KEPT;
use super::migrations::MIGRATIONS;
use super::*;

fn record(index: &str, t: f64) -> SceneRecord {
    SceneRecord {
        rtstream_index_id: index.into(),
        rtstream_id: "s".into(),
        start: t,
        end: t + 1.0,
        timestamp: "2026-11-23T00:00:00.000Z".into(),
        frames: 2,
        labels: vec![],
        description: String::new(),
    }
}

#[test]
fn prompt_embeddings_are_bounded_and_keyed_by_model() -> anyhow::Result<()> {
    let s = Store::open(None)?;
    let n = TEXT_EMBEDDINGS_KEPT as i64 + 10;
    for i in 0..n {
        s.put_text_embedding("m1", &[49406, i, 49407], &[i as f32, 0.5])?;
    }
    let count: i64 = s
        .lock()?
        .query_row("SELECT COUNT(*) FROM text_embeddings", [], |r| r.get(0))?;
    assert_eq!(count, TEXT_EMBEDDINGS_KEPT as i64);
    let newest = s.text_embedding("m1", &[49406, n - 1, 49407])?;
    assert_eq!(newest, Some(vec![(n - 1) as f32, 0.5]));
    assert_eq!(
        s.text_embedding("m1", &[49406, 0, 49407])?,
        None,
        "oldest dropped"
    );
    assert_eq!(s.text_embedding("m2", &[49406, n - 1, 49407])?, None);
    Ok(())
}

#[test]
fn rows_survive_reopening_and_the_schema_is_versioned() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    {
        let s = Store::open(Some(dir.path()))?;
        let row = EventRow {
            id: "e1".into(),
            spec: EventDef {
                prompt: Some("Detect person".into()),
                ..Default::default()
            },
            origin: Origin::Api,
            created_at: "now".into(),
        };
        s.put(Table::Events, "e1", &row)?;
        s.put(
            Table::Events,
            "e2",
            &EventRow {
                id: "e2".into(),
                ..row
            },
        )?;
        s.delete(&[(Table::Events, "e1".into())])?;
    }
    let s = Store::open(Some(dir.path()))?;
    assert_eq!(s.version()?, MIGRATIONS.len());
    let snap = s.snapshot()?;
    let ids: Vec<_> = snap.events.iter().map(|e| e.id.as_str()).collect();
    assert_eq!(ids, ["e2"]);
    assert_eq!(snap.events[0].spec.prompt.as_deref(), Some("Detect person"));
    Ok(())
}

#[test]
fn a_newer_schema_is_refused() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    Store::open(Some(dir.path()))?;
    let c = Connection::open(dir.path().join("state.sqlite3"))?;
    c.pragma_update(None, "user_version", 999)?;
    drop(c);
    let err = Store::open(Some(dir.path())).err().map(|e| e.to_string());
    assert!(err.is_some_and(|e| e.contains("newer")), "refused");
    Ok(())
}

#[test]
fn records_are_paged_ranged_and_bounded() -> anyhow::Result<()> {
    let s = Store::open(None)?;
    let batch: Vec<_> = (0..10).map(|t| record("i1", t as f64)).collect();
    s.add_records(&batch, 6)?;
    s.add_records(&[record("i2", 0.0)], 6)?;
    let (all, more) = s.records("i1", None, 1, 100)?;
    assert!(!more);
    let starts: Vec<f64> = all.iter().map(|r| r.start).collect();
    assert_eq!(
        starts,
        [4.0, 5.0, 6.0, 7.0, 8.0, 9.0],
        "only the newest 6 kept"
    );
    let (p1, more) = s.records("i1", None, 1, 4)?;
    assert_eq!((p1.len(), more), (4, true));
    let (p2, more) = s.records("i1", None, 2, 4)?;
    assert_eq!((p2.len(), more), (2, false));
    let (r, _) = s.records("i1", Some((6.5, 7.5)), 1, 100)?;
    let starts: Vec<f64> = r.iter().map(|r| r.start).collect();
    assert_eq!(starts, [6.0, 7.0], "records overlapping 6.5..7.5");
    s.delete(&[(Table::Indexes, "i1".into())])?;
    assert!(s.records("i1", None, 1, 100)?.0.is_empty());
    assert_eq!(s.records("i2", None, 1, 100)?.0.len(), 1);
    Ok(())
}

/// The database and its WAL are owner-only even under a permissive umask,
/// and an existing world-readable database is tightened at open.
#[test]
fn state_files_are_owner_only_whatever_the_umask() -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir()?;
    let mode = |name: &str| -> u32 {
        std::fs::metadata(dir.path().join(name)).map_or(0, |m| m.permissions().mode() & 0o777)
    };
    // SAFETY: umask only changes the mode of files this process creates
    // next; the old one is restored right after the open.
    let old = unsafe { libc::umask(0o022) };
    let store = Store::open(Some(dir.path()));
    unsafe { libc::umask(old) };
    let store = store?;
    store.version()?;
    assert_eq!(mode("state.sqlite3"), 0o600);
    assert_eq!(mode("state.sqlite3-wal"), 0o600);
    drop(store);
    std::fs::set_permissions(
        dir.path().join("state.sqlite3"),
        std::fs::Permissions::from_mode(0o644),
    )?;
    let _again = Store::open(Some(dir.path()))?;
    assert_eq!(mode("state.sqlite3"), 0o600, "tightened at open");
    Ok(())
}

/// A database left by every earlier schema version (committed SQL fixtures,
/// `tests/fixtures/schema/make.py`) opens, migrates to the newest version
/// and keeps its rows. A new migration without its predecessor's fixture
/// fails here.
#[test]
fn every_earlier_schema_version_migrates_with_its_rows() -> anyhow::Result<()> {
    let fixtures = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/schema");
    for version in 1..MIGRATIONS.len() {
        let sql = std::fs::read_to_string(fixtures.join(format!("v{version}.sql")))
            .with_context(|| format!("the fixture of schema version {version}"))?;
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("state.sqlite3");
        Connection::open(&path)?.execute_batch(&sql)?;
        let s = Store::open_file(&path)?;
        let at = format!("from version {version}");
        assert_eq!(s.version()?, MIGRATIONS.len(), "{at}");
        let cat = s.snapshot()?;
        let ids = |v: Vec<String>| v.join(",");
        assert_eq!(
            ids(cat.streams.iter().map(|r| r.name.clone()).collect()),
            "Gate camera",
            "{at}"
        );
        assert_eq!(
            ids(cat.indexes.iter().map(|r| r.id.clone()).collect()),
            "idx-gate",
            "{at}"
        );
        assert_eq!(
            ids(cat.events.iter().map(|r| r.id.clone()).collect()),
            "intruder",
            "{at}"
        );
        assert!(
            cat.alerts.iter().all(|a| a.id == "alert-1" && !a.enabled),
            "{at}"
        );
        assert_eq!(s.records("idx-gate", None, 1, 10)?.0.len(), 1, "{at}");
        let count = |table: &str| -> anyhow::Result<i64> {
            Ok(s.lock()?
                .query_row(&format!("SELECT COUNT(*) FROM {table}"), [], |r| r.get(0))?)
        };
        assert_eq!(count("outbox")?, if version >= 2 { 2 } else { 0 }, "{at}");
        assert_eq!(count("embeddings")?, i64::from(version >= 4), "{at}");
        assert_eq!(count("gone_targets")?, i64::from(version >= 5), "{at}");
        assert_eq!(count("text_embeddings")?, i64::from(version >= 6), "{at}");
        if version >= 3 {
            let topic: String =
                s.lock()?
                    .query_row("SELECT topic FROM outbox WHERE seq = 1", [], |r| r.get(0))?;
            assert_eq!(topic, "sightline/gate/intruder", "{at}");
        }
        if version >= 7 {
            let clip = s.clip("occ-1")?.context("the clip row")?;
            assert_eq!(
                (clip.end_ms, clip.expired),
                (Some(1_793_000_020_000), None),
                "{at}"
            );
            assert_eq!(s.live_clips(0)?.len(), 1, "{at}");
        }
    }
    Ok(())
}
