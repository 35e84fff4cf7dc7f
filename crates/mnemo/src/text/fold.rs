//! Pass 1 and 2 of [`tokens`](super::tokens): the per-script rules that fold
//! code points, and the cut into tokens.

use unicode_normalization::char::is_combining_mark;
use unicode_normalization::UnicodeNormalization;

/// Pass 1: compatibility unfolding, case folding, decomposition, dropped
/// marks and letter mappings, one code point at a time.
pub(super) fn fold(text: &str) -> Vec<char> {
    let mut out = Vec::with_capacity(text.len());
    for c in text.chars() {
        if c.is_ascii() {
            // No ASCII character is a compatibility form, decomposes, is
            // dropped or mapped: only case folding applies.
            out.push(c.to_ascii_lowercase());
        } else if is_compatibility_form(c) {
            for d in std::iter::once(c).nfkd() {
                fold_char(d, &mut out);
            }
        } else {
            fold_char(c, &mut out);
        }
    }
    out
}

fn fold_char(c: char, out: &mut Vec<char>) {
    // yeh barree with hamza is another spelling of hamza-yeh + yeh barree
    // (ہوۓ = ہوئے); both end up as ی + ے.
    if c == '\u{06D3}' {
        out.extend(['\u{06CC}', '\u{06D2}']);
        return;
    }
    for lower in c.to_lowercase() {
        for d in std::iter::once(lower).nfd() {
            if !is_dropped(d) {
                push_mapped(d, out);
            }
        }
    }
}

/// Compatibility characters whose NFKD form is the text a user means:
/// Latin ligatures and Arabic/Hebrew presentation forms (text copied from
/// PDFs), full-width ASCII and half-width kana (CJK input methods).
fn is_compatibility_form(c: char) -> bool {
    matches!(c,
        '\u{FB00}'..='\u{FDFF}'   // alphabetic presentation forms, Arabic presentation forms A
        | '\u{FE70}'..='\u{FEFE}' // Arabic presentation forms B
        | '\u{FF00}'..='\u{FFEF}' // half-width and full-width forms
    )
}

/// Marks and invisible characters that carry no meaning for retrieval. They
/// are removed without splitting the word they sit in.
fn is_dropped(c: char) -> bool {
    matches!(c,
        '\u{0300}'..='\u{036F}'   // combining diacritical marks (Latin, Greek, Cyrillic)
        | '\u{1AB0}'..='\u{1AFF}' // combining diacritical marks extended
        | '\u{1DC0}'..='\u{1DFF}' // combining diacritical marks supplement
        | '\u{20D0}'..='\u{20FF}' // combining marks for symbols
        | '\u{FE20}'..='\u{FE2F}' // combining half marks
        | '\u{0610}'..='\u{061A}' // Arabic signs above/below
        | '\u{064B}'..='\u{065F}' // harakat, shadda, sukun, hamza and madda above/below
        | '\u{0670}'              // superscript alef
        | '\u{06D6}'..='\u{06ED}' // Quranic annotation marks
        | '\u{08D3}'..='\u{08FF}' // Arabic extended-A marks
        | '\u{0640}'              // tatweel
        | '\u{093C}'              // Devanagari nukta
        | '\u{00AD}'              // soft hyphen
        | '\u{061C}'              // Arabic letter mark
        | '\u{200C}'..='\u{200F}' // zero-width non-joiner / joiner, LRM, RLM
        | '\u{202A}'..='\u{202E}' // bidi embeddings and overrides
        | '\u{2060}'..='\u{2064}' // word joiner, invisible operators
        | '\u{2066}'..='\u{206F}' // bidi isolates, deprecated format characters
        | '\u{FEFF}'              // zero-width no-break space (BOM)
        | '\u{FE00}'..='\u{FE0F}' // variation selectors
        | '\u{E0100}'..='\u{E01EF}' // ideographic variation selectors
    )
}

