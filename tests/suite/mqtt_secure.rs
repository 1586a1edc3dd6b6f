//! MQTT with a login and over TLS, against a real mosquitto: a broker that
//! refuses anonymous clients gets alerts only with the right password (a
//! wrong one leaves them in the outbox), and a TLS listener with a
//! certificate from a CA made here (openssl) gets them when the daemon is
//! told that CA. The test subscriber uses a plain listener of the same broker.

use crate::common;

use std::path::Path;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use common::daemon::Daemon;
use tokio::sync::mpsc::UnboundedReceiver;

struct Broker {
    child: Child,
    plain: u16,
    secure: u16,
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn run(cmd: &mut Command) {
    let out = cmd.output().expect("tool runs");
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A CA and a server certificate for 127.0.0.1 / localhost, made with openssl.
fn make_certs(dir: &Path) {
    let p = |f: &str| dir.join(f);
    run(Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=sightline test CA",
            "-keyout",
        ])
        .arg(p("ca.key"))
        .arg("-out")
        .arg(p("ca.pem")));
    run(Command::new("openssl")
        .args([
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            "/CN=localhost",
            "-keyout",
        ])
        .arg(p("server.key"))
        .arg("-out")
        .arg(p("server.csr")));
    std::fs::write(p("ext.cnf"), "subjectAltName=IP:127.0.0.1,DNS:localhost\n").expect("ext");
    run(Command::new("openssl")
        .args(["x509", "-req", "-days", "2", "-in"])
        .arg(p("server.csr"))
        .arg("-CA")
        .arg(p("ca.pem"))
        .arg("-CAkey")
        .arg(p("ca.key"))
        .arg("-CAcreateserial")
        .arg("-extfile")
        .arg(p("ext.cnf"))
        .arg("-out")
        .arg(p("server.pem")));
}

/// mosquitto with a password file: a plain listener and a TLS one.
fn broker(dir: &Path) -> Broker {
    use std::os::unix::fs::PermissionsExt;
    let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755));
    for f in ["server.key", "server.pem", "ca.pem"] {
        let _ = std::fs::set_permissions(dir.join(f), std::fs::Permissions::from_mode(0o644));
    }
    run(Command::new("mosquitto_passwd")
        .args(["-b", "-c"])
        .arg(dir.join("passwd"))
        .args(["alerts", "s3cret-pass"]));
    let _ = std::fs::set_permissions(dir.join("passwd"), std::fs::Permissions::from_mode(0o644));
    for _ in 0..5 {
        let (plain, secure) = (common::free_port(), common::free_port());
        let conf = dir.join("mosquitto.conf");
        std::fs::write(
            &conf,
            format!(
                "per_listener_settings false\nallow_anonymous false\npassword_file {d}/passwd\n\
                 listener {plain} 127.0.0.1\n\
                 listener {secure} 127.0.0.1\ncafile {d}/ca.pem\ncertfile {d}/server.pem\nkeyfile {d}/server.key\n",
                d = dir.display()
            ),
        )
        .expect("conf");
        if let Some(child) = common::spawn_mosquitto(&conf, &[plain, secure]) {
            return Broker {
                child,
                plain,
                secure,
            };
        }
    }
    panic!("mosquitto with TLS did not start");
}

/// A logged-in subscriber on the plain listener.
async fn subscriber(port: u16) -> UnboundedReceiver<common::MqttMessage> {
    let mut opts =
        rumqttc::MqttOptions::new(format!("sub-{}", uuid::Uuid::new_v4()), "127.0.0.1", port);
    opts.set_credentials("alerts", "s3cret-pass");
    common::subscribe_with(opts, "secure/#").await
}

fn config(port: u16, password_file: &Path, ca: Option<&Path>) -> String {
    let tls = ca.map_or(String::new(), |ca| {
        format!("tls = true\nca_file = \"{}\"\n", ca.display())
    });
    format!(
        "[mqtt]\nport = {port}\nclient_id = \"sightline-secure-{}\"\nusername = \"alerts\"\n\
         password_file = \"{}\"\n{tls}\
         [[events]]\nid = \"p\"\nprompt = \"person\"\n\
         [[alerts]]\nid = \"m\"\nevent = \"p\"\nmqtt = true\nmqtt_topic = \"secure/{{stream}}\"\n",
        uuid::Uuid::new_v4().simple(),
        password_file.display()
    )
}

async fn send_test(d: &Daemon) -> String {
    d.ok("POST", "alert/m/test", None).await["occurrence_id"]
        .as_str()
        .expect("id")
        .to_string()
}

async fn received(
    rx: &mut UnboundedReceiver<common::MqttMessage>,
    id: &str,
    wait: Duration,
) -> bool {
    let deadline = Instant::now() + wait;
    while Instant::now() < deadline {
        match tokio::time::timeout(Duration::from_millis(200), rx.recv()).await {
            Ok(Some(m)) if m.body["occurrence_id"] == id => return true,
            _ => {}
        }
    }
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_and_tls_reach_a_locked_down_broker() {
    let certs = tempfile::tempdir().expect("temp dir");
    make_certs(certs.path());
    let b = broker(certs.path());
    let mut rx = subscriber(b.plain).await;
    let good = certs.path().join("good-pass");
    std::fs::write(&good, "s3cret-pass\n").expect("write");
    let bad = certs.path().join("bad-pass");
    std::fs::write(&bad, "wrong\n").expect("write");

    // Plain listener, right password: delivered.
    let state = tempfile::tempdir().expect("temp dir");
    let d = Daemon::start(state.path(), &config(b.plain, &good, None)).await;
    let id = send_test(&d).await;
    assert!(
        received(&mut rx, &id, Duration::from_secs(10)).await,
        "login works"
    );
    d.stop().await;

    // Wrong password: refused by the broker, so nothing arrives.
    let state = tempfile::tempdir().expect("temp dir");
    let d = Daemon::start(state.path(), &config(b.plain, &bad, None)).await;
    let id = send_test(&d).await;
    assert!(
        !received(&mut rx, &id, Duration::from_secs(3)).await,
        "a wrong password publishes nothing"
    );
    d.stop().await;

    // TLS listener, verified against the CA made above.
    let state = tempfile::tempdir().expect("temp dir");
    let d = Daemon::start(
        state.path(),
        &config(b.secure, &good, Some(&certs.path().join("ca.pem"))),
    )
    .await;
    let id = send_test(&d).await;
    assert!(
        received(&mut rx, &id, Duration::from_secs(10)).await,
        "TLS works"
    );
    d.stop().await;
}
