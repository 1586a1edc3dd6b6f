//! Clips and snapshots from the recorded segments: an HLS playlist that
//! lists them (no copy), an MP4 remuxed from them (no re-encode), and JPEG
//! snapshots of the frame an occurrence was decided on, with its boxes.

use std::path::{Path, PathBuf};

use gstreamer as gst;
use gstreamer::prelude::*;
use image::{Rgb, RgbImage};

use super::segments::Segment;
use crate::domain::{Detection, Picture};

/// An HLS media playlist over `segments` (with the URL of each from
/// `url`). `ended`: a finished VOD playlist; else a live one that grows.
pub fn playlist(segments: &[Segment], ended: bool, url: impl Fn(&Segment) -> String) -> String {
    let closed: Vec<&Segment> = segments.iter().filter(|s| s.end_ms.is_some()).collect();
    let dur = |s: &Segment| (s.end_ms.unwrap_or(s.start_ms) - s.start_ms).max(1) as f64 / 1000.0;
    let target = closed.iter().map(|s| dur(s)).fold(1.0, f64::max).ceil() as u64;
    let mut out = format!(
        "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:{target}\n#EXT-X-MEDIA-SEQUENCE:0\n\
         #EXT-X-PLAYLIST-TYPE:{}\n",
        if ended { "VOD" } else { "EVENT" }
    );
    for s in closed {
        out.push_str(&format!("#EXTINF:{:.3},\n{}\n", dur(s), url(s)));
    }
    if ended {
        out.push_str("#EXT-X-ENDLIST\n");
    }
    out
}

/// Remuxes TS segments into one MP4 at `out` (written to a temporary file
/// first), without decoding.
pub fn remux_mp4(files: &[PathBuf], out: &Path) -> Result<(), String> {
    if files.is_empty() {
        return Err("no recorded segments cover this clip".into());
    }
    let q = |p: &Path| format!("\"{}\"", p.to_string_lossy().replace('"', "\\\""));
    let tmp = out.with_extension("part");
    let mut line = format!(
        "concat name=c ! h264parse ! mp4mux faststart=true ! filesink location={}",
        q(&tmp)
    );
    for f in files {
        line.push_str(&format!(
            " filesrc location={} ! tsdemux ! h264parse ! c.",
            q(f)
        ));
    }
    let pipeline = gst::parse::launch(&line)
        .map_err(|e| format!("cannot build the remux pipeline: {e}"))?
        .downcast::<gst::Pipeline>()
        .map_err(|_| "the remux line is not a pipeline".to_string())?;
    pipeline
        .set_state(gst::State::Playing)
        .map_err(|e| format!("cannot start remuxing: {e}"))?;
    let bus = pipeline.bus().ok_or("no bus")?;
    let msg = bus.timed_pop_filtered(
        gst::ClockTime::from_seconds(60),
        &[gst::MessageType::Eos, gst::MessageType::Error],
    );
    let _ = pipeline.set_state(gst::State::Null);
    match msg.as_ref().map(|m| m.view()) {
        Some(gst::MessageView::Eos(_)) => {
            std::fs::rename(&tmp, out).map_err(|e| format!("cannot keep the MP4: {e}"))
        }
        Some(gst::MessageView::Error(e)) => {
            let _ = std::fs::remove_file(&tmp);
            Err(format!("remuxing failed: {}", e.error()))
        }
        _ => {
            let _ = std::fs::remove_file(&tmp);
            Err("remuxing took longer than 60 s".into())
        }
    }
}

/// The picture's content (letterbox borders cut away).
fn content(p: &Picture) -> Option<RgbImage> {
    let img = RgbImage::from_raw(p.width, p.height, p.rgb.clone())?;
    let [x0, y0, x1, y1] = p.content;
    let (w, h) = (p.width as f32, p.height as f32);
    let (cx, cy) = ((x0 * w) as u32, (y0 * h) as u32);
    let cw = (((x1 - x0) * w) as u32).clamp(1, p.width - cx.min(p.width - 1));
    let ch = (((y1 - y0) * h) as u32).clamp(1, p.height - cy.min(p.height - 1));
    Some(image::imageops::crop_imm(&img, cx, cy, cw, ch).to_image())
}

