//! Text files that are not UTF-8: GBK/GB18030 and Big5 from Chinese
//! desktops, Shift_JIS, Windows-1252 exports, UTF-16 with a byte-order mark.
//! They are decoded (chardetng, Firefox's detector, guesses the encoding;
//! encoding_rs decodes) and the report says which file came from which.
//!
//! A wrong guess would store mojibake and pay for it, silently. So a guess
//! is taken only when it holds up: the bytes decode without a single
//! malformed sequence, the text has no control characters (which text in
//! the guessed encoding would not), and at least `MIN_EVIDENCE` characters
//! are outside ASCII (with fewer, windows-1252 and windows-1251, or GBK and
//! Big5, fit the bytes equally well). Otherwise the file is skipped as
//! `unknown encoding`, and the message names the guess and `--encoding`.

use chardetng::{EncodingDetector, Iso2022JpDetection, Utf8Detection};
use encoding_rs::{Encoding, UTF_8, UTF_16BE, UTF_16LE};

/// Non-ASCII characters a detected encoding must explain.
const MIN_EVIDENCE: usize = 4;

/// How a file's bytes became text.
#[derive(Debug)]
pub struct Decoded {
    pub text: String,
    /// The encoding it was decoded from, unless UTF-8.
    pub from: Option<&'static str>,
}

/// Why bytes are not taken as text: a skip reason and the details.
#[derive(Debug)]
pub struct NotText {
    pub reason: &'static str,
    pub detail: String,
}

fn not_text(reason: &'static str, detail: impl Into<String>) -> NotText {
    NotText {
        reason,
        detail: detail.into(),
    }
}

/// What the caller knows about the bytes.
#[derive(Debug, Clone, Copy)]
pub struct Hints {
    /// `--encoding`: the encoding of every file that is not UTF-8.
    pub forced: Option<&'static Encoding>,
    /// HTML: a `<meta charset>` near the top names the encoding.
    pub html: bool,
    /// No extension: what is not clearly text is binary, not an encoding problem.
    pub sniffed: bool,
}

/// The text of `bytes`.
pub fn decode(bytes: Vec<u8>, hints: Hints) -> Result<Decoded, NotText> {
    let binary = |detail: String| {
        if hints.sniffed {
            not_text("binary", format!("no extension, and {detail}"))
        } else {
            not_text("unknown encoding", detail)
        }
    };
    // A byte-order mark is the file saying what it is.
    if let Some((enc, bom)) = Encoding::for_bom(&bytes) {
        let (text, malformed) = enc.decode_without_bom_handling(&bytes[bom..]);
        if malformed {
            return Err(not_text(
                "unparsable",
                format!(
                    "starts with a {} byte-order mark but is not valid {}",
                    enc.name(),
                    enc.name()
                ),
            ));
        }
        let from = (enc != UTF_8).then_some(enc.name());
        return Ok(Decoded {
            text: text.into_owned(),
            from,
        });
    }
    if let Some(at) = bytes.iter().position(|&b| b == 0) {
        return Err(not_text("binary", format!("NUL byte at offset {at}")));
    }
    let bytes = match String::from_utf8(bytes) {
        Ok(text) => return Ok(Decoded { text, from: None }),
        Err(e) => e.into_bytes(),
    };
    let declared = if hints.html {
        meta_charset(&bytes)
    } else {
        None
    };
    let (enc, how) = match (hints.forced, declared) {
        (Some(e), _) => (e, "--encoding"),
        (None, Some(e)) => (e, "the page's <meta charset>"),
        (None, None) => {
            let mut d = EncodingDetector::new(Iso2022JpDetection::Deny);
            d.feed(&bytes, true);
            (d.guess(None, Utf8Detection::Deny), "detected")
        }
    };
    let (text, malformed) = enc.decode_without_bom_handling(&bytes);
    if malformed {
        let detail = if how == "detected" {
            format!(
                "not UTF-8, nor any encoding vecload can tell (the best guess, {}, does not fit every byte)",
                enc.name()
            )
        } else {
            format!("not valid {} ({how})", enc.name())
        };
        return Err(binary(detail));
    }
    if let Some(c) = text
        .chars()
        .find(|c| c.is_control() && !matches!(c, '\t' | '\n' | '\r' | '\x0c'))
    {
        return Err(binary(format!(
            "not UTF-8, and as {} it holds the control character U+{:04X}, which text does not",
            enc.name(),
            c as u32
        )));
    }
    let evidence = text.chars().filter(|c| !c.is_ascii()).count();
    if how == "detected" && evidence < MIN_EVIDENCE {
        return Err(binary(format!(
            "not UTF-8, and {evidence} non-ASCII characters are too few to tell its encoding \
             ({} is only a guess); convert it (iconv -f {} -t UTF-8) or name it with --encoding",
            enc.name(),
            enc.name()
        )));
    }
    Ok(Decoded {
        text: text.into_owned(),
        from: Some(enc.name()),
    })
}

