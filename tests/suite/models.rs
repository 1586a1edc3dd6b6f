//! Both detector decoders on real weights through ONNX Runtime, on real
//! photos from scikit-image (CC0 / public domain), plus model-loading errors.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use sightline::model::{prepare_image, Content, Detector, Manifest, ModelError, Resize};

fn cache() -> PathBuf {
    std::env::var_os("SIGHTLINE_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache/sightline")
        })
}

fn still(name: &str) -> image::RgbImage {
    let p = cache().join("media/sk/skimage/data").join(name);
    image::open(&p)
        .unwrap_or_else(|e| panic!("{}: {e} (run scripts/setup --test)", p.display()))
        .to_rgb8()
}

fn repo_model(name: &str) -> Arc<Manifest> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("models")
        .join(name);
    Arc::new(Manifest::load(&dir).expect("manifest"))
}

fn detector(m: Arc<Manifest>) -> Detector {
    sightline::model::init_runtime(None).expect("ONNX Runtime (run scripts/setup)");
    Detector::load(m, 1).expect("model loads")
}

fn best(det: &mut Detector, img: &str, label: &str) -> f32 {
    let (rgb, content) = prepare_image(&still(img), det.manifest());
    det.detect(&rgb, content)
        .expect("inference")
        .iter()
        .filter(|d| &*d.label == label)
        .map(|d| d.score)
        .fold(0.0, f32::max)
}

#[test]
fn ssd_person_detector_finds_people_and_only_people() {
    let mut det = detector(repo_model("ssdlite-person"));
    for img in ["astronaut.png", "camera.png"] {
        let s = best(&mut det, img, "person");
        assert!(s > 0.5, "{img}: person score {s}");
    }
    for img in ["chelsea.png", "coffee.png", "rocket.jpg"] {
        let s = best(&mut det, img, "person");
        assert!(s < 0.5, "{img}: no person expected, got {s}");
    }
}

#[test]
fn ssd_boxes_are_in_picture_coordinates() {
    let mut det = detector(repo_model("ssdlite-person"));
    let (rgb, content) = prepare_image(&still("astronaut.png"), det.manifest());
    let dets = det.detect(&rgb, content).expect("inference");
    let p = dets.iter().find(|d| d.score > 0.5).expect("a person");
    // The astronaut fills most of the frame, left of centre to right edge.
    assert!(p.area() > 0.3, "{p:?}");
    assert!(p.bbox.iter().all(|v| (0.0..=1.0).contains(v)), "{p:?}");
}

/// The 80-class CenterNet (kind `detections`), letterboxed, on real photos:
/// what each shows is found, with its own class, and rocket shows nothing
/// above the model's threshold.
#[test]
fn coco_detector_names_what_each_photo_shows() {
    let mut det = detector(repo_model("centernet-coco"));
    let threshold = det.manifest().score_threshold;
    for (img, want) in [
        ("astronaut.png", "person"),
        ("camera.png", "person"),
        ("chelsea.png", "cat"),
        ("coffee.png", "cup"),
    ] {
        let (rgb, content) = prepare_image(&still(img), det.manifest());
        let dets = det.detect(&rgb, content).expect("inference");
        let seen: Vec<String> = dets
            .iter()
            .map(|d| format!("{} {:.2}", d.label, d.score))
            .collect();
        eprintln!("{img}: {seen:?}");
        let top = dets
            .iter()
            .max_by(|a, b| a.score.total_cmp(&b.score))
            .expect("a box");
        assert_eq!(&*top.label, want, "{img}: {seen:?}");
        assert!(top.score >= threshold, "{img}: {seen:?}");
        for d in &dets {
            assert!(
                d.bbox.iter().all(|v| (0.0..=1.0).contains(v)),
                "{img}: {d:?}"
            );
            assert!(
                d.bbox[0] < d.bbox[2] && d.bbox[1] < d.bbox[3],
                "{img}: {d:?}"
            );
        }
    }
    let (rgb, content) = prepare_image(&still("rocket.jpg"), det.manifest());
    let dets = det.detect(&rgb, content).expect("inference");
    let above: Vec<_> = dets.iter().filter(|d| d.score >= threshold).collect();
    assert!(above.is_empty(), "rocket: {above:?}");
}

/// The YOLOv8 decoder on a real YOLOv8n export (NudeNet 320n, AGPL-3.0,
/// fetched by scripts/setup --test and never committed).
#[test]
fn yolo_v8_decoder_finds_the_astronauts_face() {
    let weights = cache().join("models/nudenet-320n/320n.onnx");
    assert!(
        weights.is_file(),
        "{} missing: run scripts/setup --test",
        weights.display()
    );
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::copy(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("models/nudenet-320n/model.toml"),
        dir.path().join("model.toml"),
    )
    .expect("copy manifest");
    std::os::unix::fs::symlink(&weights, dir.path().join("320n.onnx")).expect("link weights");
    let m = Arc::new(Manifest::load(dir.path()).expect("manifest"));
    let mut det = detector(m);
    let (rgb, content) = prepare_image(&still("astronaut.png"), det.manifest());
    let dets = det.detect(&rgb, content).expect("inference");
    let face = dets
        .iter()
        .filter(|d| &*d.label == "FACE_FEMALE")
        .max_by(|a, b| a.score.total_cmp(&b.score))
        .unwrap_or_else(|| panic!("no FACE_FEMALE in {dets:?}"));
    assert!(face.score > 0.5, "{face:?}");
    // The face is in the upper half of the picture, right of centre.
    let (cx, cy) = face.centre();
    assert!(cy < 0.5 && cx > 0.3 && cx < 0.8, "{face:?}");
    assert!(face.area() < 0.2, "a face, not the whole picture: {face:?}");
    // NMS leaves one box per face.
    let faces = dets
        .iter()
        .filter(|d| &*d.label == "FACE_FEMALE" && d.score > 0.5)
        .count();
    assert_eq!(faces, 1, "{dets:?}");
}

