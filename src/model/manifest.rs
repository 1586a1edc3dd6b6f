//! `model.toml`: what a model folder holds and how to feed and read it.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::ModelError;
use crate::domain::Precision;

/// What the model is and how its outputs are laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    /// TensorFlow Object Detection API: boxes, scores, classes, count.
    Ssd,
    /// One tensor of boxes with per-class scores (YOLOv5 or YOLOv8 exports).
    Yolo,
    /// An image encoder and a text encoder sharing one embedding space
    /// (CLIP, OpenCLIP, SigLIP exports): events are free text.
    DualEncoder,
    /// Detections the graph already decoded: one `[1, K, 6]` tensor of
    /// x1, y1, x2, y2, score, class (CenterNet exports).
    Detections,
}

/// Tensor layout of the image input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Layout {
    Nhwc,
    Nchw,
}

/// Element type of the image input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Dtype {
    Uint8,
    Float32,
}

/// How a frame is fitted to the input size.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Resize {
    /// Scale each axis independently.
    Stretch,
    /// Keep the aspect ratio and pad with black.
    Letterbox,
    /// Keep the aspect ratio and cut the longer axis to the centre, as CLIP
    /// was trained. Dual encoders only: the frame's sides are not looked at.
    Crop,
}

/// The image input of a model.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Input {
    pub name: String,
    pub layout: Layout,
    pub dtype: Dtype,
    pub width: u32,
    pub height: u32,
    pub resize: Resize,
    /// For float32 inputs: pixel values are multiplied by this (default 1/255).
    #[serde(default = "default_scale")]
    pub scale: f32,
    /// Per-channel (R, G, B) mean subtracted after scaling (CLIP: 0.481, 0.458, 0.408).
    pub mean: Option<[f32; 3]>,
    /// Per-channel standard deviation divided by after the mean.
    pub std: Option<[f32; 3]>,
}

fn default_score_threshold() -> f32 {
    0.5
}

fn default_scale() -> f32 {
    1.0 / 255.0
}

/// Output tensor names.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Outputs {
    pub boxes: Option<String>,
    pub scores: Option<String>,
    pub classes: Option<String>,
    pub count: Option<String>,
    /// The single output of a YOLO export.
    pub output: Option<String>,
    /// The image embedding of a dual encoder, `[N, size]`.
    pub embedding: Option<String>,
    /// The `[N, K, 6]` tensor of kind `detections`.
    pub detections: Option<String>,
}

/// `[detections]`: how kind `detections` reports its rows.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DetectionsSpec {
    /// Box corners in input pixels or normalised to 0..1.
    pub coordinates: super::decode::Coordinates,
    /// IoU above which a weaker box of the same class is suppressed.
    #[serde(default = "default_decoded_iou")]
    pub iou: f32,
    /// Boxes kept per frame, best first.
    #[serde(default = "default_max_boxes")]
    pub max_boxes: usize,
}

fn default_decoded_iou() -> f32 {
    0.5
}

fn default_max_boxes() -> usize {
    100
}

/// `[text]`: the text half of a dual encoder.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TextSpec {
    /// ONNX file of the text encoder, relative to the folder.
    pub file: String,
    /// Its int64 `[N, context]` token input.
    pub input: String,
    /// Its `[N, size]` embedding output.
    pub output: String,
    /// Token context length (77 for CLIP).
    #[serde(default = "default_context")]
    pub context: usize,
    /// `bpe_simple_vocab_16e6.txt` (uncompressed) in the folder; when absent
    /// the OpenAI vocabulary built into sightline is used.
    pub vocabulary: Option<String>,
}

fn default_context() -> usize {
    77
}

/// `[embedding]`: the shared space of a dual encoder.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmbeddingSpec {
    /// Length of both encoders' embeddings.
    pub size: usize,
    /// The model's learned temperature, `exp(logit_scale)` (CLIP: 100).
    pub logit_scale: f32,
}

/// YOLO decoding settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct YoloParams {
    /// 5 (objectness column) or 8 (no objectness, transposed).
    pub version: u8,
    /// IoU above which a weaker box of the same class is suppressed.
    #[serde(default = "default_iou")]
    pub iou: f32,
}

fn default_iou() -> f32 {
    0.45
}

