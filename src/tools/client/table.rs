//! Human output of the client commands: a list of objects becomes a table
//! of its plain fields, one object a `key: value` list; nested values are
//! left to `--json`.

use serde_json::{Map, Value};

/// Widest a cell is printed (longer text is cut with `…`).
const MAX_CELL: usize = 48;

/// Renders a reply's `data` for a person.
pub fn render(data: &Value) -> String {
    match data {
        Value::Array(rows) => table(rows),
        Value::Object(o) => match single_list(o) {
            Some(rows) => table(rows),
            None => fields(o),
        },
        Value::Null => "ok\n".into(),
        other => format!("{}\n", cell(other)),
    }
}

/// The one array of objects a reply wraps its list in (`results`, `events`…).
fn single_list(o: &Map<String, Value>) -> Option<&Vec<Value>> {
    let lists: Vec<&Vec<Value>> = o
        .values()
        .filter_map(Value::as_array)
        .filter(|a| a.iter().all(Value::is_object))
        .collect();
    let plain = o.values().filter(|v| !v.is_array()).count();
    (lists.len() == 1 && plain == 0).then(|| lists[0])
}

fn plain(v: &Value) -> bool {
    !(v.is_object() || v.is_array())
}

fn cell(v: &Value) -> String {
    let text = match v {
        Value::Null => "-".to_string(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    let text = text.replace(['\n', '\t'], " ");
    if text.chars().count() > MAX_CELL {
        let cut: String = text.chars().take(MAX_CELL - 1).collect();
        format!("{cut}…")
    } else {
        text
    }
}

/// Identifying columns first (JSON objects arrive with sorted keys).
fn rank(col: &str) -> u8 {
    match col {
        "id" => 0,
        c if c.ends_with("_id") => 1,
        "name" | "label" => 2,
        "status" => 3,
        _ => 4,
    }
}

fn table(rows: &[Value]) -> String {
    if rows.is_empty() {
        return "(none)\n".into();
    }
    // Columns: the plain fields, in the first row's order, then any others.
    let mut cols: Vec<&str> = Vec::new();
    for r in rows.iter().filter_map(Value::as_object) {
        for (k, v) in r {
            if plain(v) && !cols.contains(&k.as_str()) {
                cols.push(k);
            }
        }
    }
    cols.sort_by_key(|c| rank(c));
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|r| cols.iter().map(|c| cell(&r[*c])).collect())
        .collect();
    let widths: Vec<usize> = cols
        .iter()
        .enumerate()
        .map(|(i, c)| {
            cells
                .iter()
                .map(|r| r[i].chars().count())
                .chain([c.len()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let line = |vals: Vec<String>| {
        let padded: Vec<String> = vals
            .iter()
            .zip(&widths)
            .map(|(v, w)| format!("{v:<w$}"))
            .collect();
        format!("{}\n", padded.join("  ").trim_end())
    };
    let mut out = line(cols.iter().map(|c| c.to_uppercase()).collect());
    for r in cells {
        out += &line(r);
    }
    out
}

fn fields(o: &Map<String, Value>) -> String {
    let width = o.keys().map(String::len).max().unwrap_or(0);
    let mut out = String::new();
    for (k, v) in o {
        let shown = if plain(v) {
            cell(v)
        } else {
            format!(
                "({} — see --json)",
                if v.is_array() { "list" } else { "object" }
            )
        };
        out += &format!("{k:<width$}  {shown}\n");
    }
    out
}

/// `sightline fleet status`: a header line, the boxes, the cameras.
pub fn site(d: &Value) -> String {
    let nats = &d["nats"];
    let mut out = format!(
        "site {} · this box {} (capacity {}) · NATS {}\n\nboxes\n",
        cell(&d["site"]),
        cell(&d["box_id"]),
        cell(&d["capacity"]),
        if nats["connected"].as_bool() == Some(true) {
            "connected"
        } else {
            "NOT CONNECTED"
        },
    );
    let list = |v: &Value| v.as_array().cloned().unwrap_or_default();
    out += &table(&list(&d["boxes"]));
    out += "\ncameras\n";
    out += &table(&list(&d["cameras"]));
    let unplaced = list(&d["unplaced"]);
    if !unplaced.is_empty() {
        let ids: Vec<String> = unplaced.iter().map(cell).collect();
        out += &format!("\nfit on no box: {}\n", ids.join(", "));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_wrapped_list_is_a_table_and_an_object_a_list_of_fields() {
        let t = render(&json!({"results": [
            {"id": "a", "name": "gate", "config": {"x": 1}},
            {"id": "bb", "name": null, "extra": 2},
        ]}));
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines[0], "ID  NAME  EXTRA");
        assert_eq!(lines[1], "a   gate  -");
        assert_eq!(lines[2], "bb  -     2");
        let f = render(&json!({"id": "e1", "labels": ["a"]}));
        assert!(f.contains("id      e1"), "{f}");
        assert!(f.contains("labels  (list — see --json)"), "{f}");
        assert_eq!(render(&json!({"results": []})), "(none)\n");
    }
}
