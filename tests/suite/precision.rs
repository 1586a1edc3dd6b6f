//! The calibrated int8 person detector against its fp32 original, on real
//! parts: the stills through ONNX Runtime, and the end-to-end clips served
//! by a real RTSP server to one daemon that runs both precisions side by
//! side on the same frames, alerting a real HTTP receiver.

use crate::common;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use common::daemon::Daemon;
use common::receiver::Receiver;
use sightline::domain::{iou, Detection, Precision};
use sightline::model::{prepare_image, Detector, Manifest};
use sightline::tools::rtsp_server::RtspServer;

fn still(name: &str) -> image::RgbImage {
    let cache = std::env::var_os("SIGHTLINE_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache/sightline")
        });
    let p = cache.join("media/sk/skimage/data").join(name);
    image::open(&p)
        .unwrap_or_else(|e| panic!("{}: {e} (run scripts/setup --test)", p.display()))
        .to_rgb8()
}

fn person_detector(precision: Precision) -> Detector {
    sightline::model::init_runtime(None).expect("ONNX Runtime (run scripts/setup)");
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("models/ssdlite-person");
    let mut m = Manifest::load(&dir).expect("manifest");
    m.choose_precision(Some(precision))
        .expect("the person folder has both precisions");
    assert_eq!(m.precision, precision);
    Detector::load(Arc::new(m), 1).expect("model loads")
}

/// People at or above the shipped threshold, best first.
fn people(det: &mut Detector, img: &image::RgbImage) -> Vec<Detection> {
    let (rgb, content) = prepare_image(img, det.manifest());
    let mut found: Vec<Detection> = det
        .detect(&rgb, content)
        .expect("inference")
        .into_iter()
        .filter(|d| d.score >= 0.5)
        .collect();
    found.sort_by(|a, b| b.score.total_cmp(&a.score));
    found
}

/// int8 is not the default: on the tracking tests' staged clips it moved a
/// dwell's onset (models/ssdlite-person/PROVENANCE.md).
#[test]
fn the_person_folder_runs_fp32_unless_asked_for_int8() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("models/ssdlite-person");
    let mut m = Manifest::load(&dir).expect("manifest");
    assert_eq!(m.precision, Precision::Fp32, "fp32 is the folder's default");
    assert!(m.onnx_path().ends_with("model.onnx"));
    m.choose_precision(Some(Precision::Int8)).expect("int8");
    assert!(m.onnx_path().ends_with("model.int8.onnx"));
    let coco = Path::new(env!("CARGO_MANIFEST_DIR")).join("models/centernet-coco");
    let mut c = Manifest::load(&coco).expect("manifest");
    assert_eq!(c.precision, Precision::Fp32, "COCO's int8 did not agree");
    let e = c.choose_precision(Some(Precision::Int8)).unwrap_err();
    assert!(e.to_string().contains("[int8]"), "{e}");
}

/// Every fp32 person on the stills is found by int8, in a box of IoU ≥ 0.9,
/// and int8 finds no one fp32 does not.
#[test]
fn int8_finds_the_same_people_in_the_same_boxes_on_the_stills() {
    let (mut fp32, mut int8) = (
        person_detector(Precision::Fp32),
        person_detector(Precision::Int8),
    );
    let mut matched = 0;
    for name in [
        "astronaut.png",
        "camera.png",
        "chelsea.png",
        "coffee.png",
        "rocket.jpg",
    ] {
        let img = still(name);
        let (a, b) = (people(&mut fp32, &img), people(&mut int8, &img));
        assert_eq!(a.len(), b.len(), "{name}: fp32 {a:?} int8 {b:?}");
        for d in &a {
            let best = b.iter().map(|e| iou(&d.bbox, &e.bbox)).fold(0.0, f32::max);
            assert!(
                best >= 0.9,
                "{name}: fp32 {d:?} is IoU {best} from int8's {b:?}"
            );
            matched += 1;
        }
        eprintln!(
            "{name}: fp32 scores {:?}, int8 {:?}",
            a.iter().map(|d| d.score).collect::<Vec<_>>(),
            b.iter().map(|d| d.score).collect::<Vec<_>>()
        );
    }
    assert!(matched >= 2, "the astronaut and the cameraman are people");
}

/// One daemon, both precisions as two models, one event each, on the
/// end-to-end clips: the same occurrences, onsets within one sampled frame.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn int8_gives_the_same_occurrences_on_the_end_to_end_clips() {
    let clips = [("gt", "ground_truth.mp4"), ("models", "models.mp4")];
    let files: Vec<(&str, PathBuf)> = clips.iter().map(|(n, f)| (*n, common::media(f))).collect();
    let refs: Vec<(&str, &Path)> = files.iter().map(|(n, p)| (*n, p.as_path())).collect();
    let server = RtspServer::serve_files(0, &refs).expect("rtsp server");
    let mut hook = Receiver::start().await.expect("receiver");
    let mut config = String::new();
    for (name, _) in clips {
        config += &format!(
            "[[streams]]\nid = \"{name}\"\nurl = \"{}\"\nfps = 2\nmotion = {{ enabled = false }}\n",
            server.url(name)
        );
    }
    for p in ["fp32", "int8"] {
        config += &format!(
            "[[models]]\nname = \"{p}\"\npath = \"ssdlite-person\"\nprecision = \"{p}\"\n\
             [[events]]\nid = \"person-{p}\"\nprompt = \"Detect person\"\nmodel = \"{p}\"\n\
             [[alerts]]\nid = \"people-{p}\"\nevent = \"person-{p}\"\ncallback_url = \"{}\"\n",
            hook.url()
        );
    }
    config += "[recording]\nenabled = false\n";
    let dir = tempfile::tempdir().expect("temp dir");
    let d = Daemon::start(dir.path(), &config).await;
    // 30 s clips, then the end message (4 misses at 2 fps).
    tokio::time::sleep(Duration::from_secs(34)).await;
    d.stop().await;

    let seen = hook.occurrence_times();
    eprintln!("occurrences: {seen:?}");
    for (name, _) in clips {
        let get = |p: &str, phase: &str| {
            let key = (name.to_string(), format!("person-{p}"), phase.to_string());
            seen.get(&key).cloned().unwrap_or_default()
        };
        let (a, b) = (get("fp32", "start"), get("int8", "start"));
        assert_eq!(
            a.len(),
            1,
            "{name}: one person occurrence on fp32: {seen:?}"
        );
        assert_eq!(b.len(), a.len(), "{name}: the same count on int8: {seen:?}");
        for (x, y) in a.iter().zip(&b) {
            assert!(
                (x - y).abs() <= 0.5 + 1e-6,
                "{name}: onset {y} on int8 vs {x} on fp32"
            );
        }
        assert_eq!(
            get("fp32", "end").len(),
            get("int8", "end").len(),
            "{name}: ends"
        );
    }
}
