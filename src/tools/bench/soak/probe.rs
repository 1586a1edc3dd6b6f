//! What the soak measures of a running daemon, from the outside as an
//! operator would: memory, open files and threads from `/proc`, the state
//! database and its write-ahead log, the recording folder, and the counters
//! of `/metrics`. One [`Sample`] per interval, one CSV row each, and the
//! least-squares slope of every line.

use std::path::Path;

/// One row of `soak.csv`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Sample {
    /// Seconds since the daemon's API first answered.
    pub secs: f64,
    pub rss_mb: f64,
    pub fds: f64,
    pub threads: f64,
    pub db_mb: f64,
    pub wal_mb: f64,
    pub recording_mb: f64,
    /// Webhook deliveries the receiver took so far.
    pub deliveries: f64,
    /// Stream restarts (`sightline_stream_restarts_total`), summed.
    pub reconnects: f64,
    pub api_calls: f64,
    pub api_errors: f64,
    pub outbox_depth: f64,
    pub dead_letters: f64,
    /// Pipelines abandoned in a hung teardown, summed.
    pub abandoned: f64,
}

/// The CSV's columns, in [`Sample::values`] order.
pub const COLUMNS: [&str; 14] = [
    "secs",
    "rss_mb",
    "fds",
    "threads",
    "db_mb",
    "wal_mb",
    "recording_mb",
    "deliveries",
    "reconnects",
    "api_calls",
    "api_errors",
    "outbox_depth",
    "dead_letters",
    "abandoned",
];

impl Sample {
    pub fn values(&self) -> [f64; 14] {
        [
            self.secs,
            self.rss_mb,
            self.fds,
            self.threads,
            self.db_mb,
            self.wal_mb,
            self.recording_mb,
            self.deliveries,
            self.reconnects,
            self.api_calls,
            self.api_errors,
            self.outbox_depth,
            self.dead_letters,
            self.abandoned,
        ]
    }

    /// One CSV line (no newline).
    pub fn csv(&self) -> String {
        let v: Vec<String> = self
            .values()
            .iter()
            .map(|x| format!("{}", (x * 100.0).round() / 100.0))
            .collect();
        v.join(",")
    }

    /// Reads a CSV line written by [`Sample::csv`].
    pub fn parse(line: &str) -> Option<Sample> {
        let v: Vec<f64> = line
            .split(',')
            .map(|x| x.trim().parse().ok())
            .collect::<Option<_>>()?;
        let [secs, rss_mb, fds, threads, db_mb, wal_mb, recording_mb, deliveries, reconnects, api_calls, api_errors, outbox_depth, dead_letters, abandoned] =
            v[..]
        else {
            return None;
        };
        Some(Sample {
            secs,
            rss_mb,
            fds,
            threads,
            db_mb,
            wal_mb,
            recording_mb,
            deliveries,
            reconnects,
            api_calls,
            api_errors,
            outbox_depth,
            dead_letters,
            abandoned,
        })
    }

    /// Fills what `/proc/<pid>` and the state and recording folders say.
    pub fn read_process(&mut self, pid: u32, state: &Path, recordings: &Path) {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        let field = |name: &str| -> f64 {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|rest| rest.split_whitespace().next())
                .and_then(|v| v.parse().ok())
                .unwrap_or(0.0)
        };
        self.rss_mb = field("VmRSS:") / 1024.0;
        self.threads = field("Threads:");
        self.fds = std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count()) as f64;
        (self.db_mb, self.wal_mb) = databases(state);
        self.recording_mb = folder_bytes(recordings) as f64 / 1e6;
    }

    /// Fills the counters of one `/metrics` scrape.
    pub fn read_metrics(&mut self, text: &str) {
        let (mut restarts, mut depth, mut dead, mut abandoned) = (0.0, 0.0, 0.0, 0.0);
        for (name, value) in super::super::runs::samples(text) {
            match name {
                "sightline_stream_restarts_total" => restarts += value,
                "sightline_outbox_depth" => depth += value,
                "sightline_outbox_dead_letters" => dead += value,
                "sightline_pipelines_abandoned_total" => abandoned += value,
                _ => {}
            }
        }
        (
            self.reconnects,
            self.outbox_depth,
            self.dead_letters,
            self.abandoned,
        ) = (restarts, depth, dead, abandoned);
    }
}

/// Megabytes of the SQLite databases in the state folder (the state and the
/// WebSocket journal) and of their write-ahead logs.
fn databases(state: &Path) -> (f64, f64) {
    let (mut db, mut wal) = (0, 0);
    for e in std::fs::read_dir(state).into_iter().flatten().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let len = e.metadata().map_or(0, |m| m.len());
        if name.ends_with(".sqlite3") {
            db += len;
        } else if name.ends_with(".sqlite3-wal") {
            wal += len;
        }
    }
    (db as f64 / 1e6, wal as f64 / 1e6)
}

