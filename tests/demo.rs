//! `sightline demo` works out of the box: no camera, broker or config.

use std::process::Command;

#[test]
fn demo_prints_the_astronaut_occurrence() {
    let out = Command::new(env!("CARGO_BIN_EXE_sightline"))
        .arg("demo")
        .output()
        .expect("run the demo");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let starts: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("webhook <- start"))
        .collect();
    let ends: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("webhook <- end"))
        .collect();
    assert_eq!((starts.len(), ends.len()), (1, 1), "{text}");
    // The astronaut is on screen from 6 s to 12 s of the clip.
    assert!(starts[0].contains("stream time 6."), "{text}");
    assert!(text.contains("1 person detected"), "{text}");
}
