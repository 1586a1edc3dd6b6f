//! Whatever text a prompt holds, the CLIP tokenizer gives exactly `context`
//! ids: the start id first, one end id, zeros after it, every id inside the
//! vocabulary, and never panics.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sightline::model::tokenizer::ClipTokenizer;
use std::sync::OnceLock;

static TOKENIZER: OnceLock<ClipTokenizer> = OnceLock::new();

fuzz_target!(|data: &[u8]| {
    let t = TOKENIZER.get_or_init(|| ClipTokenizer::bundled(77).expect("tokenizer"));
    let text = String::from_utf8_lossy(data);
    let (ids, _) = t.encode(&text);
    assert_eq!(ids.len(), 77);
    assert_eq!(ids[0], 49406);
    let end = ids.iter().position(|&i| i == 49407).expect("an end id");
    assert!(ids[end + 1..].iter().all(|&i| i == 0));
    assert!(ids[1..end].iter().all(|&i| (0..49406).contains(&i)));
});