/// Bytes of every file under `dir`; files that vanish while it walks (the
/// recorder deletes as it goes) count as nothing.
pub fn folder_bytes(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => folder_bytes(&e.path()),
            Ok(_) => e.metadata().map_or(0, |m| m.len()),
            Err(_) => 0,
        })
        .sum()
}

/// Least-squares slope of `y` against `x`, per unit of `x`; `None` with
/// fewer than two distinct `x`.
pub fn slope(points: &[(f64, f64)]) -> Option<f64> {
    let n = points.len() as f64;
    if points.len() < 2 {
        return None;
    }
    let mx = points.iter().map(|p| p.0).sum::<f64>() / n;
    let my = points.iter().map(|p| p.1).sum::<f64>() / n;
    let sxx: f64 = points.iter().map(|p| (p.0 - mx).powi(2)).sum();
    let sxy: f64 = points.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum();
    (sxx > 0.0).then(|| sxy / sxx)
}

/// How one column behaved after warm-up.
#[derive(Debug, Clone, PartialEq)]
pub struct Line {
    pub column: &'static str,
    pub min: f64,
    pub max: f64,
    pub last: f64,
    /// Per hour, over the samples after warm-up.
    pub slope_per_hour: Option<f64>,
    /// Per hour, over the second half of the run.
    pub late_slope_per_hour: Option<f64>,
}

/// Every column's [`Line`] over the samples at or after `warmup_secs`.
pub fn lines(samples: &[Sample], warmup_secs: f64) -> Vec<Line> {
    let end = samples.last().map_or(0.0, |s| s.secs);
    let after: Vec<&Sample> = samples.iter().filter(|s| s.secs >= warmup_secs).collect();
    let late: Vec<&Sample> = samples.iter().filter(|s| s.secs >= end / 2.0).collect();
    COLUMNS
        .iter()
        .enumerate()
        .skip(1)
        .map(|(i, &column)| {
            let pts = |set: &[&Sample]| -> Vec<(f64, f64)> {
                set.iter()
                    .map(|s| (s.secs / 3600.0, s.values()[i]))
                    .collect()
            };
            let values: Vec<f64> = after.iter().map(|s| s.values()[i]).collect();
            Line {
                column,
                min: values.iter().copied().fold(f64::INFINITY, f64::min),
                max: values.iter().copied().fold(f64::NEG_INFINITY, f64::max),
                last: values.last().copied().unwrap_or(0.0),
                slope_per_hour: slope(&pts(&after)),
                late_slope_per_hour: slope(&pts(&late)),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sample_survives_its_csv_line() {
        let s = Sample {
            secs: 15.0,
            rss_mb: 352.25,
            fds: 144.0,
            threads: 105.0,
            db_mb: 0.3,
            deliveries: 12.0,
            ..Sample::default()
        };
        assert_eq!(Sample::parse(&s.csv()), Some(s));
        assert_eq!(Sample::parse("1,2,3"), None);
        assert_eq!(COLUMNS.len(), Sample::default().values().len());
    }

    #[test]
    fn the_slope_of_a_line_is_found_and_a_flat_one_is_zero() {
        let rising: Vec<(f64, f64)> = (0..10).map(|h| (h as f64, 5.0 * h as f64 + 3.0)).collect();
        assert!((slope(&rising).unwrap() - 5.0).abs() < 1e-9);
        let flat: Vec<(f64, f64)> = (0..10).map(|h| (h as f64, 7.0)).collect();
        assert_eq!(slope(&flat), Some(0.0));
        assert_eq!(slope(&[(1.0, 2.0)]), None);
        assert_eq!(slope(&[(1.0, 2.0), (1.0, 3.0)]), None);
    }

    #[test]
    fn metrics_are_summed_over_streams() {
        let mut s = Sample::default();
        s.read_metrics(
            "# HELP x\nsightline_stream_restarts_total{stream=\"a\"} 3\n\
             sightline_stream_restarts_total{stream=\"b\"} 4\nsightline_outbox_depth 2\n\
             sightline_outbox_dead_letters 1\n",
        );
        assert_eq!(
            (s.reconnects, s.outbox_depth, s.dead_letters),
            (7.0, 2.0, 1.0)
        );
    }

    #[test]
    fn lines_leave_warm_up_out() {
        let samples: Vec<Sample> = (0..=8)
            .map(|i| Sample {
                secs: i as f64 * 900.0,
                // Warm-up climbs, then flat at 400 MB.
                rss_mb: if i < 4 { 100.0 * i as f64 } else { 400.0 },
                ..Sample::default()
            })
            .collect();
        let rss = &lines(&samples, 3600.0)[0];
        assert_eq!(rss.column, "rss_mb");
        assert_eq!((rss.min, rss.max, rss.last), (400.0, 400.0, 400.0));
        assert_eq!(rss.slope_per_hour, Some(0.0));
        assert_eq!(rss.late_slope_per_hour, Some(0.0));
    }
}
