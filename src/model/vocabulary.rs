//! A detector's vocabulary as prompts reach it: which of the model's labels
//! a free-text prompt names (with the synonyms documented in
//! docs/EVENTS.md), and the "the model detects: …" line a refused prompt
//! gets back. Pure: used when an event is compiled and when a model set
//! decides which events it can answer.

use std::sync::Arc;

/// Words that mean "a person" in prompts. A detector with a `person` label can
/// answer prompts that use any of them; the table is documented in
/// docs/EVENTS.md.
pub const PERSON_SYNONYMS: &[&str] = &[
    "person",
    "people",
    "persons",
    "human",
    "humans",
    "intruder",
    "intruders",
    "someone",
    "somebody",
    "anyone",
    "anybody",
    "pedestrian",
    "pedestrians",
    "man",
    "men",
    "woman",
    "women",
    "child",
    "children",
    "kid",
    "kids",
    "visitor",
    "visitors",
    "trespasser",
    "trespassers",
    "worker",
    "workers",
    "loiterer",
    "loiterers",
    "burglar",
    "thief",
];

/// Words people write for things a COCO-style detector knows, and the
/// labels each stands for (only those a model has count). COCO has no
/// parcel class: "package" and "parcel" look for the bags it knows. The
/// table is documented in docs/EVENTS.md.
pub const SYNONYMS: &[(&str, &[&str])] = &[
    ("vehicle", &["car", "truck", "bus", "motorcycle"]),
    ("vehicles", &["car", "truck", "bus", "motorcycle"]),
    ("automobile", &["car"]),
    ("van", &["car", "truck"]),
    ("vans", &["car", "truck"]),
    ("lorry", &["truck"]),
    ("lorries", &["truck"]),
    ("bike", &["bicycle"]),
    ("bikes", &["bicycle"]),
    ("cyclist", &["bicycle", "person"]),
    ("motorbike", &["motorcycle"]),
    ("motorbikes", &["motorcycle"]),
    ("scooter", &["motorcycle"]),
    (
        "animal",
        &[
            "bird", "cat", "dog", "horse", "sheep", "cow", "elephant", "bear", "zebra", "giraffe",
        ],
    ),
    (
        "animals",
        &[
            "bird", "cat", "dog", "horse", "sheep", "cow", "elephant", "bear", "zebra", "giraffe",
        ],
    ),
    ("wildlife", &["bird", "bear", "horse", "sheep", "cow"]),
    ("pet", &["cat", "dog"]),
    ("pets", &["cat", "dog"]),
    ("puppy", &["dog"]),
    ("puppies", &["dog"]),
    ("kitten", &["cat"]),
    ("kittens", &["cat"]),
    ("cattle", &["cow"]),
    ("package", &["suitcase", "backpack", "handbag"]),
    ("packages", &["suitcase", "backpack", "handbag"]),
    ("parcel", &["suitcase", "backpack", "handbag"]),
    ("parcels", &["suitcase", "backpack", "handbag"]),
    ("bag", &["backpack", "handbag", "suitcase"]),
    ("bags", &["backpack", "handbag", "suitcase"]),
    ("luggage", &["suitcase"]),
    ("phone", &["cell phone"]),
    ("phones", &["cell phone"]),
    ("smartphone", &["cell phone"]),
    ("television", &["tv"]),
    ("sofa", &["couch"]),
    ("table", &["dining table"]),
    ("plant", &["potted plant"]),
    ("plants", &["potted plant"]),
    ("mug", &["cup"]),
    ("mugs", &["cup"]),
    ("knives", &["knife"]),
    ("weapon", &["knife", "scissors", "baseball bat"]),
    ("fridge", &["refrigerator"]),
    ("ball", &["sports ball"]),
    ("buses", &["bus"]),
    ("boats", &["boat"]),
    ("ship", &["boat"]),
];

/// The labels `word` stands for: itself, the person words, the table.
fn synonyms_of(word: &str) -> impl Iterator<Item = &'static str> + use<'_> {
    let person = PERSON_SYNONYMS.contains(&word).then_some("person");
    let table = SYNONYMS
        .iter()
        .filter(move |(w, _)| *w == word)
        .flat_map(|(_, labels)| labels.iter().copied());
    person.into_iter().chain(table)
}

/// Resolves an event's classes against a model's labels.
///
/// Explicit `classes` must all be model labels. Otherwise the prompt's words
/// are matched against the labels (case-insensitive, `_` read as a space,
/// plurals in -s and -es) and the synonym tables. A prompt that names
/// nothing the model detects is an error that lists the model's vocabulary.
pub fn resolve_classes(
    prompt: &str,
    classes: Option<&[String]>,
    labels: &[Arc<str>],
) -> Result<Vec<Arc<str>>, String> {
    let find = |name: &str| {
        labels
            .iter()
            .find(|l| l.eq_ignore_ascii_case(name))
            .cloned()
    };
    if let Some(classes) = classes {
        let mut out = Vec::new();
        for c in classes {
            match find(c) {
                Some(l) => out.push(l),
                None => {
                    return Err(format!(
                        "class {c:?} is not a label of the model; {}",
                        vocabulary(labels)
                    ))
                }
            }
        }
        return Ok(out);
    }
    let out = prompt_labels(prompt, labels);
    if out.is_empty() {
        return Err(format!(
            "the prompt {prompt:?} names nothing this model can detect; {}",
            vocabulary(labels)
        ));
    }
    Ok(out)
}

/// The labels a prompt names, in the model's order (none if it names none).
pub fn prompt_labels(prompt: &str, labels: &[Arc<str>]) -> Vec<Arc<str>> {
    let text = prompt.to_lowercase();
    let words: Vec<&str> = text
        .split(|c: char| !c.is_alphanumeric() && c != '_')
        .filter(|w| !w.is_empty())
        .collect();
    let spaced = format!(" {} ", words.join(" "));
    let meant: Vec<&str> = words.iter().flat_map(|w| synonyms_of(w)).collect();
    let mut out: Vec<Arc<str>> = Vec::new();
    for l in labels {
        let name = l.to_lowercase().replace('_', " ");
        let hit = [" ", "s ", "es "]
            .iter()
            .any(|end| spaced.contains(&format!(" {name}{end}")));
        if (hit || meant.contains(&name.as_str())) && !out.contains(l) {
            out.push(l.clone());
        }
    }
    out
}

/// "the model detects: …", with the words that also reach those labels.
pub fn vocabulary(labels: &[Arc<str>]) -> String {
    let list: Vec<&str> = labels.iter().map(|l| &**l).collect();
    let has = |name: &str| labels.iter().any(|l| l.eq_ignore_ascii_case(name));
    let mut also: Vec<&str> = Vec::new();
    if has("person") {
        also.extend(&PERSON_SYNONYMS[1..]);
    }
    also.extend(
        SYNONYMS
            .iter()
            .filter(|(_, ls)| ls.iter().any(|l| has(l)))
            .map(|(w, _)| *w),
    );
    let also = if also.is_empty() {
        String::new()
    } else {
        format!(" (also understood: {})", also.join(", "))
    };
    format!("the model detects: {}{also}", list.join(", "))
}
