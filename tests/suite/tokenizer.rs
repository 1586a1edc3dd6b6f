//! The CLIP tokenizer against OpenAI's own: token ids for the strings in
//! `tests/tokenizer/strings.json` (punctuation, contractions, non-ASCII,
//! HTML entities, ligatures, full-width forms, over-long prompts) must equal
//! the ids `clip/simple_tokenizer.py` gives. `golden.json` holds the
//! reference's answer (made by `tests/tokenizer/reference.py`); when
//! `scripts/setup --test` has installed the reference, it is also run live.

use std::path::{Path, PathBuf};
use std::process::Command;

use sightline::model::tokenizer::ClipTokenizer;

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/tokenizer")
}

fn strings() -> Vec<String> {
    let text = std::fs::read_to_string(dir().join("strings.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn ours(strings: &[String]) -> Vec<Vec<i64>> {
    let t = ClipTokenizer::bundled(77).unwrap();
    strings
        .iter()
        .map(|s| {
            let (ids, _) = t.encode(s);
            let end = ids.iter().position(|&i| i == 49407).unwrap() + 1;
            ids[..end].to_vec()
        })
        .collect()
}

fn compare(strings: &[String], want: &[Vec<i64>], source: &str) {
    assert_eq!(
        want.len(),
        strings.len(),
        "{source} answered for a different list"
    );
    let got = ours(strings);
    let wrong: Vec<String> = strings
        .iter()
        .zip(got.iter().zip(want))
        .filter(|(_, (g, w))| g != w)
        .map(|(s, (g, w))| format!("{s:?}\n  ours {g:?}\n  {source} {w:?}"))
        .collect();
    assert!(
        wrong.is_empty(),
        "{} of {} differ:\n{}",
        wrong.len(),
        strings.len(),
        wrong.join("\n")
    );
}

#[test]
fn ids_equal_the_recorded_reference() {
    let s = strings();
    assert!(s.len() >= 50);
    let golden: Vec<Vec<i64>> =
        serde_json::from_str(&std::fs::read_to_string(dir().join("golden.json")).unwrap()).unwrap();
    compare(&s, &golden, "golden");
    // Over-long strings really are cut to the context.
    assert!(golden.iter().filter(|g| g.len() == 77).count() >= 3);
}

#[test]
fn ids_equal_the_reference_run_now() {
    let cache = std::env::var_os("SIGHTLINE_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(&std::env::var_os("HOME").unwrap()).join(".cache/sightline"));
    let (python, clip) = (cache.join("sdk-venv/bin/python"), cache.join("clip-ref"));
    if !python.is_file() || !clip.join("simple_tokenizer.py").is_file() {
        eprintln!("SKIPPED: reference tokenizer not installed (run scripts/setup --test)");
        return;
    }
    let out = Command::new(python)
        .arg(dir().join("reference.py"))
        .arg(&clip)
        .arg(dir().join("strings.json"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let want: Vec<Vec<i64>> = serde_json::from_slice(&out.stdout).unwrap();
    compare(&strings(), &want, "reference");
}