/// The encoding a `<meta charset=...>` or `<meta http-equiv content="...;
/// charset=...">` names in the first 1024 bytes, as browsers prescan.
fn meta_charset(bytes: &[u8]) -> Option<&'static Encoding> {
    let head = &bytes[..bytes.len().min(1024)];
    let lower: Vec<u8> = head.iter().map(u8::to_ascii_lowercase).collect();
    let at = lower.windows(8).position(|w| w == b"charset=")? + 8;
    let rest = &head[at..];
    let rest = rest
        .strip_prefix(b"\"")
        .or_else(|| rest.strip_prefix(b"'"))
        .unwrap_or(rest);
    let end = rest
        .iter()
        .position(|b| matches!(b, b'"' | b'\'' | b';' | b'>' | b'/' | b' '))
        .unwrap_or(rest.len());
    let enc = Encoding::for_label(&rest[..end])?;
    // A page that says UTF-8 but is not: let detection decide.
    (enc != UTF_8 && enc != UTF_16LE && enc != UTF_16BE).then_some(enc)
}

/// `--encoding LABEL`, by the WHATWG names and labels (e.g. gbk, gb18030,
/// big5, shift_jis, windows-1252, latin1).
pub fn by_label(label: &str) -> Option<&'static Encoding> {
    Encoding::for_label(label.trim().as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: Hints = Hints {
        forced: None,
        html: false,
        sniffed: false,
    };

    fn encode(enc: &'static Encoding, s: &str) -> Vec<u8> {
        let (b, _, bad) = enc.encode(s);
        assert!(!bad);
        b.into_owned()
    }

    #[test]
    fn legacy_text_comes_back_as_it_was_written() {
        let zh = "所有权是 Rust 最为与众不同的特性，对语言的其他部分有着深刻含义。它让 Rust 无需垃圾回收器即可保证内存安全。";
        let tw = "所有權是 Rust 最獨特的功能，並且對語言其他部分有深遠的影響。它使 Rust 能夠在不需要垃圾回收器的情況下保證記憶體安全。";
        let ja = "所有権はRustの最もユニークな機能であり、言語全体に深い影響を与えています。所有権のおかげで、Rustはガベージコレクタなしでメモリ安全性を保証できます。";
        let fr = "café crème brûlée, à la façon de l'hôtel";
        for (enc, s) in [
            (encoding_rs::GBK, zh),
            (encoding_rs::BIG5, tw),
            (encoding_rs::SHIFT_JIS, ja),
            (encoding_rs::WINDOWS_1252, fr),
        ] {
            let d = decode(encode(enc, s), TEXT).unwrap();
            assert_eq!(d.text, s);
            assert_eq!(d.from, Some(enc.name()));
        }
    }

    #[test]
    fn utf16_with_a_bom_is_text_and_utf8_stays_utf8() {
        let mut b = vec![0xFF, 0xFE];
        for u in "Grüße, 世界".encode_utf16() {
            b.extend(u.to_le_bytes());
        }
        let d = decode(b, TEXT).unwrap();
        assert_eq!((d.text.as_str(), d.from), ("Grüße, 世界", Some("UTF-16LE")));
        let d = decode("plain ünicode".as_bytes().to_vec(), TEXT).unwrap();
        assert_eq!((d.text.as_str(), d.from), ("plain ünicode", None));
    }

    #[test]
    fn too_little_to_tell_is_skipped_not_guessed() {
        let e = decode(encode(encoding_rs::GBK, "所有权"), TEXT).unwrap_err();
        assert_eq!(e.reason, "unknown encoding");
        assert!(e.detail.contains("--encoding"), "{}", e.detail);
        let e = decode(b"The caf\xe9 on the corner.".to_vec(), TEXT).unwrap_err();
        assert_eq!(e.reason, "unknown encoding");
        // Named, it is read.
        let forced = Hints {
            forced: by_label("latin1"),
            ..TEXT
        };
        let d = decode(b"The caf\xe9 on the corner.".to_vec(), forced).unwrap();
        assert_eq!(d.text, "The café on the corner.");
    }

    #[test]
    fn binary_is_not_mistaken_for_a_legacy_encoding() {
        // Bytes of every value but NUL: control characters in any encoding.
        let noise: Vec<u8> = (0..4096u32)
            .map(|i| ((i * 7919 + 13) % 255 + 1) as u8)
            .collect();
        let e = decode(noise.clone(), TEXT).unwrap_err();
        assert_eq!(e.reason, "unknown encoding");
        let sniffed = Hints {
            sniffed: true,
            ..TEXT
        };
        assert_eq!(decode(noise, sniffed).unwrap_err().reason, "binary");
        assert_eq!(decode(b"a\0b".to_vec(), TEXT).unwrap_err().reason, "binary");
    }

    #[test]
    fn an_html_page_that_names_its_charset_is_read_in_it() {
        let page = "<html><head><meta charset=\"gbk\"></head><body>所有权</body></html>";
        let html = Hints { html: true, ..TEXT };
        let d = decode(encode(encoding_rs::GBK, page), html).unwrap();
        assert_eq!((d.text.as_str(), d.from), (page, Some("GBK")));
    }
}