/// Draws a box outline (normalised coordinates) `t` pixels thick.
fn draw_box(img: &mut RgbImage, b: [f32; 4], colour: Rgb<u8>, t: u32) {
    let (w, h) = (img.width(), img.height());
    let px = |v: f32, n: u32| ((v.clamp(0.0, 1.0) * n as f32) as u32).min(n - 1);
    let (x0, y0, x1, y1) = (px(b[0], w), px(b[1], h), px(b[2], w), px(b[3], h));
    for x in x0..=x1 {
        for k in 0..t {
            img.put_pixel(x, (y0 + k).min(h - 1), colour);
            img.put_pixel(x, y1.saturating_sub(k), colour);
        }
    }
    for y in y0..=y1 {
        for k in 0..t {
            img.put_pixel((x0 + k).min(w - 1), y, colour);
            img.put_pixel(x1.saturating_sub(k), y, colour);
        }
    }
}

/// Box colour: pure red, easy to find in a test and on a phone.
pub const BOX: Rgb<u8> = Rgb([255, 0, 0]);
const INK: Rgb<u8> = Rgb([255, 255, 255]);

/// Writes `text` in white on a box-coloured tag whose bottom-left corner
/// is at (`x`, `y`), or just below `y` when there is no room above (a box at
/// the top edge). The glyphs are font8x8's, `scale` pixels per dot; what is
/// not printable ASCII shows as `?`.
fn draw_tag(img: &mut RgbImage, x: u32, y: u32, text: &str, scale: u32) {
    let (w, h) = (img.width(), img.height());
    let pad = scale;
    let tag_h = 8 * scale + 2 * pad;
    let top = if y >= tag_h {
        y - tag_h
    } else {
        (y + 1).min(h - 1)
    };
    let glyphs: Vec<[u8; 8]> = text
        .chars()
        .map(|c| {
            let c = if c.is_ascii_graphic() || c == ' ' {
                c
            } else {
                '?'
            };
            font8x8::legacy::BASIC_LEGACY[c as usize]
        })
        .collect();
    let tag_w = glyphs.len() as u32 * 8 * scale + 2 * pad;
    for ty in top..(top + tag_h).min(h) {
        for tx in x..(x + tag_w).min(w) {
            img.put_pixel(tx, ty, BOX);
        }
    }
    for (i, rows) in glyphs.iter().enumerate() {
        let gx = x + pad + i as u32 * 8 * scale;
        for (row, bits) in rows.iter().enumerate() {
            for col in (0..8u32).filter(|c| bits & (1 << c) != 0) {
                let (px, py) = (gx + col * scale, top + pad + row as u32 * scale);
                for (dx, dy) in (0..scale).flat_map(|a| (0..scale).map(move |b| (a, b))) {
                    if px + dx < w && py + dy < h {
                        img.put_pixel(px + dx, py + dy, INK);
                    }
                }
            }
        }
    }
}

/// The picture as shown: letterbox borders cut, back to the camera's shape
/// (the model's input may squeeze it), at the model's height.
pub fn shown(p: &Picture) -> Result<RgbImage, String> {
    let clean = content(p).ok_or("the picture's size does not match its pixels")?;
    let h = clean.height();
    let aspect = if p.aspect > 0.0 {
        p.aspect
    } else {
        clean.width() as f32 / h.max(1) as f32
    };
    let w = ((h as f32 * aspect).round() as u32).clamp(16, 4096);
    if w == clean.width() {
        return Ok(clean);
    }
    Ok(image::imageops::resize(
        &clean,
        w,
        h,
        image::imageops::FilterType::Triangle,
    ))
}

/// The JPEG with the boxes drawn (made before the message goes out).
pub fn boxed_jpeg(img: &RgbImage, boxes: &[Detection]) -> Result<Vec<u8>, String> {
    let mut boxed = img.clone();
    let t = (boxed.width() / 200).max(2);
    let scale = (boxed.height() / 240).max(1);
    for d in boxes {
        draw_box(&mut boxed, d.bbox, BOX, t);
    }
    // Tags after every box, so no outline crosses a label.
    let (w, h) = (boxed.width(), boxed.height());
    for d in boxes {
        let x = ((d.bbox[0].clamp(0.0, 1.0) * w as f32) as u32).min(w - 1);
        let y = ((d.bbox[1].clamp(0.0, 1.0) * h as f32) as u32).min(h - 1);
        let text = format!("{} {:.0}%", d.label, d.score * 100.0);
        draw_tag(&mut boxed, x, y, &text, scale);
    }
    jpeg(&boxed)
}

