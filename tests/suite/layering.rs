//! The floor plan holds: the top-level modules of `src/` depend on each
//! other without a cycle, `src/` keeps to about twenty entries, and no file
//! passes 800 lines. Reads the `crate::` paths of every source file (doc
//! comments and `//` comments aside), so a new upward `use` fails here
//! with the modules and files that close the cycle.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

type Graph = BTreeMap<String, BTreeMap<String, BTreeSet<String>>>;

fn src() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("src")
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("src/ is readable") {
        let path = entry.expect("a directory entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The top-level module a file belongs to (`None` for the crate roots).
fn top_module(root: &Path, file: &Path) -> Option<String> {
    let rel = file.strip_prefix(root).ok()?;
    let first = rel.components().next()?.as_os_str().to_str()?;
    let name = first.trim_end_matches(".rs");
    (name != "lib" && name != "main").then(|| name.to_string())
}

/// The modules named by `crate::x` or `crate::{x, y::…}` in one line of code.
fn named_modules(code: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = code;
    while let Some(at) = rest.find("crate::") {
        rest = &rest[at + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            // Only the group's own items name modules: `a::{b, c}` inside
            // it names `a` alone.
            let mut depth = 0;
            let mut item = String::new();
            for c in group.chars() {
                match c {
                    '}' if depth == 0 => break,
                    ',' if depth == 0 => {
                        out.extend(first_segment(&item));
                        item.clear();
                        continue;
                    }
                    '{' => depth += 1,
                    '}' => depth -= 1,
                    _ => {}
                }
                item.push(c);
            }
            out.extend(first_segment(&item));
        } else {
            let name: String = rest
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            out.push(name);
        }
    }
    out
}

/// `alert::{ws, Sink}` → `alert`; nothing for a blank item.
fn first_segment(item: &str) -> Option<String> {
    let name = item.trim().split("::").next()?.trim();
    (!name.is_empty()).then(|| name.to_string())
}

fn graph() -> Graph {
    let root = src();
    let mut files = Vec::new();
    rust_files(&root, &mut files);
    let mut g = Graph::new();
    for file in files {
        let Some(from) = top_module(&root, &file) else {
            continue;
        };
        let text = std::fs::read_to_string(&file).expect("a readable source file");
        let rel = file
            .strip_prefix(&root)
            .unwrap_or(&file)
            .display()
            .to_string();
        for line in text.lines() {
            let code = line.split("//").next().unwrap_or("");
            for to in named_modules(code) {
                if to != from && to != "self" {
                    g.entry(from.clone())
                        .or_default()
                        .entry(to)
                        .or_default()
                        .insert(rel.clone());
                }
            }
        }
    }
    g
}

/// A cycle through `start`, if there is one (depth-first search).
fn cycle_from(g: &Graph, start: &str) -> Option<Vec<String>> {
    fn walk(
        g: &Graph,
        at: &str,
        start: &str,
        path: &mut Vec<String>,
        seen: &mut BTreeSet<String>,
    ) -> bool {
        for next in g.get(at).into_iter().flat_map(|m| m.keys()) {
            if next == start {
                return true;
            }
            if seen.insert(next.clone()) {
                path.push(next.clone());
                if walk(g, next, start, path, seen) {
                    return true;
                }
                path.pop();
            }
        }
        false
    }
    let mut path = vec![start.to_string()];
    walk(g, start, start, &mut path, &mut BTreeSet::new()).then_some(path)
}

#[test]
fn top_level_modules_have_no_cycle() {
    let g = graph();
    assert!(g.len() >= 10, "the graph was read: {:?}", g.keys());
    for module in g.keys() {
        if let Some(cycle) = cycle_from(&g, module) {
            let mut why = String::new();
            for (i, m) in cycle.iter().enumerate() {
                let next = &cycle[(i + 1) % cycle.len()];
                let files = &g[m][next];
                why.push_str(&format!("\n  {m} -> {next} (in {files:?})"));
            }
            panic!("a cycle between top-level modules:{why}");
        }
    }
}

#[test]
fn the_checker_finds_a_cycle_when_there_is_one() {
    // The same search over a made-up graph with one back edge.
    let mut g = Graph::new();
    let edge = |g: &mut Graph, a: &str, b: &str| {
        g.entry(a.into())
            .or_default()
            .entry(b.into())
            .or_default()
            .insert("x.rs".into());
    };
    edge(&mut g, "source", "pool");
    edge(&mut g, "pool", "domain");
    assert_eq!(cycle_from(&g, "source"), None);
    edge(&mut g, "domain", "source");
    assert_eq!(
        cycle_from(&g, "source"),
        Some(vec!["source".into(), "pool".into(), "domain".into()])
    );
    assert_eq!(
        named_modules("use crate::{alert::ws, store};"),
        ["alert", "store"]
    );
    assert_eq!(
        named_modules("use crate::{alert::{ws, Sink}, store::Store};"),
        ["alert", "store"]
    );
}

#[test]
fn src_keeps_to_about_twenty_entries_and_short_files() {
    let entries = std::fs::read_dir(src()).expect("src/").count();
    assert!(
        entries <= 20,
        "src/ has {entries} entries; group them by stage"
    );
    let mut files = Vec::new();
    rust_files(&src(), &mut files);
    let long: Vec<String> = files
        .iter()
        .filter_map(|f| {
            let n = std::fs::read_to_string(f).ok()?.lines().count();
            (n > 800).then(|| format!("{} ({n} lines)", f.display()))
        })
        .collect();
    assert!(long.is_empty(), "files over 800 lines: {long:?}");
}
