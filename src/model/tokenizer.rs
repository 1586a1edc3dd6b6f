//! The CLIP text tokenizer: OpenAI's byte-level BPE (`bpe_simple_vocab_16e6`),
//! start 49406, end 49407, padded with zeros to the context length.
//!
//! The BPE itself is the `instant-clip-tokenizer` crate. What the reference
//! (`clip/simple_tokenizer.py`) does before BPE is done here: the parts of
//! `ftfy.fix_text` that change typed text (HTML entities when the text holds
//! no `<`, curly quotes, Latin ligatures, full-width forms, control
//! characters, NFC), `html.unescape` twice, whitespace runs collapsed and
//! trimmed. ftfy's mojibake repair is not done: prompts arrive as valid UTF-8
//! typed by an operator. `tests/suite/tokenizer.rs` compares ids with the reference
//! on the strings in `tests/tokenizer/strings.json`.

use std::io::BufRead;

use instant_clip_tokenizer::Tokenizer;
use unicode_normalization::UnicodeNormalization;

/// The reference turns these into its start and end tokens; a prompt
/// holding one is refused by the matcher rather than tokenised differently.
pub const MARKERS: &[&str] = &["<|startoftext|>", "<|endoftext|>"];

/// The BPE crate's own spelling of the special tokens. The reference reads
/// them as ordinary text, so [`ClipTokenizer::encode`] never lets the crate
/// see one whole (found by `fuzz/fuzz_targets/tokenizer.rs`).
const CRATE_MARKERS: &[&str] = &["<start_of_text>", "<end_of_text>"];

/// Vocabulary size of OpenAI's CLIP BPE (start and end are its last two ids).
pub const VOCAB_SIZE: u16 = 49408;

/// A CLIP tokenizer for one context length.
pub struct ClipTokenizer {
    bpe: Tokenizer,
    context: usize,
}

impl std::fmt::Debug for ClipTokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClipTokenizer")
            .field("context", &self.context)
            .finish()
    }
}

impl ClipTokenizer {
    /// The tokenizer with the vocabulary bundled in the crate (OpenAI's file).
    pub fn bundled(context: usize) -> Result<ClipTokenizer, String> {
        Self::check_context(context)?;
        Ok(ClipTokenizer {
            bpe: Tokenizer::new(),
            context,
        })
    }

    /// The tokenizer with a `bpe_simple_vocab_16e6.txt`-format vocabulary.
    pub fn from_vocabulary(reader: impl BufRead, context: usize) -> Result<ClipTokenizer, String> {
        Self::check_context(context)?;
        let bpe = Tokenizer::with_vocabulary(reader, VOCAB_SIZE)
            .map_err(|e| format!("cannot read the BPE vocabulary: {e}"))?;
        if bpe.start_of_text().to_u16() != 49406 || bpe.end_of_text().to_u16() != 49407 {
            return Err(format!(
                "the vocabulary gives start/end ids {}/{}, expected 49406/49407 \
                 (is it bpe_simple_vocab_16e6.txt, uncompressed?)",
                bpe.start_of_text().to_u16(),
                bpe.end_of_text().to_u16()
            ));
        }
        Ok(ClipTokenizer { bpe, context })
    }

    fn check_context(context: usize) -> Result<(), String> {
        if !(3..=1024).contains(&context) {
            return Err(format!(
                "text context length {context} must be between 3 and 1024"
            ));
        }
        Ok(())
    }

    /// Context length (77 for CLIP).
    pub fn context(&self) -> usize {
        self.context
    }

    /// Token ids for a text: start, the text's tokens, end; cut to the
    /// context length keeping the end token (as `clip.tokenize(truncate=True)`),
    /// then padded with zeros. The second value says whether it was cut.
    pub fn encode(&self, text: &str) -> (Vec<i64>, bool) {
        let mut tokens = vec![self.bpe.start_of_text()];
        let text = clean(text).to_lowercase();
        // Cut right after the '<' of each crate marker: a boundary between
        // punctuation and a letter, where both word splitters break anyway.
        let mut cuts: Vec<usize> = CRATE_MARKERS
            .iter()
            .flat_map(|m| text.match_indices(m).map(|(i, _)| i + 1))
            .collect();
        cuts.sort_unstable();
        let mut from = 0;
        for cut in cuts.into_iter().chain(std::iter::once(text.len())) {
            self.bpe.encode(&text[from..cut], &mut tokens);
            from = cut;
        }
        let truncated = tokens.len() + 1 > self.context;
        tokens.truncate(self.context - 1);
        tokens.push(self.bpe.end_of_text());
        let mut ids: Vec<i64> = tokens.iter().map(|t| i64::from(t.to_u16())).collect();
        ids.resize(self.context, 0);
        (ids, truncated)
    }
}

