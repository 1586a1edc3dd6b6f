//! Turning raw detector tensors into [`Detection`]s. Pure functions over
//! slices, so both layouts are tested without ONNX Runtime.

use std::sync::Arc;

use crate::domain::{iou, Detection};

/// Where the picture sits inside the model input (normalised), so boxes can
/// be mapped back to picture coordinates when the input was letterboxed.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Content(pub [f32; 4]);

impl Content {
    /// The whole input is picture.
    pub const FULL: Content = Content([0.0, 0.0, 1.0, 1.0]);

    /// Maps a box in input coordinates to picture coordinates, clamped to 0..1.
    pub fn to_picture(&self, b: [f32; 4]) -> [f32; 4] {
        let [x0, y0, x1, y1] = self.0;
        let (w, h) = ((x1 - x0).max(1e-6), (y1 - y0).max(1e-6));
        [
            ((b[0] - x0) / w).clamp(0.0, 1.0),
            ((b[1] - y0) / h).clamp(0.0, 1.0),
            ((b[2] - x0) / w).clamp(0.0, 1.0),
            ((b[3] - y0) / h).clamp(0.0, 1.0),
        ]
    }
}

/// Decodes TensorFlow Object Detection API outputs for one image.
///
/// `boxes` holds `[ymin, xmin, ymax, xmax]` per slot, normalised; `classes`
/// holds class ids as floats; `count` is how many slots are valid.
/// `label_of` maps a class id to a label (None drops the slot).
pub fn ssd(
    boxes: &[f32],
    scores: &[f32],
    classes: &[f32],
    count: Option<usize>,
    min_score: f32,
    content: Content,
    label_of: impl Fn(i64) -> Option<Arc<str>>,
) -> Vec<Detection> {
    let slots = scores.len().min(classes.len()).min(boxes.len() / 4);
    let n = count.map_or(slots, |c| c.min(slots));
    let mut out = Vec::new();
    for i in 0..n {
        let score = scores[i];
        // NaN scores never pass.
        if score.is_nan() || score < min_score {
            continue;
        }
        let Some(label) = label_of(classes[i].round() as i64) else {
            continue;
        };
        let b = &boxes[i * 4..i * 4 + 4];
        out.push(Detection {
            label,
            score,
            bbox: content.to_picture([b[1], b[0], b[3], b[2]]),
        });
    }
    out
}

/// Shape of a YOLO output tensor for one image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum YoloLayout {
    /// YOLOv8: `[4 + classes, anchors]`, no objectness.
    V8 { classes: usize, anchors: usize },
    /// YOLOv5: `[anchors, 5 + classes]`, objectness in column 4.
    V5 { classes: usize, anchors: usize },
}

impl YoloLayout {
    /// Works out the layout from a `[1, a, b]` output shape and the number of labels.
    pub fn from_shape(version: u8, shape: &[i64], labels: usize) -> Result<YoloLayout, String> {
        let dims: Vec<usize> = shape.iter().map(|&d| d.max(0) as usize).collect();
        let (a, b) = match dims.as_slice() {
            [1, a, b] | [a, b] => (*a, *b),
            _ => return Err(format!("expected a [1, rows, cols] output, got {shape:?}")),
        };
        match version {
            8 if a == 4 + labels => Ok(YoloLayout::V8 {
                classes: labels,
                anchors: b,
            }),
            5 if b == 5 + labels => Ok(YoloLayout::V5 {
                classes: labels,
                anchors: a,
            }),
            8 => Err(format!(
                "YOLOv8 output should be [1, {}, anchors] for {labels} labels, got {shape:?}",
                4 + labels
            )),
            _ => Err(format!(
                "YOLOv5 output should be [1, anchors, {}] for {labels} labels, got {shape:?}",
                5 + labels
            )),
        }
    }
}

/// Decodes a YOLO output with per-class non-maximum suppression.
///
/// Boxes in the tensor are centre, width, height in input pixels
/// (`input_w` × `input_h`).
#[allow(clippy::too_many_arguments)]
pub fn yolo(
    data: &[f32],
    layout: YoloLayout,
    input_w: f32,
    input_h: f32,
    min_score: f32,
    iou: f32,
    content: Content,
    labels: &[Arc<str>],
) -> Vec<Detection> {
    let mut cands: Vec<(usize, f32, [f32; 4])> = Vec::new();
    let (classes, anchors) = match layout {
        YoloLayout::V8 { classes, anchors } | YoloLayout::V5 { classes, anchors } => {
            (classes, anchors)
        }
    };
    for a in 0..anchors {
        let (geom, best) = match layout {
            YoloLayout::V8 { .. } => {
                let at = |row: usize| data.get(row * anchors + a).copied().unwrap_or(0.0);
                let best = (0..classes)
                    .map(|c| (c, at(4 + c)))
                    .fold((0, f32::MIN), |m, x| if x.1 > m.1 { x } else { m });
                ([at(0), at(1), at(2), at(3)], best)
            }
            YoloLayout::V5 { .. } => {
                let row = &data[a * (5 + classes)..(a + 1) * (5 + classes)];
                let obj = row[4];
                let best = (0..classes)
                    .map(|c| (c, obj * row[5 + c]))
                    .fold((0, f32::MIN), |m, x| if x.1 > m.1 { x } else { m });
                ([row[0], row[1], row[2], row[3]], best)
            }
        };
        if best.1 < min_score {
            continue;
        }
        let [cx, cy, w, h] = geom;
        let b = [
            (cx - w / 2.0) / input_w,
            (cy - h / 2.0) / input_h,
            (cx + w / 2.0) / input_w,
            (cy + h / 2.0) / input_h,
        ];
        cands.push((best.0, best.1, b));
    }
    cands.sort_by(|x, y| y.1.total_cmp(&x.1));
    let mut kept: Vec<(usize, f32, [f32; 4])> = Vec::new();
    for c in cands {
        if kept.len() >= 300 {
            break;
        }
        if kept
            .iter()
            .all(|k| k.0 != c.0 || crate::domain::iou(&k.2, &c.2) <= iou)
        {
            kept.push(c);
        }
    }
    kept.into_iter()
        .filter_map(|(class, score, b)| {
            Some(Detection {
                label: labels.get(class)?.clone(),
                score,
                bbox: content.to_picture(b),
            })
        })
        .collect()
}

