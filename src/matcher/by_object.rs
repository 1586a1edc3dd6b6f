//! How a detector event with rules over tracked objects turns one frame's
//! facts ([`super::objects`]) into occurrences: one per line crossing, one
//! per object (`per = "object"`), or one for the event while enough objects
//! hold the rule (`min_count` counts objects, not boxes in one frame).

use std::collections::{BTreeMap, BTreeSet};

use super::objects::Facts;
use super::occ::{crossed, Judgement, NextId, Occ, Sighting};
use super::track::Tracks;
use super::{CompiledEvent, LabelRule, Occurrence, Slot};
use crate::domain::ObjectRules;
use crate::domain::{Detection, Scores};

/// One frame and its tracked boxes.
pub(super) struct Objects<'a> {
    pub s: &'a Scores,
    /// The track of each of the frame's boxes.
    pub owners: &'a [Option<u64>],
    pub tracks: &'a Tracks,
}

impl Objects<'_> {
    /// The messages of `ev` for this frame.
    pub fn judge(
        &self,
        ev: &CompiledEvent,
        rule: &LabelRule,
        rules: ObjectRules,
        facts: Facts,
        slot: &mut Slot,
        next_id: &mut NextId,
    ) -> Vec<Occurrence> {
        if rules.line.is_some() {
            return facts
                .crossings
                .into_iter()
                .flat_map(|c| crossed(ev, c, self.sighting([c.track_id]), self.s, next_id))
                .collect();
        }
        if rules.per_object {
            return self.per_object(ev, &facts, &mut slot.per_object, next_id);
        }
        let Some(v) = self.verdict(&facts.holding, rule.min_count) else {
            return Vec::new();
        };
        let mut seen = self.sighting(facts.holding.iter().copied());
        seen.onset = facts.since.iter().copied().reduce(f64::min);
        slot.main
            .step(ev, v, seen, self.s, next_id)
            .into_iter()
            .collect()
    }

    /// An occurrence per object: those holding the rule match, the others
    /// (gone, left, parked) do not, until their occurrences end.
    fn per_object(
        &self,
        ev: &CompiledEvent,
        facts: &Facts,
        occs: &mut BTreeMap<u64, Occ>,
        next_id: &mut NextId,
    ) -> Vec<Occurrence> {
        let holding = &facts.holding;
        for id in holding {
            occs.entry(*id)
                .or_insert_with(|| Occ::new(ev.matching, Some(*id)));
        }
        let mut out = Vec::new();
        for (id, occ) in occs.iter_mut() {
            let v = if holding.contains(id) {
                match self.verdict(&[*id], 1) {
                    Some(v) => v,
                    None => continue,
                }
            } else {
                Judgement::default()
            };
            let at = holding.iter().position(|h| h == id);
            let mut seen = self.sighting(at.map(|_| *id));
            seen.onset = at.map(|i| facts.since[i]);
            out.extend(occ.step(ev, v, seen, self.s, next_id));
        }
        let live: BTreeSet<u64> = self.tracks.live().iter().map(|t| t.id).collect();
        occs.retain(|id, occ| occ.tracker.active() || live.contains(id));
        out
    }

    /// The event's view of the frame from the objects holding its rule;
    /// `None` when they are all still tracked but none was seen in this
    /// frame (a detector gap the tracker bridges: the frame says nothing,
    /// so it neither matches nor counts as a miss). Objects missed for a
    /// frame still count towards `min_count`, so the count does not
    /// flicker; an occurrence's `end_time` is the last frame that showed
    /// its objects.
    fn verdict(&self, holding: &[u64], min_count: usize) -> Option<Judgement> {
        let mine = || {
            self.tracks
                .live()
                .iter()
                .filter(|t| holding.contains(&t.id))
        };
        let best = mine().max_by(|a, b| a.best.total_cmp(&b.best));
        let enough = !holding.is_empty() && holding.len() >= min_count;
        if enough && !mine().any(|t| t.misses == 0) {
            return None;
        }
        Some(Judgement {
            matched: enough,
            best: best.map_or(0.0, |t| t.best),
            count: holding.len(),
            label: best.map(|t| t.label.clone()),
            explanation: None,
        })
    }

    /// The boxes and objects of these tracks in this frame.
    fn sighting(&self, ids: impl IntoIterator<Item = u64>) -> Sighting {
        let ids: BTreeSet<u64> = ids.into_iter().collect();
        let boxes: Vec<Detection> = self
            .s
            .detections
            .iter()
            .zip(self.owners)
            .filter(|(_, o)| o.is_some_and(|id| ids.contains(&id)))
            .map(|(d, _)| d.clone())
            .collect();
        Sighting {
            boxes,
            objects: self.tracks.objects(ids.iter().map(|id| Some(*id))),
            onset: None,
        }
    }
}
