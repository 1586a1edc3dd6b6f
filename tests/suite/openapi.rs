//! docs/openapi.json describes exactly the routes the router serves: the
//! router is built from `api::ROUTES` (method, path, summary, handler), so
//! comparing the two keeps them in step.

use std::collections::BTreeSet;

#[test]
fn openapi_lists_exactly_the_served_routes() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/openapi.json");
    let text = std::fs::read_to_string(path).expect("docs/openapi.json");
    let doc: serde_json::Value = serde_json::from_str(&text).expect("valid JSON");
    assert_eq!(doc["openapi"], "3.1.0");
    let mut described = BTreeSet::new();
    for (p, ops) in doc["paths"].as_object().expect("paths") {
        for (m, op) in ops.as_object().expect("operations") {
            assert!(op["responses"].is_object(), "{m} {p} has responses");
            let summary = op["summary"].as_str().unwrap_or_default().to_string();
            described.insert((m.to_uppercase(), p.clone(), summary));
        }
    }
    // Each route is declared once, in the table, with its summary: the
    // document must say the same.
    let served: BTreeSet<(String, String, String)> = sightline::api::ROUTES
        .iter()
        .map(|r| {
            (
                r.method.to_string(),
                r.path.to_string(),
                r.summary.to_string(),
            )
        })
        .collect();
    let missing: Vec<_> = served.difference(&described).collect();
    let extra: Vec<_> = described.difference(&served).collect();
    assert!(missing.is_empty(), "served but not described: {missing:?}");
    assert!(extra.is_empty(), "described but not served: {extra:?}");
}
