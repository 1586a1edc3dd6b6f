//! The Prometheus text exposition format (version 0.0.4): families in the
//! order first used, each with its `# HELP` and `# TYPE` lines and all its
//! samples together, whatever order the caller adds them in.

use std::collections::HashMap;
use std::fmt::Write;

use super::{Snapshot, BUCKETS};

/// One metric family being written.
struct Family {
    name: String,
    help: &'static str,
    kind: &'static str,
    lines: String,
}

/// Collects samples and renders them.
#[derive(Default)]
pub struct Exposition {
    families: Vec<Family>,
    index: HashMap<String, usize>,
}

/// A sample's labels.
pub type Labels<'a> = &'a [(&'a str, &'a str)];

impl Exposition {
    fn family(&mut self, name: &str, help: &'static str, kind: &'static str) -> &mut String {
        let i = *self.index.entry(name.to_string()).or_insert_with(|| {
            self.families.push(Family {
                name: name.to_string(),
                help,
                kind,
                lines: String::new(),
            });
            self.families.len() - 1
        });
        &mut self.families[i].lines
    }

    /// A monotonic count; `name` ends in `_total`.
    pub fn counter(&mut self, name: &str, help: &'static str, labels: Labels, value: f64) {
        let out = self.family(name, help, "counter");
        let _ = writeln!(out, "{name}{} {}", label_set(labels, None), number(value));
    }

    /// A value that goes up and down.
    pub fn gauge(&mut self, name: &str, help: &'static str, labels: Labels, value: f64) {
        let out = self.family(name, help, "gauge");
        let _ = writeln!(out, "{name}{} {}", label_set(labels, None), number(value));
    }

    /// A latency histogram; `name` ends in `_seconds`.
    pub fn histogram(&mut self, name: &str, help: &'static str, labels: Labels, s: &Snapshot) {
        let out = self.family(name, help, "histogram");
        let total = s.cumulative.last().copied().unwrap_or(0);
        for (i, le) in BUCKETS.iter().enumerate() {
            let n = s.cumulative.get(i).copied().unwrap_or(0);
            let le = number(*le);
            let _ = writeln!(out, "{name}_bucket{} {n}", label_set(labels, Some(&le)));
        }
        let inf = label_set(labels, Some("+Inf"));
        let plain = label_set(labels, None);
        let _ = writeln!(out, "{name}_bucket{inf} {total}");
        let _ = writeln!(out, "{name}_sum{plain} {}", number(s.sum_secs));
        let _ = writeln!(out, "{name}_count{plain} {total}");
    }

    /// The whole exposition.
    pub fn render(self) -> String {
        let mut out = String::new();
        for f in self.families {
            let _ = writeln!(out, "# HELP {} {}", f.name, f.help);
            let _ = writeln!(out, "# TYPE {} {}", f.name, f.kind);
            out.push_str(&f.lines);
        }
        out
    }
}

/// `{a="x",b="y"}` (with `le` last when given), or nothing.
fn label_set(labels: Labels, le: Option<&str>) -> String {
    let mut parts: Vec<String> = labels
        .iter()
        .map(|(k, v)| format!("{k}=\"{}\"", escape(v)))
        .collect();
    if let Some(le) = le {
        parts.push(format!("le=\"{le}\""));
    }
    if parts.is_empty() {
        String::new()
    } else {
        format!("{{{}}}", parts.join(","))
    }
}

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn number(v: f64) -> String {
    if v.is_finite() {
        format!("{v}")
    } else if v.is_nan() {
        "NaN".into()
    } else if v > 0.0 {
        "+Inf".into()
    } else {
        "-Inf".into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_stay_together_and_labels_are_escaped() {
        let mut e = Exposition::default();
        e.counter("a_total", "A.", &[("stream", "x\"y")], 1.0);
        e.gauge("b", "B.", &[], 2.5);
        e.counter("a_total", "A.", &[("stream", "z")], 3.0);
        let text = e.render();
        let want = "# HELP a_total A.\n# TYPE a_total counter\n\
                    a_total{stream=\"x\\\"y\"} 1\na_total{stream=\"z\"} 3\n\
                    # HELP b B.\n# TYPE b gauge\nb 2.5\n";
        assert_eq!(text, want);
    }
}