/// A parsed `model.toml` plus the folder it came from.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub kind: Kind,
    /// ONNX file, relative to the folder (a dual encoder's image encoder).
    pub file: String,
    /// Detector classes (not used by dual encoders).
    #[serde(default)]
    pub labels: Vec<String>,
    /// Added to a label's index to get the model's class id (SSD graphs start at 1).
    #[serde(default)]
    pub class_offset: i64,
    pub license: Option<String>,
    pub source: Option<String>,
    /// The `min_confidence` of an event on this model that sets none: where
    /// this model's true detections start (they score lower on some models
    /// than on others).
    #[serde(default = "default_score_threshold")]
    pub score_threshold: f32,
    pub input: Input,
    pub outputs: Outputs,
    pub yolo: Option<YoloParams>,
    pub detections: Option<DetectionsSpec>,
    pub text: Option<TextSpec>,
    pub embedding: Option<EmbeddingSpec>,
    /// `[int8]`: a statically quantized copy of `file`, calibrated and
    /// checked against it (the folder's PROVENANCE.md says how).
    pub int8: Option<Int8Spec>,
    /// Which file runs: `[int8] default`, or `[[models]] precision`.
    #[serde(skip)]
    pub precision: Precision,
    #[serde(skip)]
    pub dir: PathBuf,
    /// Where its sessions run (`[[models]] provider`), not the manifest's.
    #[serde(skip)]
    pub placement: super::Placement,
    #[serde(skip)]
    pub labels_shared: Vec<Arc<str>>,
}

/// `[int8]`: the quantized file beside the original.
#[derive(Debug, Clone, Deserialize)]
pub struct Int8Spec {
    /// ONNX file, relative to the folder.
    pub file: String,
    /// Run it unless the config asks for fp32: set only where it agrees with
    /// fp32 and is faster on the CPUs the folder was measured on.
    #[serde(default)]
    pub default: bool,
}

impl Manifest {
    /// Reads `dir/model.toml` and checks it is complete for its kind.
    pub fn load(dir: &Path) -> Result<Manifest, ModelError> {
        let path = dir.join("model.toml");
        let text = std::fs::read_to_string(&path).map_err(|e| ModelError::Manifest {
            path: path.clone(),
            message: format!("cannot read: {e}"),
        })?;
        let mut m: Manifest = toml::from_str(&text).map_err(|e| ModelError::Manifest {
            path: path.clone(),
            message: e.to_string().trim().replace('\n', " "),
        })?;
        m.dir = dir.to_path_buf();
        m.precision = match &m.int8 {
            Some(q) if q.default => Precision::Int8,
            _ => Precision::Fp32,
        };
        m.labels_shared = m.labels.iter().map(|l| Arc::from(l.as_str())).collect();
        let bad = |message: String| ModelError::Manifest {
            path: path.clone(),
            message,
        };
        if m.labels.is_empty() && m.kind != Kind::DualEncoder {
            return Err(bad("labels must list at least one class".into()));
        }
        if m.input.width == 0
            || m.input.height == 0
            || m.input.width > 4096
            || m.input.height > 4096
        {
            return Err(bad(format!(
                "input size {}x{} must be between 1 and 4096",
                m.input.width, m.input.height
            )));
        }
        if m.input.resize == Resize::Crop && m.kind != Kind::DualEncoder {
            return Err(bad(
                "resize = \"crop\" is for dual encoders: a detector must see the whole frame \
                 for its boxes to map back"
                    .into(),
            ));
        }
        match m.kind {
            Kind::Ssd => {
                let o = &m.outputs;
                if o.boxes.is_none() || o.scores.is_none() || o.classes.is_none() {
                    return Err(bad(
                        "kind \"ssd\" needs outputs.boxes, outputs.scores and outputs.classes"
                            .into(),
                    ));
                }
            }
            Kind::Yolo => {
                if m.outputs.output.is_none() {
                    return Err(bad("kind \"yolo\" needs outputs.output".into()));
                }
                match &m.yolo {
                    Some(y) if y.version == 5 || y.version == 8 => {}
                    Some(y) => {
                        return Err(bad(format!(
                            "yolo.version must be 5 or 8, got {}",
                            y.version
                        )))
                    }
                    None => {
                        return Err(bad(
                            "kind \"yolo\" needs a [yolo] section with version = 5 or 8".into(),
                        ))
                    }
                }
            }
            Kind::DualEncoder => check_dual(&m).map_err(bad)?,
            Kind::Detections => check_decoded(&m).map_err(bad)?,
        }
        if !(0.0..=1.0).contains(&m.score_threshold) {
            return Err(bad(format!(
                "score_threshold {} must be between 0 and 1",
                m.score_threshold
            )));
        }
        Ok(m)
    }

