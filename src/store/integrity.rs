//! A damaged state database is never used silently. Opening runs SQLite's
//! `quick_check`; a database that fails it is refused with the file and the
//! recovery command, or (with `[state] on_corruption = "rebuild"`) moved
//! aside and replaced by a fresh one, loudly. [`recover`] copies every row
//! that can still be read into a fresh database and keeps the damaged file
//! beside it.

use std::path::{Path, PathBuf};

use anyhow::{anyhow, Context};
use rusqlite::Connection;

/// The state database's file name in the state directory.
pub const FILE: &str = "state.sqlite3";

pub use crate::domain::OnCorruption;

/// `PRAGMA quick_check`: `None` when the database is sound, else the first
/// problems SQLite names (or the error that stopped the check).
pub fn problems(conn: &Connection) -> Option<String> {
    let rows: Result<Vec<String>, _> = conn
        .prepare("PRAGMA quick_check(5)")
        .and_then(|mut st| st.query_map([], |r| r.get(0))?.collect());
    match rows {
        Ok(r) if r.len() == 1 && r[0] == "ok" => None,
        Ok(r) => Some(r.join("; ")),
        Err(e) => Some(e.to_string()),
    }
}

/// The message for a corrupt database: what, where, and how to recover.
pub fn refusal(path: &Path, problem: &str) -> anyhow::Error {
    let dir = path.parent().unwrap_or(Path::new("."));
    anyhow!(
        "the state database {} is damaged ({problem}); sightline will not use it. \
         Recover what is readable with `sightline state recover --state-dir {}` \
         (the damaged file is kept beside the new one), or set [state] on_corruption = \"rebuild\" \
         to start from a fresh database",
        path.display(),
        dir.display()
    )
}

/// Moves a database and its WAL and shared-memory files aside, to
/// `<name>.corrupt-<unix ms>`; returns the new path of the main file.
pub fn move_aside(path: &Path) -> anyhow::Result<PathBuf> {
    let ms = crate::clock::unix_ms(std::time::SystemTime::now());
    let aside = PathBuf::from(format!("{}.corrupt-{ms}", path.display()));
    for suffix in ["", "-wal", "-shm"] {
        let from = PathBuf::from(format!("{}{suffix}", path.display()));
        if from.exists() {
            let to = PathBuf::from(format!("{}{suffix}", aside.display()));
            std::fs::rename(&from, &to)
                .with_context(|| format!("moving {} aside", from.display()))?;
        }
    }
    Ok(aside)
}

/// What [`recover`] copied.
#[derive(Debug, Default)]
pub struct Recovered {
    /// Rows copied, per table.
    pub tables: Vec<(String, usize)>,
    /// Rows that could not be read.
    pub lost: usize,
    /// Where the damaged database now is.
    pub kept: PathBuf,
}

/// Copies every readable row of `dir`'s database into a fresh one with the
/// current schema, puts it in place, and keeps the damaged one beside it.
pub fn recover(dir: &Path) -> anyhow::Result<Recovered> {
    let path = dir.join(FILE);
    if !path.is_file() {
        return Err(anyhow!("no state database at {}", path.display()));
    }
    let fresh_path = dir.join(format!("{FILE}.recovering"));
    let _ = std::fs::remove_file(&fresh_path);
    {
        // The current schema, by the usual migrations.
        let fresh = super::Store::open_file(&fresh_path)?;
        drop(fresh);
    }
    let conn = Connection::open(&fresh_path)
        .with_context(|| format!("opening {}", fresh_path.display()))?;
    conn.execute("ATTACH DATABASE ?1 AS old", [path.to_string_lossy()])
        .context("attaching the damaged database")?;
    let tables: Vec<String> = conn
        .prepare(
            "SELECT name FROM main.sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'",
        )?
        .query_map([], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    let mut out = Recovered::default();
    for t in tables {
        let (copied, lost) = copy_table(&conn, &t);
        out.tables.push((t, copied));
        out.lost += lost;
    }
    conn.execute("DETACH DATABASE old", [])?;
    drop(conn);
    out.kept = move_aside(&path)?;
    std::fs::rename(&fresh_path, &path)
        .with_context(|| format!("putting the recovered database at {}", path.display()))?;
    Ok(out)
}

/// Copies one table: all at once if it reads, else row by row by rowid,
/// skipping what cannot be read. Returns (copied, lost).
fn copy_table(conn: &Connection, table: &str) -> (usize, usize) {
    let q = |s: &str| format!("\"{}\"", s.replace('"', "\"\""));
    let cols: Vec<String> = conn
        .prepare(&format!("PRAGMA main.table_info({})", q(table)))
        .and_then(|mut st| st.query_map([], |r| r.get::<_, String>(1))?.collect())
        .unwrap_or_default();
    let old_cols: Vec<String> = conn
        .prepare(&format!("PRAGMA old.table_info({})", q(table)))
        .and_then(|mut st| st.query_map([], |r| r.get::<_, String>(1))?.collect())
        .unwrap_or_default();
    let shared: Vec<String> = cols
        .into_iter()
        .filter(|c| old_cols.contains(c))
        .map(|c| q(&c))
        .collect();
    if shared.is_empty() {
        return (0, 0);
    }
    let list = shared.join(", ");
    let copy = format!(
        "INSERT OR IGNORE INTO main.{t} ({list}) SELECT {list} FROM old.{t}",
        t = q(table)
    );
    // Migrations may have seeded rows; the old ones win.
    let _ = conn.execute(&format!("DELETE FROM main.{}", q(table)), []);
    if let Ok(n) = conn.execute(&copy, []) {
        return (n, 0);
    }
    let _ = conn.execute(&format!("DELETE FROM main.{}", q(table)), []);
    let max: i64 = conn
        .query_row(
            &format!("SELECT max(rowid) FROM old.{}", q(table)),
            [],
            |r| r.get::<_, Option<i64>>(0),
        )
        .ok()
        .flatten()
        .unwrap_or(100_000);
    let (mut copied, mut lost) = (0, 0);
    for id in 1..=max.min(10_000_000) {
        match conn.execute(&format!("{copy} WHERE rowid = ?1"), [id]) {
            Ok(n) => copied += n,
            Err(_) => lost += 1,
        }
    }
    (copied, lost)
}