/// The clean JPEG (made after the message went out).
pub fn clean_jpeg(img: &RgbImage) -> Result<Vec<u8>, String> {
    jpeg(img)
}

/// JPEGs of a picture: with the boxes drawn, and clean.
pub fn snapshots(p: &Picture, boxes: &[Detection]) -> Result<(Vec<u8>, Vec<u8>), String> {
    let img = shown(p)?;
    Ok((boxed_jpeg(&img, boxes)?, clean_jpeg(&img)?))
}

fn jpeg(img: &RgbImage) -> Result<Vec<u8>, String> {
    let mut out = std::io::Cursor::new(Vec::new());
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 85)
        .encode_image(img)
        .map_err(|e| format!("cannot encode a JPEG: {e}"))?;
    Ok(out.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn a_finished_playlist_lists_closed_segments_and_ends() {
        let segs = [
            Segment {
                start_ms: 0,
                end_ms: Some(2_000),
                bytes: 1,
            },
            Segment {
                start_ms: 2_000,
                end_ms: Some(4_100),
                bytes: 1,
            },
            Segment {
                start_ms: 4_100,
                end_ms: None,
                bytes: 1,
            },
        ];
        let p = playlist(&segs, true, |s| format!("{}.ts", s.start_ms));
        assert!(
            p.contains("#EXTINF:2.000,\n0.ts\n#EXTINF:2.100,\n2000.ts\n"),
            "{p}"
        );
        assert!(!p.contains("4100.ts"), "the open segment is not listed");
        assert!(p.contains("#EXT-X-TARGETDURATION:3") && p.ends_with("#EXT-X-ENDLIST\n"));
        let live = playlist(&segs, false, |s| format!("{}.ts", s.start_ms));
        assert!(live.contains("EVENT") && !live.contains("ENDLIST"));
    }

    #[test]
    fn boxes_are_drawn_on_one_copy_only() {
        let p = Picture {
            width: 100,
            height: 100,
            rgb: vec![40; 100 * 100 * 3],
            content: [0.0, 0.0, 1.0, 1.0],
            aspect: 16.0 / 9.0,
        };
        let d = Detection {
            label: Arc::from("person"),
            score: 0.9,
            bbox: [0.2, 0.2, 0.6, 0.8],
        };
        let (boxed, clean) = snapshots(&p, &[d]).expect("jpegs");
        let shape = image::load_from_memory(&boxed).expect("decodes");
        assert_eq!((shape.width(), shape.height()), (178, 100), "back to 16:9");
        let red = |j: &[u8]| {
            let img = image::load_from_memory(j).expect("decodes").to_rgb8();
            img.pixels()
                .filter(|p| p[0] > 180 && p[1] < 90 && p[2] < 90)
                .count()
        };
        assert!(red(&boxed) > 100, "the box is drawn");
        assert_eq!(red(&clean), 0, "the clean copy has none");
    }

    /// White pixels inside the tag above a box: its text. Without a label
    /// (an empty one) the tag is plain red.
    fn ink_in_tag(label: &str) -> usize {
        let img = RgbImage::from_pixel(320, 240, Rgb([40, 40, 40]));
        let d = Detection {
            label: Arc::from(label),
            score: 0.87,
            bbox: [0.25, 0.5, 0.75, 0.9],
        };
        let jpg = boxed_jpeg(&img, &[d]).expect("jpeg");
        let out = image::load_from_memory(&jpg).expect("decodes").to_rgb8();
        // The tag sits just above the box's top edge (y = 120), from x = 80.
        let mut ink = 0;
        for y in 100..120 {
            for x in 80..260 {
                let p = out.get_pixel(x, y);
                ink += usize::from(p[0] > 200 && p[1] > 200 && p[2] > 200);
            }
        }
        ink
    }

    #[test]
    fn boxes_carry_their_label_and_score() {
        let with_text = ink_in_tag("person");
        assert!(with_text > 80, "{with_text} white pixels in the tag");
        // "person 87%" is wider than " 87%" alone: the label is written.
        assert!(with_text > ink_in_tag("") + 40, "the label's own letters");
    }
}