fn push_mapped(c: char, out: &mut Vec<char>) {
    let mapped = match c {
        // Arabic letters typed for their Urdu/Persian forms
        '\u{064A}' | '\u{0649}' => '\u{06CC}', // Arabic yeh / alef maksura -> Farsi yeh (ی)
        '\u{0643}' => '\u{06A9}',              // Arabic kaf -> keheh (ک)
        '\u{0647}' | '\u{06D5}' => '\u{06C1}', // Arabic heh / ae -> heh goal (ہ)
        '\u{0629}' => '\u{06C3}',              // teh marbuta -> teh marbuta goal (ۃ)
        // Arabic-Indic, extended (Urdu/Persian) and Devanagari digits
        '\u{0660}'..='\u{0669}' => digit(c, 0x0660),
        '\u{06F0}'..='\u{06F9}' => digit(c, 0x06F0),
        '\u{0966}'..='\u{096F}' => digit(c, 0x0966),
        '\u{0901}' => '\u{0902}', // Devanagari chandrabindu -> anusvara
        // letters NFD does not decompose
        'ł' => 'l',
        'ø' => 'o',
        'đ' | 'ð' => 'd',
        'ı' => 'i',
        'ς' => 'σ',
        'ß' => return out.extend(['s', 's']),
        'æ' => return out.extend(['a', 'e']),
        'œ' => return out.extend(['o', 'e']),
        'þ' => return out.extend(['t', 'h']),
        _ => c,
    };
    out.push(mapped);
}

fn digit(c: char, zero: u32) -> char {
    char::from_digit(c as u32 - zero, 10).unwrap_or(c)
}

/// Pass 2: cut the folded code points into tokens.
pub(super) fn split(chars: &[char]) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    let mut in_cjk = false;
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if is_combining_mark(c) {
            // vowel signs, virama, kana sound marks...: part of the token
            // before them; a mark with nothing before it is dropped
            if !current.is_empty() {
                current.push(c);
            }
        } else if is_cjk(c) {
            flush(&mut current, &mut out);
            current.push(c);
            in_cjk = true;
        } else if is_apostrophe(c) {
            // English `'s` clitic: `user's` indexes and queries as `user`
            let clitic = !current.is_empty()
                && !in_cjk
                && chars.get(i + 1) == Some(&'s')
                && !chars.get(i + 2).is_some_and(|&n| is_token_char(n));
            flush(&mut current, &mut out);
            if clitic {
                i += 1;
            }
        } else if c.is_alphanumeric() {
            if in_cjk {
                flush(&mut current, &mut out);
                in_cjk = false;
            }
            if !current.is_empty()
                && is_devanagari_nasal(c)
                && chars.get(i + 1) == Some(&VIRAMA)
                && chars
                    .get(i + 2)
                    .is_some_and(|&n| is_devanagari_consonant(n))
            {
                current.push(ANUSVARA);
                i += 1; // the virama
            } else {
                current.push(c);
            }
        } else {
            flush(&mut current, &mut out);
        }
        i += 1;
    }
    flush(&mut current, &mut out);
    out
}

fn flush(current: &mut String, out: &mut Vec<String>) {
    if current.is_ascii() {
        // NFC leaves ASCII as it is.
        if !current.is_empty() {
            out.push(std::mem::take(current));
        }
    } else {
        out.push(current.nfc().collect());
        current.clear();
    }
}

fn is_token_char(c: char) -> bool {
    c.is_alphanumeric() || is_combining_mark(c)
}

fn is_apostrophe(c: char) -> bool {
    matches!(c, '\'' | '\u{2019}' | '\u{02BC}')
}

const VIRAMA: char = '\u{094D}';
const ANUSVARA: char = '\u{0902}';

/// ङ ञ ण न म: written as anusvara before a consonant by most writers.
fn is_devanagari_nasal(c: char) -> bool {
    matches!(
        c,
        '\u{0919}' | '\u{091E}' | '\u{0923}' | '\u{0928}' | '\u{092E}'
    )
}

fn is_devanagari_consonant(c: char) -> bool {
    matches!(c, '\u{0915}'..='\u{0939}')
}

pub(super) fn is_cjk(c: char) -> bool {
    matches!(c,
        '\u{3005}'..='\u{3007}'   // 々 〆 〇
        | '\u{3040}'..='\u{30FF}' // hiragana, katakana
        | '\u{31F0}'..='\u{31FF}' // katakana phonetic extensions
        | '\u{3400}'..='\u{4DBF}' // CJK extension A
        | '\u{4E00}'..='\u{9FFF}' // CJK unified ideographs
        | '\u{F900}'..='\u{FAFF}' // compatibility ideographs
        | '\u{20000}'..='\u{3FFFF}' // extensions B.., supplementary planes
    )
}

pub(super) fn is_cjk_token(token: &str) -> bool {
    token.chars().next().is_some_and(is_cjk)
}
