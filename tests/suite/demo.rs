//! `sightline demo` works out of the box: no camera, broker or config.

use std::process::Command;

#[test]
fn demo_prints_the_cup_and_the_astronaut_each_from_its_model() {
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
    assert_eq!((starts.len(), ends.len()), (2, 2), "{text}");
    // The cup (coffee, 0-6 s) on the 80-class model, the astronaut (6-12 s)
    // on the person model.
    let start_of = |label: &str| starts.iter().find(|l| l.contains(label)).copied();
    let cup = start_of("cup_alert").unwrap_or_else(|| panic!("a cup start: {text}"));
    assert!(
        cup.contains("(model coco)") && cup.contains("stream time 0."),
        "{text}"
    );
    let person = start_of("person_alert").unwrap_or_else(|| panic!("a person start: {text}"));
    assert!(
        person.contains("(model person)") && person.contains("stream time 6."),
        "{text}"
    );
    assert!(text.contains("1 person detected"), "{text}");
    assert!(text.contains("1 cup detected"), "{text}");
}