/// Text clean-up before BPE, as the reference does it (see module docs).
pub fn clean(text: &str) -> String {
    let mut s = fix_text(text);
    for _ in 0..2 {
        s = htmlize::unescape(s).into_owned();
    }
    // Whitespace runs become one space; ends trimmed.
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The ftfy steps that matter for typed text, in ftfy's order.
fn fix_text(text: &str) -> String {
    let mut s = if text.contains('<') {
        text.to_string()
    } else {
        htmlize::unescape(text).into_owned()
    };
    s = s.replace("\r\n", "\n");
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if let Some(l) = ligature(c) {
            out.push_str(l);
        } else if is_width_form(c) {
            out.extend(c.nfkc());
        } else if matches!(c, '\u{2018}'..='\u{201b}' | '\u{02bc}') {
            out.push('\'');
        } else if matches!(c, '\u{201c}'..='\u{201f}') {
            out.push('"');
        } else if !is_control(c) {
            out.push(c);
        }
    }
    out.nfc().collect()
}

/// Latin ligatures ftfy spells out.
fn ligature(c: char) -> Option<&'static str> {
    Some(match c {
        'Ĳ' => "IJ",
        'ĳ' => "ij",
        'ŉ' => "ʼn",
        'Ǳ' => "DZ",
        'ǲ' => "Dz",
        'ǳ' => "dz",
        'Ǆ' => "DŽ",
        'ǅ' => "Dž",
        'ǆ' => "dž",
        'Ǉ' => "LJ",
        'ǈ' => "Lj",
        'ǉ' => "lj",
        'Ǌ' => "NJ",
        'ǋ' => "Nj",
        'ǌ' => "nj",
        'ﬀ' => "ff",
        'ﬁ' => "fi",
        'ﬂ' => "fl",
        'ﬃ' => "ffi",
        'ﬄ' => "ffl",
        'ﬅ' => "ſt",
        'ﬆ' => "st",
        _ => return None,
    })
}

/// Full-width and half-width forms (and the ideographic space), which ftfy
/// maps to their ordinary width.
fn is_width_form(c: char) -> bool {
    c == '\u{3000}' || ('\u{ff01}'..='\u{ffef}').contains(&c)
}

/// Control and formatting characters ftfy removes.
fn is_control(c: char) -> bool {
    let u = c as u32;
    matches!(u,
        0x00..=0x08 | 0x0b | 0x0e..=0x1f | 0x7f | 0x206a..=0x206f | 0xfeff
        | 0xfff9..=0xfffc | 0x1d173..=0x1d17a | 0xe0000..=0xe007f)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_ids_and_padding() {
        let t = ClipTokenizer::bundled(77).unwrap();
        let (ids, cut) = t.encode("Hi there");
        assert_eq!(&ids[..4], &[49406, 1883, 997, 49407]);
        assert!(ids[4..].iter().all(|&i| i == 0));
        assert_eq!(ids.len(), 77);
        assert!(!cut);
    }

    #[test]
    fn long_text_keeps_the_end_token() {
        let t = ClipTokenizer::bundled(77).unwrap();
        let (ids, cut) = t.encode(&"word ".repeat(100));
        assert!(cut);
        assert_eq!(ids[0], 49406);
        assert_eq!(ids[76], 49407);
        assert!(ids[1..76].iter().all(|&i| i != 0 && i != 49407));
    }

    #[test]
    fn clean_up_matches_the_reference_steps() {
        assert_eq!(clean("  Tom &amp;amp; Jerry \n"), "Tom & Jerry");
        assert_eq!(clean("don’t ﬁre"), "don't fire");
        assert_eq!(clean("ｆｕｌｌ\u{3000}width"), "full width");
        assert_eq!(clean("cafe\u{301}"), "caf\u{e9}");
    }

    #[test]
    fn a_foreign_vocabulary_is_refused() {
        let err = ClipTokenizer::from_vocabulary("#version\nh e\n".as_bytes(), 77).unwrap_err();
        assert!(err.contains("49406"), "{err}");
    }
}
