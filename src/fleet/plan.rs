//! Where each camera runs: a pure function of the site's streams, its live
//! boxes and the leases they hold, so every box works out the same answer.
//!
//! - A held lease stays where it is (no flapping), unless its box is gone,
//!   draining, no longer eligible, or over its capacity.
//! - An unowned stream goes to the eligible box with the lowest load
//!   (streams over capacity), ties broken by rendezvous hashing so cameras
//!   spread the same way on every box.
//! - One stream moves per round from the busiest box to the idlest when
//!   their counts differ by two or more: a box that comes back gets its
//!   share back over a few rounds, and a difference of one never moves.
//! - A stream that fits nowhere is reported, never dropped silently.

use std::collections::BTreeMap;

/// A stream to place, and the box or box label it is pinned to.
#[derive(Debug, Clone)]
pub struct Want {
    pub stream: String,
    pub pin: Option<String>,
}

/// A live box as it announced itself.
#[derive(Debug, Clone)]
pub struct Slot {
    pub id: String,
    pub capacity: usize,
    pub labels: Vec<String>,
    pub draining: bool,
}

/// The outcome: each placed stream's box, and the streams that fit nowhere.
#[derive(Debug, Default, PartialEq)]
pub struct Placement {
    pub owner: BTreeMap<String, String>,
    pub unplaced: Vec<String>,
}

