//! An event's detector conditions, and how a prompt is resolved to the
//! labels a detector knows.

use std::sync::Arc;

use crate::domain::Detection;
use crate::domain::{EventSpec, Region};
use crate::model::vocabulary::resolve_classes;

/// What one frame showed for one event.
#[derive(Debug, Clone, PartialEq)]
pub struct Verdict {
    pub matched: bool,
    /// Objects that passed every condition.
    pub count: usize,
    /// Best score among them (0 when none).
    pub best: f32,
    /// Label of the best one.
    pub label: Option<Arc<str>>,
}

/// An event compiled against a detector's labels.
#[derive(Debug, Clone)]
pub struct LabelRule {
    pub classes: Vec<Arc<str>>,
    pub min_confidence: f32,
    pub min_count: usize,
    pub min_area: f32,
    pub region: Option<Region>,
}

impl LabelRule {
    /// Compiles an event for a model with the given labels; `threshold` is
    /// the model's own score threshold, for events that set none.
    pub fn compile(
        e: &EventSpec,
        labels: &[Arc<str>],
        threshold: f32,
    ) -> Result<LabelRule, String> {
        if !e.negatives.is_empty() {
            return Err(format!(
                "event {:?}: negatives apply to dual-encoder models; the loaded model is a detector",
                e.id.as_str()
            ));
        }
        let classes = resolve_classes(&e.prompt, e.classes.as_deref(), labels)
            .map_err(|m| format!("event {:?}: {m}", e.id.as_str()))?;
        Ok(LabelRule {
            classes,
            min_confidence: e.min_confidence.unwrap_or(threshold),
            min_count: e.min_count,
            min_area: e.min_area,
            region: e.region.clone(),
        })
    }

    /// Whether one detection meets the conditions.
    pub fn counts(&self, d: &Detection) -> bool {
        d.score >= self.min_confidence
            && self.classes.iter().any(|c| **c == *d.label)
            && d.area() >= self.min_area
            && self.region.as_ref().is_none_or(|r| {
                let (x, y) = d.centre();
                inside(&r.points, x, y)
            })
    }

    /// Applies the conditions to one frame's detections.
    pub fn evaluate(&self, dets: &[Detection]) -> Verdict {
        let mut count = 0;
        let mut best: Option<&Detection> = None;
        for d in dets {
            if self.counts(d) {
                count += 1;
                if best.is_none_or(|b| d.score > b.score) {
                    best = Some(d);
                }
            }
        }
        Verdict {
            matched: count >= self.min_count,
            count,
            best: best.map_or(0.0, |d| d.score),
            label: best.map(|d| d.label.clone()),
        }
    }

    /// A sentence for the alert, such as "2 people detected (best 0.97) in region 'gate'".
    pub fn explain(&self, count: usize, best: f32, label: Option<&str>) -> String {
        let label = label.unwrap_or_else(|| self.classes.first().map_or("object", |c| c));
        let what = match (count, label) {
            (1, "person") => "1 person".to_string(),
            (n, "person") => format!("{n} people"),
            (1, l) => format!("1 {l}"),
            (n, l) => format!("{n} × {l}"),
        };
        let region = self
            .region
            .as_ref()
            .map(|r| format!(" in region '{}'", r.name))
            .unwrap_or_default();
        format!("{what} detected (best {best:.2}){region}")
    }
}

/// Even-odd point-in-polygon test.
pub fn inside(poly: &[(f32, f32)], x: f32, y: f32) -> bool {
    let mut odd = false;
    let n = poly.len();
    for i in 0..n {
        let (xi, yi) = poly[i];
        let (xj, yj) = poly[(i + n - 1) % n];
        if (yi > y) != (yj > y) && x < (xj - xi) * (y - yi) / (yj - yi) + xi {
            odd = !odd;
        }
    }
    odd
}