    /// The `[text]` and `[embedding]` sections of a dual encoder (checked at load).
    pub fn dual(&self) -> Option<(&TextSpec, EmbeddingSpec)> {
        Some((self.text.as_ref()?, self.embedding?))
    }

    /// Path of the ONNX file that runs (at the chosen precision).
    pub fn onnx_path(&self) -> PathBuf {
        match (&self.int8, self.precision) {
            (Some(q), Precision::Int8) => self.dir.join(&q.file),
            _ => self.dir.join(&self.file),
        }
    }

    /// Runs `want` instead of the folder's default; int8 needs an `[int8]`
    /// file, and a dual encoder has none.
    pub fn choose_precision(&mut self, want: Option<Precision>) -> Result<(), ModelError> {
        let Some(want) = want else {
            return Ok(());
        };
        if want == Precision::Int8 && self.int8.is_none() {
            return Err(ModelError::Manifest {
                path: self.dir.join("model.toml"),
                message: "precision = \"int8\" needs an [int8] file in model.toml; this \
                          folder has only its fp32 weights"
                    .into(),
            });
        }
        self.precision = want;
        Ok(())
    }

    /// Model label for a raw class id, if any.
    pub fn label(&self, class_id: i64) -> Option<&Arc<str>> {
        let idx = class_id - self.class_offset;
        usize::try_from(idx)
            .ok()
            .and_then(|i| self.labels_shared.get(i))
    }
}

/// What kind `detections` must say on top of the common fields.
fn check_decoded(m: &Manifest) -> Result<(), String> {
    if m.outputs.detections.is_none() {
        return Err("kind \"detections\" needs outputs.detections (the [1, K, 6] tensor)".into());
    }
    let Some(d) = &m.detections else {
        return Err(
            "kind \"detections\" needs a [detections] section with coordinates = \"pixels\" or \"normalised\""
                .into(),
        );
    };
    if !(0.0..=1.0).contains(&d.iou) {
        return Err(format!("detections.iou {} must be between 0 and 1", d.iou));
    }
    if !(1..=1000).contains(&d.max_boxes) {
        return Err(format!(
            "detections.max_boxes {} must be between 1 and 1000",
            d.max_boxes
        ));
    }
    Ok(())
}

/// What a dual encoder's manifest must say on top of the common fields.
fn check_dual(m: &Manifest) -> Result<(), String> {
    if m.outputs.embedding.is_none() {
        return Err("kind \"dual-encoder\" needs outputs.embedding (the image embedding)".into());
    }
    if m.input.dtype != Dtype::Float32 {
        return Err("a dual encoder's image input must be float32".into());
    }
    if !m.labels.is_empty() {
        return Err("a dual encoder has no labels: events are free text".into());
    }
    let Some(text) = &m.text else {
        return Err(
            "kind \"dual-encoder\" needs a [text] section (file, input, output, context)".into(),
        );
    };
    if !(3..=1024).contains(&text.context) {
        return Err(format!(
            "text.context {} must be between 3 and 1024",
            text.context
        ));
    }
    let Some(e) = m.embedding else {
        return Err(
            "kind \"dual-encoder\" needs an [embedding] section (size, logit_scale)".into(),
        );
    };
    if e.size == 0 || e.size > 16384 {
        return Err(format!(
            "embedding.size {} must be between 1 and 16384",
            e.size
        ));
    }
    if !(e.logit_scale.is_finite() && e.logit_scale > 0.0 && e.logit_scale <= 1000.0) {
        return Err(format!(
            "embedding.logit_scale {} must be a positive number up to 1000 (CLIP: 100)",
            e.logit_scale
        ));
    }
    if let Some(std) = m.input.std {
        if std.iter().any(|v| !(v.is_finite() && *v > 0.0)) {
            return Err(format!("input.std {std:?} must be positive"));
        }
    }
    Ok(())
}
