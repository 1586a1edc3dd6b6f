//! `model.toml`: what a model folder holds and how to feed and read it.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Deserialize;

use super::ModelError;

/// How the detector's outputs are laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// TensorFlow Object Detection API: boxes, scores, classes, count.
    Ssd,
    /// One tensor of boxes with per-class scores (YOLOv5 or YOLOv8 exports).
    Yolo,
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
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Resize {
    /// Scale each axis independently.
    Stretch,
    /// Keep the aspect ratio and pad with black.
    Letterbox,
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
    /// ONNX file, relative to the folder.
    pub file: String,
    pub labels: Vec<String>,
    /// Added to a label's index to get the model's class id (SSD graphs start at 1).
    #[serde(default)]
    pub class_offset: i64,
    pub license: Option<String>,
    pub source: Option<String>,
    pub input: Input,
    pub outputs: Outputs,
    pub yolo: Option<YoloParams>,
    #[serde(skip)]
    pub dir: PathBuf,
    #[serde(skip)]
    pub labels_shared: Vec<Arc<str>>,
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
        m.labels_shared = m.labels.iter().map(|l| Arc::from(l.as_str())).collect();
        let bad = |message: String| ModelError::Manifest {
            path: path.clone(),
            message,
        };
        if m.labels.is_empty() {
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
        }
        Ok(m)
    }

    /// Path of the ONNX file.
    pub fn onnx_path(&self) -> PathBuf {
        self.dir.join(&self.file)
    }

    /// Model label for a raw class id, if any.
    pub fn label(&self, class_id: i64) -> Option<&Arc<str>> {
        let idx = class_id - self.class_offset;
        usize::try_from(idx)
            .ok()
            .and_then(|i| self.labels_shared.get(i))
    }
}