/// The person folder's manifest in a folder of its own, with `onnx` as the
/// file it runs (none when empty).
fn copy_manifest_with(onnx: &[u8]) -> (tempfile::TempDir, Arc<Manifest>) {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::copy(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("models/ssdlite-person/model.toml"),
        dir.path().join("model.toml"),
    )
    .expect("copy manifest");
    let m = Arc::new(Manifest::load(dir.path()).expect("manifest"));
    if !onnx.is_empty() {
        std::fs::write(m.onnx_path(), onnx).expect("write model");
    }
    (dir, m)
}

#[test]
fn corrupt_model_is_a_clear_error() {
    sightline::model::init_runtime(None).expect("ONNX Runtime");
    let (_dir, m) = copy_manifest_with(b"this is not an ONNX protobuf");
    let file = m.onnx_path().display().to_string();
    let err = Detector::load(m, 1).err().expect("must fail");
    let text = err.to_string();
    assert!(matches!(err, ModelError::Load { .. }), "{text}");
    assert!(
        text.contains(&file) && text.contains("cannot load"),
        "{text}"
    );
}

#[test]
fn missing_model_file_is_a_clear_error() {
    sightline::model::init_runtime(None).expect("ONNX Runtime");
    let (_dir, m) = copy_manifest_with(b"");
    let text = Detector::load(m, 1).err().expect("must fail").to_string();
    assert!(text.contains("does not exist"), "{text}");
}

#[test]
fn manifest_that_does_not_fit_the_model_is_refused() {
    sightline::model::init_runtime(None).expect("ONNX Runtime");
    let dir = tempfile::tempdir().expect("tempdir");
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("models/ssdlite-person");
    let text = std::fs::read_to_string(src.join("model.toml")).expect("read");
    std::fs::write(
        dir.path().join("model.toml"),
        text.replace("image_tensor:0", "pixels"),
    )
    .expect("write");
    for f in ["model.onnx", "model.int8.onnx"] {
        std::os::unix::fs::symlink(src.join(f), dir.path().join(f)).expect("link");
    }
    let m = Arc::new(Manifest::load(dir.path()).expect("manifest parses"));
    let text = Detector::load(m, 1).err().expect("must fail").to_string();
    assert!(
        text.contains("no input \"pixels\"") && text.contains("image_tensor:0"),
        "{text}"
    );
}

#[test]
fn malformed_manifest_is_refused_with_its_path() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("model.toml"), "kind = \"yolo\"\nfile = 3\n").expect("write");
    let text = Manifest::load(dir.path())
        .expect_err("must fail")
        .to_string();
    assert!(text.contains("model.toml"), "{text}");
}

#[test]
fn a_detector_may_not_crop_the_frame() {
    let dir = tempfile::tempdir().expect("tempdir");
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("models/ssdlite-person/model.toml");
    let text = std::fs::read_to_string(src).expect("read");
    assert!(text.contains("resize = \"stretch\""), "fixture changed");
    std::fs::write(
        dir.path().join("model.toml"),
        text.replace("resize = \"stretch\"", "resize = \"crop\""),
    )
    .expect("write");
    let text = Manifest::load(dir.path())
        .expect_err("must fail")
        .to_string();
    assert!(text.contains("\"crop\" is for dual encoders"), "{text}");
}

/// A 4:1 picture: blue on the left quarter, green on the right, red between.
fn bands() -> image::RgbImage {
    image::RgbImage::from_fn(400, 100, |x, _| match x / 100 {
        0 => image::Rgb([0, 0, 255]),
        1 | 2 => image::Rgb([255, 0, 0]),
        _ => image::Rgb([0, 255, 0]),
    })
}

#[test]
fn still_images_are_fitted_as_the_manifest_says() {
    let mut m = (*repo_model("colour-clip")).clone();
    let (w, h) = (m.input.width as usize, m.input.height as usize);
    let px = |rgb: &[u8], x: usize, y: usize| -> [u8; 3] {
        let i = (y * w + x) * 3;
        [rgb[i], rgb[i + 1], rgb[i + 2]]
    };
    // Crop: the square from the middle, all red.
    m.input.resize = Resize::Crop;
    let (rgb, content) = prepare_image(&bands(), &m);
    assert_eq!(rgb.len(), w * h * 3);
    assert_eq!(content, Content::FULL);
    for x in [0, w / 2, w - 1] {
        assert_eq!(px(&rgb, x, h / 2), [255, 0, 0], "column {x}");
    }
    // Stretch: all three bands, squeezed.
    m.input.resize = Resize::Stretch;
    let (rgb, _) = prepare_image(&bands(), &m);
    assert_eq!(px(&rgb, 0, h / 2), [0, 0, 255]);
    assert_eq!(px(&rgb, w - 1, h / 2), [0, 255, 0]);
    // Letterbox: all three bands, black above and below.
    m.input.resize = Resize::Letterbox;
    let (rgb, content) = prepare_image(&bands(), &m);
    assert_eq!(px(&rgb, w / 2, 0), [0, 0, 0]);
    assert_eq!(px(&rgb, 0, h / 2), [0, 0, 255]);
    assert!((content.0[1] - 0.375).abs() < 0.01, "{content:?}");
}
