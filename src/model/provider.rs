//! Where ONNX Runtime runs a model: the CPU (the default), or a GPU or
//! accelerator through an execution provider (`[[models]] provider`). A
//! provider that cannot load is an error that names it and the runtime
//! library, never a silent slide onto the CPU; with `fallback = "cpu"` the
//! model runs on the CPU instead, with a warning.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use ort::ep::{ExecutionProviderDispatch, OpenVINO, TensorRT, CUDA};
use ort::session::builder::SessionBuilder;

use super::ModelError;
pub use crate::domain::Placement;
use crate::domain::Provider;

/// The ONNX Runtime library loaded, for messages.
pub(super) static LIBRARY: OnceLock<PathBuf> = OnceLock::new();

/// Its ONNX Runtime name and the provider library it needs beside
/// `libonnxruntime.so`.
fn parts(p: Provider) -> Option<(&'static str, &'static str, ExecutionProviderDispatch)> {
    match p {
        Provider::Cpu => None,
        Provider::Cuda => Some((
            "CUDAExecutionProvider",
            "libonnxruntime_providers_cuda.so",
            CUDA::default().build(),
        )),
        Provider::TensorRt => Some((
            "TensorrtExecutionProvider",
            "libonnxruntime_providers_tensorrt.so",
            TensorRT::default().build(),
        )),
        Provider::OpenVino => Some((
            "OpenVINOExecutionProvider",
            "libonnxruntime_providers_openvino.so",
            OpenVINO::default().build(),
        )),
    }
}

/// Registers the placement's provider on `b`.
pub(super) fn place(
    b: SessionBuilder,
    placement: Placement,
    model: &Path,
) -> Result<SessionBuilder, ModelError> {
    let Some((ort_name, lib, ep)) = parts(placement.provider) else {
        return Ok(b);
    };
    let name = placement.provider.name();
    match b.with_execution_providers([ep.error_on_failure()]) {
        Ok(b) => {
            tracing::info!(model = %model.display(), provider = name, "execution provider registered");
            Ok(b)
        }
        Err(e) => {
            let runtime = LIBRARY.get().map_or_else(
                || "the ONNX Runtime library".to_string(),
                |p| p.display().to_string(),
            );
            let dir = LIBRARY
                .get()
                .and_then(|p| p.parent())
                .map_or_else(|| PathBuf::from("."), Path::to_path_buf);
            let message = format!(
                "the {name} execution provider ({ort_name}) cannot load: {}; ONNX Runtime here is \
                 {runtime}, and the provider needs {} (from an ONNX Runtime build with {name} support, \
                 set with runtime.ort_library)",
                e.to_string().trim_end(),
                dir.join(lib).display()
            );
            if placement.cpu_fallback {
                tracing::warn!(model = %model.display(), "{message}; running on the CPU instead (fallback = \"cpu\")");
                Ok(e.recover())
            } else {
                Err(ModelError::Load {
                    path: model.to_path_buf(),
                    message: format!("{message}; or set fallback = \"cpu\" to run it on the CPU"),
                })
            }
        }
    }
}
