//! A small RTSP server (gstreamer-rtsp-server) that serves media files on a
//! free port. The demo serves its bundled clip with it, and tests and the
//! benchmark use it as a real camera stand-in: it speaks real RTSP/RTP, the
//! file is sent as recorded (no re-encoding), and each client gets its own
//! media pipeline, like separate cameras.

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

use gstreamer as gst;
use gstreamer::glib;
use gstreamer_rtsp_server as rtsp;
use gstreamer_rtsp_server::prelude::*;

/// A running server; dropping it stops it and closes every session.
pub struct RtspServer {
    port: u16,
    main_loop: glib::MainLoop,
    thread: Option<JoinHandle<()>>,
    clients: Arc<AtomicUsize>,
}

impl RtspServer {
    /// Serves each `(mount, mp4 file)` pair as `rtsp://127.0.0.1:PORT/mount`.
    /// `port` 0 picks a free one. The files must hold H.264 in MP4.
    pub fn serve_files(port: u16, mounts: &[(&str, &Path)]) -> Result<RtspServer, String> {
        gst::init().map_err(|e| format!("GStreamer init: {e}"))?;
        let lines: Vec<(String, String)> = mounts
            .iter()
            .map(|(m, f)| {
                let loc = f.to_string_lossy().replace('"', "\\\"");
                (
                    format!("/{}", m.trim_start_matches('/')),
                    format!("( filesrc location=\"{loc}\" ! qtdemux ! h264parse ! rtph264pay name=pay0 pt=96 config-interval=1 )"),
                )
            })
            .collect();
        let (tx, rx) = std::sync::mpsc::channel::<Result<(u16, glib::MainLoop), String>>();
        let clients = Arc::new(AtomicUsize::new(0));
        let counted = Arc::clone(&clients);
        let thread = std::thread::Builder::new()
            .name("rtsp-server".into())
            .spawn(move || {
                let ctx = glib::MainContext::new();
                let main_loop = glib::MainLoop::new(Some(&ctx), false);
                let server = rtsp::RTSPServer::new();
                server.set_address("127.0.0.1");
                server.set_service(&port.to_string());
                server.connect_client_connected(move |_, _| {
                    counted.fetch_add(1, Ordering::SeqCst);
                });
                let Some(mount_points) = server.mount_points() else {
                    let _ = tx.send(Err("RTSP server has no mount points".into()));
                    return;
                };
                for (mount, line) in &lines {
                    let factory = rtsp::RTSPMediaFactory::new();
                    factory.set_launch(line);
                    factory.set_shared(false);
                    mount_points.add_factory(mount, factory);
                }
                let source = match server.attach(Some(&ctx)) {
                    Ok(s) => s,
                    Err(e) => {
                        let _ = tx.send(Err(format!(
                            "RTSP server cannot listen on port {port}: {e}"
                        )));
                        return;
                    }
                };
                let bound = server.bound_port();
                let _ = tx.send(Ok((bound.max(0) as u16, main_loop.clone())));
                main_loop.run();
                // The source lives on our own context, so remove it there.
                if let Some(s) = ctx.find_source_by_id(&source) {
                    s.destroy();
                }
            })
            .map_err(|e| format!("spawning the RTSP server thread: {e}"))?;
        let (port, main_loop) = rx
            .recv()
            .map_err(|_| "the RTSP server thread died".to_string())??;
        Ok(RtspServer {
            port,
            main_loop,
            thread: Some(thread),
            clients,
        })
    }

    /// How many RTSP connections clients have opened so far.
    pub fn clients(&self) -> usize {
        self.clients.load(Ordering::SeqCst)
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The URL of a mount.
    pub fn url(&self, mount: &str) -> String {
        format!(
            "rtsp://127.0.0.1:{}/{}",
            self.port,
            mount.trim_start_matches('/')
        )
    }
}

impl Drop for RtspServer {
    fn drop(&mut self) {
        self.main_loop.quit();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