/// How an already-decoded detector reports box corners.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Coordinates {
    /// In input pixels (0..width, 0..height).
    Pixels,
    /// Normalised to 0..1 of the input.
    Normalised,
}

/// The settings of an already-decoded output (`[N, K, 6]`).
#[derive(Debug, Clone, Copy)]
pub struct Decoded {
    pub coordinates: Coordinates,
    pub input_w: f32,
    pub input_h: f32,
    pub min_score: f32,
    pub iou: f32,
    pub max_boxes: usize,
}

/// Decodes rows of `x1, y1, x2, y2, score, class` (one image's `K` rows),
/// as graphs that do their own peak picking give them (CenterNet). Boxes
/// are mapped back to the picture and clamped; overlapping boxes of one
/// class are suppressed (the graph's own suppression is per peak, so a
/// large object can come out twice); at most `max_boxes` are kept, best
/// first. `label_of` maps a class id to a label (None drops the row).
pub fn decoded(
    rows: &[f32],
    p: Decoded,
    content: Content,
    label_of: impl Fn(i64) -> Option<Arc<str>>,
) -> Vec<Detection> {
    let (sx, sy) = match p.coordinates {
        Coordinates::Pixels => (p.input_w.max(1.0), p.input_h.max(1.0)),
        Coordinates::Normalised => (1.0, 1.0),
    };
    let mut cands: Vec<(i64, f32, [f32; 4])> = rows
        .chunks_exact(6)
        .filter(|r| r[4].is_finite() && r[4] >= p.min_score && r[5].is_finite())
        .map(|r| {
            let (x0, x1) = (r[0].min(r[2]) / sx, r[0].max(r[2]) / sx);
            let (y0, y1) = (r[1].min(r[3]) / sy, r[1].max(r[3]) / sy);
            (r[5].round() as i64, r[4], [x0, y0, x1, y1])
        })
        .collect();
    cands.sort_by(|a, b| b.1.total_cmp(&a.1));
    let mut out: Vec<(i64, Detection)> = Vec::new();
    for (class, score, b) in cands {
        if out.len() >= p.max_boxes {
            break;
        }
        let Some(label) = label_of(class) else {
            continue;
        };
        let bbox = content.to_picture(b);
        if bbox[2] <= bbox[0] || bbox[3] <= bbox[1] {
            continue; // wholly in the letterbox border
        }
        if out
            .iter()
            .all(|(c, d)| *c != class || iou(&d.bbox, &bbox) <= p.iou)
        {
            out.push((class, Detection { label, score, bbox }));
        }
    }
    out.into_iter().map(|(_, d)| d).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decoded_rows_map_back_suppress_per_class_and_cap() {
        let names = labels(&["person", "car"]);
        let label_of = |c: i64| usize::try_from(c).ok().and_then(|i| names.get(i).cloned());
        #[rustfmt::skip]
        let rows = [
            // a car in the middle, pixels of a 100x100 input
            30.0, 40.0, 70.0, 60.0, 0.8, 1.0,
            // the same car again, a little weaker: suppressed
            31.0, 41.0, 71.0, 61.0, 0.7, 1.0,
            // a person overlapping the car: another class, kept
            30.0, 40.0, 70.0, 60.0, 0.6, 0.0,
            // below the threshold
            0.0, 0.0, 10.0, 10.0, 0.1, 0.0,
            // an unknown class
            0.0, 0.0, 10.0, 10.0, 0.9, 7.0,
            // corners given the wrong way round, partly outside the picture
            95.0, 5.0, 80.0, -5.0, 0.5, 0.0,
        ];
        let p = Decoded {
            coordinates: Coordinates::Pixels,
            input_w: 100.0,
            input_h: 100.0,
            min_score: 0.3,
            iou: 0.5,
            max_boxes: 10,
        };
        // Letterboxed: the picture fills rows 0.0-1.0 and columns 0.0-0.9.
        let content = Content([0.0, 0.0, 0.9, 1.0]);
        let d = decoded(&rows, p, content, label_of);
        let got: Vec<(&str, f32)> = d.iter().map(|d| (&*d.label, d.score)).collect();
        assert_eq!(got, vec![("car", 0.8), ("person", 0.6), ("person", 0.5)]);
        assert!((d[0].bbox[0] - 0.3 / 0.9).abs() < 1e-5, "{:?}", d[0].bbox);
        assert!(
            d[2].bbox.iter().all(|v| (0.0..=1.0).contains(v)),
            "{:?}",
            d[2].bbox
        );
        assert!(
            d[2].bbox[0] < d[2].bbox[2] && d[2].bbox[3] == 0.05,
            "{:?}",
            d[2].bbox
        );
        let capped = decoded(&rows, Decoded { max_boxes: 1, ..p }, content, label_of);
        assert_eq!(capped.len(), 1);
    }

    fn labels(names: &[&str]) -> Vec<Arc<str>> {
        names.iter().map(|n| Arc::from(*n)).collect()
    }

    #[test]
    fn ssd_reorders_boxes_and_respects_count_and_threshold() {
        let boxes = [0.1, 0.2, 0.5, 0.6, 0.0, 0.0, 1.0, 1.0, 0.3, 0.3, 0.4, 0.4];
        let scores = [0.9, 0.3, 0.95];
        let classes = [1.0, 1.0, 1.0];
        let l = labels(&["person"]);
        let got = ssd(
            &boxes,
            &scores,
            &classes,
            Some(2),
            0.5,
            Content::FULL,
            |c| l.get((c - 1) as usize).cloned(),
        );
        assert_eq!(
            got.len(),
            1,
            "slot 2 is past count, slot 1 is below threshold"
        );
        assert_eq!(got[0].bbox, [0.2, 0.1, 0.6, 0.5]);
        assert_eq!(&*got[0].label, "person");
    }

    #[test]
    fn ssd_drops_unknown_classes() {
        let got = ssd(
            &[0.0, 0.0, 1.0, 1.0],
            &[0.9],
            &[7.0],
            None,
            0.5,
            Content::FULL,
            |_| None,
        );
        assert!(got.is_empty());
    }

    #[test]
    fn letterbox_content_maps_back_to_picture() {
        // A 16:9 picture letterboxed into a square: picture spans y 0.21875..0.78125.
        let c = Content([0.0, 0.21875, 1.0, 0.78125]);
        let b = c.to_picture([0.5, 0.21875, 1.0, 0.5]);
        assert!(
            (b[1] - 0.0).abs() < 1e-6 && (b[3] - 0.5).abs() < 1e-6,
            "{b:?}"
        );
    }

    #[test]
    fn yolo_v8_decodes_and_suppresses_overlaps() {
        // 2 classes, 3 anchors; layout [4 + 2, 3] row-major.
        let cx = [50.0, 52.0, 200.0];
        let cy = [50.0, 50.0, 200.0];
        let w = [40.0, 40.0, 20.0];
        let h = [40.0, 40.0, 20.0];
        let c0 = [0.9, 0.8, 0.1];
        let c1 = [0.1, 0.1, 0.7];
        let data: Vec<f32> = [cx, cy, w, h, c0, c1].concat();
        let layout = YoloLayout::from_shape(8, &[1, 6, 3], 2).unwrap();
        let got = yolo(
            &data,
            layout,
            320.0,
            320.0,
            0.25,
            0.45,
            Content::FULL,
            &labels(&["a", "b"]),
        );
        assert_eq!(got.len(), 2, "{got:?}");
        assert_eq!(&*got[0].label, "a");
        assert!((got[0].score - 0.9).abs() < 1e-6);
        assert!((got[0].bbox[0] - 30.0 / 320.0).abs() < 1e-6);
        assert_eq!(&*got[1].label, "b");
    }

    #[test]
    fn yolo_v5_multiplies_objectness() {
        // 1 class, 2 anchors; rows [cx, cy, w, h, obj, cls].
        let data = [
            10.0, 10.0, 4.0, 4.0, 0.5, 0.9, 30.0, 30.0, 4.0, 4.0, 0.9, 0.9,
        ];
        let layout = YoloLayout::from_shape(5, &[1, 2, 6], 1).unwrap();
        let got = yolo(
            &data,
            layout,
            64.0,
            64.0,
            0.5,
            0.45,
            Content::FULL,
            &labels(&["x"]),
        );
        assert_eq!(got.len(), 1);
        assert!((got[0].score - 0.81).abs() < 1e-6);
    }

    #[test]
    fn yolo_layout_mismatch_is_explained() {
        let e = YoloLayout::from_shape(8, &[1, 22, 2100], 3).unwrap_err();
        assert!(e.contains("[1, 7, anchors]"), "{e}");
    }

    #[test]
    fn iou_of_identical_and_disjoint() {
        let a = [0.0, 0.0, 1.0, 1.0];
        assert!((iou(&a, &a) - 1.0).abs() < 1e-6);
        assert_eq!(iou(&a, &[2.0, 2.0, 3.0, 3.0]), 0.0);
    }
}