/// FNV-1a: stable across builds and machines, unlike std's hasher.
fn fnv(parts: &[&str]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for p in parts {
        for b in p.bytes().chain(std::iter::once(0)) {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    }
    h
}

/// Rendezvous score of `stream` on `slot`.
fn score(stream: &str, slot: &str) -> u64 {
    fnv(&[stream, slot])
}

fn eligible(w: &Want, s: &Slot) -> bool {
    !s.draining
        && s.capacity > 0
        && w.pin
            .as_ref()
            .is_none_or(|p| *p == s.id || s.labels.contains(p))
}

/// Load of a box with `n` streams, comparable across capacities.
fn load(n: usize, capacity: usize) -> f64 {
    n as f64 / capacity.max(1) as f64
}

pub fn place(wants: &[Want], slots: &[Slot], held: &BTreeMap<String, String>) -> Placement {
    let by_id: BTreeMap<&str, &Slot> = slots.iter().map(|s| (s.id.as_str(), s)).collect();
    let mut count: BTreeMap<&str, usize> = slots.iter().map(|s| (s.id.as_str(), 0)).collect();
    let mut out = Placement::default();
    // Held leases that still stand, best-scored first so an over-full box
    // keeps the streams that suit it most.
    let mut kept: Vec<(&Want, &Slot)> = wants
        .iter()
        .filter_map(|w| {
            let s = by_id.get(held.get(&w.stream)?.as_str())?;
            eligible(w, s).then_some((w, *s))
        })
        .collect();
    kept.sort_by_key(|(w, s)| std::cmp::Reverse(score(&w.stream, &s.id)));
    for (w, s) in kept {
        let n = count.entry(s.id.as_str()).or_default();
        if *n < s.capacity {
            *n += 1;
            out.owner.insert(w.stream.clone(), s.id.clone());
        }
    }
    let unowned: Vec<&Want> = wants
        .iter()
        .filter(|w| !out.owner.contains_key(&w.stream))
        .collect();
    for w in unowned {
        let best = slots
            .iter()
            .filter(|s| eligible(w, s) && count[s.id.as_str()] < s.capacity)
            .min_by(|a, b| {
                let (la, lb) = (
                    load(count[a.id.as_str()] + 1, a.capacity),
                    load(count[b.id.as_str()] + 1, b.capacity),
                );
                la.total_cmp(&lb)
                    .then_with(|| score(&w.stream, &b.id).cmp(&score(&w.stream, &a.id)))
            });
        match best {
            Some(s) => {
                *count.entry(s.id.as_str()).or_default() += 1;
                out.owner.insert(w.stream.clone(), s.id.clone());
            }
            None => out.unplaced.push(w.stream.clone()),
        }
    }
    rebalance_one(wants, slots, &mut out, &mut count);
    out
}

/// Moves one stream from the busiest box to the idlest eligible one when
/// their counts differ by two or more and the move lowers the peak load.
fn rebalance_one(
    wants: &[Want],
    slots: &[Slot],
    out: &mut Placement,
    count: &mut BTreeMap<&str, usize>,
) {
    let live: Vec<&Slot> = slots.iter().filter(|s| !s.draining).collect();
    let busiest = live.iter().max_by(|a, b| {
        load(count[a.id.as_str()], a.capacity)
            .total_cmp(&load(count[b.id.as_str()], b.capacity))
            .then_with(|| b.id.cmp(&a.id))
    });
    let Some(from) = busiest else { return };
    let n_from = count[from.id.as_str()];
    let mut moves: Vec<(&Want, &Slot)> = Vec::new();
    for w in wants {
        if out.owner.get(&w.stream) != Some(&from.id) {
            continue;
        }
        for to in &live {
            let n_to = count[to.id.as_str()];
            let better = load(n_to + 1, to.capacity) < load(n_from, from.capacity);
            if to.id != from.id
                && n_to < to.capacity
                && n_from >= n_to + 2
                && better
                && eligible(w, to)
            {
                moves.push((w, to));
            }
        }
    }
    let pick = moves.into_iter().max_by(|(wa, ta), (wb, tb)| {
        load(count[tb.id.as_str()], tb.capacity)
            .total_cmp(&load(count[ta.id.as_str()], ta.capacity))
            .then_with(|| score(&wa.stream, &ta.id).cmp(&score(&wb.stream, &tb.id)))
    });
    if let Some((w, to)) = pick {
        out.owner.insert(w.stream.clone(), to.id.clone());
        *count.get_mut(from.id.as_str()).expect("counted") -= 1;
        *count.get_mut(to.id.as_str()).expect("counted") += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slots(caps: &[(&str, usize)]) -> Vec<Slot> {
        caps.iter()
            .map(|(id, c)| Slot {
                id: id.to_string(),
                capacity: *c,
                labels: vec![],
                draining: false,
            })
            .collect()
    }

    fn wants(n: usize) -> Vec<Want> {
        (0..n)
            .map(|i| Want {
                stream: format!("cam{i}"),
                pin: None,
            })
            .collect()
    }

    fn counts(p: &Placement) -> BTreeMap<String, usize> {
        let mut c = BTreeMap::new();
        for b in p.owner.values() {
            *c.entry(b.clone()).or_default() += 1;
        }
        c
    }

    /// Applies rounds until nothing moves, as the boxes do tick after tick.
    fn settle(w: &[Want], s: &[Slot], mut held: BTreeMap<String, String>) -> (Placement, usize) {
        for round in 0..100 {
            let p = place(w, s, &held);
            if p.owner == held {
                return (p, round);
            }
            held = p.owner.clone();
        }
        panic!("placement never settled");
    }

    #[test]
    fn six_cameras_on_three_boxes_of_two_fill_each_box() {
        let (p, _) = settle(
            &wants(6),
            &slots(&[("a", 2), ("b", 2), ("c", 2)]),
            BTreeMap::new(),
        );
        assert_eq!(
            counts(&p).values().copied().collect::<Vec<_>>(),
            vec![2, 2, 2]
        );
        assert!(p.unplaced.is_empty());
    }

    #[test]
    fn a_full_site_reports_what_fits_nowhere() {
        let p = place(&wants(5), &slots(&[("a", 2), ("b", 2)]), &BTreeMap::new());
        assert_eq!(p.owner.len(), 4);
        assert_eq!(p.unplaced.len(), 1);
    }

    #[test]
    fn a_dead_box_s_cameras_go_to_the_others_and_the_rest_stay() {
        let s = slots(&[("a", 3), ("b", 3), ("c", 3)]);
        let (before, _) = settle(&wants(6), &s, BTreeMap::new());
        let (after, _) = settle(&wants(6), &s[..2], before.owner.clone());
        assert_eq!(after.owner.len(), 6);
        for (cam, b) in &before.owner {
            if b != "c" {
                assert_eq!(&after.owner[cam], b, "{cam} moved though its box lived");
            }
        }
    }

    #[test]
    fn a_returning_box_gets_its_share_back_and_then_nothing_flaps() {
        let s = slots(&[("a", 4), ("b", 4), ("c", 4)]);
        let (two, _) = settle(&wants(6), &s[..2], BTreeMap::new());
        let (three, rounds) = settle(&wants(6), &s, two.owner);
        assert_eq!(
            counts(&three).values().copied().collect::<Vec<_>>(),
            vec![2, 2, 2]
        );
        assert!(rounds <= 3, "{rounds} rounds");
        // A difference of one never moves anything.
        let (seven, _) = settle(&wants(7), &s, three.owner.clone());
        let again = place(&wants(7), &s, &seven.owner);
        assert_eq!(again.owner, seven.owner);
    }

    #[test]
    fn pins_and_draining_are_honoured() {
        let mut s = slots(&[("a", 4), ("b", 4)]);
        s[1].labels = vec!["gpu".into()];
        let mut w = wants(4);
        w[0].pin = Some("gpu".into());
        w[1].pin = Some("a".into());
        w[2].pin = Some("nowhere".into());
        let p = place(&w, &s, &BTreeMap::new());
        assert_eq!(p.owner["cam0"], "b");
        assert_eq!(p.owner["cam1"], "a");
        assert_eq!(p.unplaced, vec!["cam2".to_string()]);
        s[0].draining = true;
        let p = place(&w, &s, &p.owner);
        assert!(p.owner.values().all(|b| b == "b"));
        assert!(p.unplaced.contains(&"cam1".to_string()));
    }

    #[test]
    fn every_box_works_out_the_same_answer() {
        let s = slots(&[("x", 5), ("y", 5), ("z", 5)]);
        let mut r = s.clone();
        r.reverse();
        assert_eq!(
            place(&wants(12), &s, &BTreeMap::new()),
            place(&wants(12), &r, &BTreeMap::new())
        );
    }
}
