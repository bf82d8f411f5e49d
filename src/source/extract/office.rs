//! Word, OpenDocument and PowerPoint files: zip archives of XML, read with
//! zip + quick-xml. Paragraphs and headings become lines; a table row
//! becomes one line with its cells joined by " | ", so a cell stays next to
//! its row's other cells in the chunk.

use std::collections::HashMap;
use std::io::{Cursor, Read};

use quick_xml::Reader;
use quick_xml::events::Event;

use super::{Extracted, Failure, Reason, whole};

/// Decompressed size one archive member may have: a zip bomb stops here.
const MAX_MEMBER: u64 = 512 * 1024 * 1024;

type Archive<'a> = zip::ZipArchive<Cursor<&'a [u8]>>;

fn open<'a>(bytes: &'a [u8], what: &str) -> Result<Archive<'a>, Failure> {
    zip::ZipArchive::new(Cursor::new(bytes)).map_err(|e| {
        let detail = format!("{what}: not a readable zip archive ({e})");
        match e {
            zip::result::ZipError::UnsupportedArchive(m) if m.contains("ncrypt") => {
                Failure::new(Reason::Encrypted, format!("{what}: {m}"))
            }
            _ => Failure::new(Reason::Unparsable, detail),
        }
    })
}

fn member(zip: &mut Archive<'_>, name: &str, what: &str) -> Result<Option<String>, Failure> {
    let file = match zip.by_name(name) {
        Ok(f) => f,
        Err(zip::result::ZipError::FileNotFound) => return Ok(None),
        Err(zip::result::ZipError::UnsupportedArchive(m)) if m.contains("ncrypt") => {
            return Err(Failure::new(Reason::Encrypted, format!("{what}: {m}")));
        }
        Err(e) => {
            return Err(Failure::new(
                Reason::Unparsable,
                format!("{what}: {name}: {e}"),
            ));
        }
    };
    let mut out = String::new();
    file.take(MAX_MEMBER)
        .read_to_string(&mut out)
        .map_err(|e| Failure::new(Reason::Unparsable, format!("{what}: {name}: {e}")))?;
    Ok(Some(out))
}

fn required(zip: &mut Archive<'_>, name: &str, what: &str) -> Result<String, Failure> {
    // Office files encrypted with a password are not zips but OLE
    // containers; those fail in `open`. A zip without the part is not
    // this format.
    member(zip, name, what)?.ok_or_else(|| {
        Failure::new(
            Reason::Unparsable,
            format!("{what}: the archive has no {name}"),
        )
    })
}

/// Element names (without namespace prefix) that shape the text.
struct Vocab {
    /// Text runs whose character data is kept.
    text: &'static [&'static str],
    /// Ends of these add a line break (paragraphs, headings, explicit breaks).
    line: &'static [&'static str],
    tab: &'static [&'static str],
    /// Elements whose whole content is dropped (deleted revisions, fields).
    skip: &'static [&'static str],
    cell: &'static str,
    row: &'static str,
    /// Ends of these add a blank line (slides, pages).
    block: &'static [&'static str],
    /// ODF's `<text:s text:c="3"/>`: that many spaces.
    spaces: Option<&'static str>,
}

const WORD: Vocab = Vocab {
    text: &["t"],
    line: &["p", "br", "cr"],
    tab: &["tab"],
    skip: &["delText", "instrText", "del"],
    cell: "tc",
    row: "tr",
    block: &[],
    spaces: None,
};

const ODF: Vocab = Vocab {
    text: &["p", "h", "span", "a", "list-item"],
    line: &["p", "h", "line-break"],
    tab: &["tab"],
    skip: &["annotation", "tracked-changes", "note-citation"],
    cell: "table-cell",
    row: "table-row",
    block: &["page"],
    spaces: Some("s"),
};

const SLIDE: Vocab = Vocab {
    text: &["t"],
    line: &["p", "br"],
    tab: &[],
    skip: &[],
    cell: "tc",
    row: "tr",
    block: &[],
    spaces: None,
};

fn local(name: &[u8]) -> &[u8] {
    match name.iter().rposition(|&b| b == b':') {
        Some(i) => &name[i + 1..],
        None => name,
    }
}

fn is(list: &[&str], name: &[u8]) -> bool {
    list.iter().any(|n| n.as_bytes() == name)
}

/// The visible text of one XML part.
fn text_of(xml: &str, v: &Vocab, what: &str) -> Result<String, Failure> {
    let mut reader = Reader::from_str(xml);
    let mut out = String::new();
    // Per open element: keeps text? Inside a skipped element nothing is kept.
    let mut keep: Vec<bool> = Vec::new();
    let mut skipping = 0usize;
    let mut in_cell = 0usize;
    let mut cells_in_row = 0usize;
    loop {
        let ev = reader.read_event().map_err(|e| {
            Failure::new(
                Reason::Unparsable,
                format!("{what}: XML error at byte {}: {e}", reader.error_position()),
            )
        })?;
        match ev {
            Event::Start(e) => {
                let qname = e.name();
                let name = local(qname.as_ref().as_bytes());
                if skipping > 0 || is(v.skip, name) {
                    skipping += 1;
                    continue;
                }
                if name == v.cell.as_bytes() {
                    if cells_in_row > 0 {
                        out.push_str(" | ");
                    }
                    cells_in_row += 1;
                    in_cell += 1;
                } else if name == v.row.as_bytes() {
                    cells_in_row = 0;
                }
                keep.push(is(v.text, name));
            }
            Event::End(e) => {
                let qname = e.name();
                let name = local(qname.as_ref().as_bytes());
                if skipping > 0 {
                    skipping -= 1;
                    continue;
                }
                keep.pop();
                if name == v.cell.as_bytes() {
                    in_cell = in_cell.saturating_sub(1);
                    trim_end_inline(&mut out);
                } else if name == v.row.as_bytes() {
                    trim_end_inline(&mut out);
                    out.push('\n');
                } else if is(v.block, name) {
                    out.push_str("\n\n");
                } else if is(v.line, name) {
                    // Inside a cell, paragraphs run on with a space: the row
                    // stays one line.
                    if in_cell > 0 {
                        if !out.ends_with(' ') && !out.ends_with("| ") {
                            out.push(' ');
                        }
                    } else {
                        out.push('\n');
                    }
                }
            }
            Event::Empty(e) => {
                if skipping > 0 {
                    continue;
                }
                let qname = e.name();
                let name = local(qname.as_ref().as_bytes());
                if is(v.tab, name) {
                    out.push('\t');
                } else if v.spaces.is_some_and(|s| s.as_bytes() == name) {
                    let n = e
                        .attributes()
                        .flatten()
                        .find(|a| local(a.key.as_ref().as_bytes()) == b"c")
                        .and_then(|a| a.value.parse::<usize>().ok())
                        .unwrap_or(1);
                    out.extend(std::iter::repeat_n(' ', n.min(64)));
                } else if is(v.line, name) {
                    out.push(if in_cell > 0 { ' ' } else { '\n' });
                } else if name == v.cell.as_bytes() && cells_in_row > 0 {
                    // An empty cell still holds its place in the row.
                    out.push_str(" | ");
                }
            }
            Event::Text(t) if skipping == 0 && keep.last() == Some(&true) => {
                out.push_str(&t.xml10_content());
            }
            Event::CData(t) if skipping == 0 && keep.last() == Some(&true) => {
                out.push_str(&t.into_inner());
            }
            Event::GeneralRef(r) if skipping == 0 && keep.last() == Some(&true) => {
                if let Ok(Some(c)) = r.resolve_char_ref() {
                    out.push(c);
                } else if let Some(s) =
                    quick_xml::escape::resolve_predefined_entity(&r.xml10_content())
                {
                    out.push_str(s);
                }
            }
            Event::Eof => break,
            _ => {}
        }
    }
    Ok(out)
}

fn trim_end_inline(s: &mut String) {
    while s.ends_with(' ') || s.ends_with('\t') {
        s.pop();
    }
}

pub fn docx(bytes: &[u8]) -> Extracted {
    let what = "DOCX";
    let mut zip = open(bytes, what)?;
    let mut text = text_of(&required(&mut zip, "word/document.xml", what)?, &WORD, what)?;
    // Footnotes and endnotes are part of what the author wrote.
    for extra in ["word/footnotes.xml", "word/endnotes.xml"] {
        if let Some(xml) = member(&mut zip, extra, what)? {
            text.push_str("\n\n");
            text.push_str(&text_of(&xml, &WORD, what)?);
        }
    }
    whole(text, "the document has no text")
}

pub fn odt(bytes: &[u8]) -> Extracted {
    let what = "ODT";
    let mut zip = open(bytes, what)?;
    let text = text_of(&required(&mut zip, "content.xml", what)?, &ODF, what)?;
    whole(text, "the document has no text")
}

pub fn odp(bytes: &[u8]) -> Extracted {
    let what = "ODP";
    let mut zip = open(bytes, what)?;
    let text = text_of(&required(&mut zip, "content.xml", what)?, &ODF, what)?;
    whole(text, "the presentation has no text")
}

/// Slides in presentation order (presentation.xml's list, not the file
/// names, which keep their numbers when slides are moved), each followed by
/// its speaker notes.
pub fn pptx(bytes: &[u8]) -> Extracted {
    let what = "PPTX";
    let mut zip = open(bytes, what)?;
    let pres = required(&mut zip, "ppt/presentation.xml", what)?;
    let pres_rels = rels(&mut zip, "ppt/_rels/presentation.xml.rels", what)?;
    let mut slides: Vec<String> = ids_in_order(&pres, "sldId", what)?
        .iter()
        .filter_map(|rid| pres_rels.get(rid))
        .map(|(_, target)| resolve("ppt", target))
        .collect();
    if slides.is_empty() {
        // No list (a hand-made file): by file number.
        let mut named: Vec<(u32, String)> = zip
            .file_names()
            .filter_map(|n| n.ok())
            .filter_map(|n| {
                let num = n.strip_prefix("ppt/slides/slide")?.strip_suffix(".xml")?;
                Some((num.parse().ok()?, n.to_string()))
            })
            .collect();
        named.sort();
        slides = named.into_iter().map(|(_, n)| n).collect();
    }
    let mut text = String::new();
    for slide in &slides {
        let Some(xml) = member(&mut zip, slide, what)? else {
            continue;
        };
        text.push_str(&text_of(&xml, &SLIDE, what)?);
        let (dir, file) = slide.rsplit_once('/').unwrap_or(("", slide));
        let slide_rels = rels(&mut zip, &format!("{dir}/_rels/{file}.rels"), what)?;
        for (kind, target) in slide_rels.values() {
            if kind.ends_with("/notesSlide")
                && let Some(notes) = member(&mut zip, &resolve(dir, target), what)?
            {
                text.push('\n');
                text.push_str(&notes_text(&notes, what)?);
            }
        }
        text.push_str("\n\n");
    }
    whole(text, "the presentation has no text")
}

/// A notes page's text without its placeholders' slide image and number.
fn notes_text(xml: &str, what: &str) -> Result<String, Failure> {
    let text = text_of(xml, &SLIDE, what)?;
    // The slide-number placeholder is the only line that is a bare number.
    Ok(text
        .lines()
        .filter(|l| !l.trim().chars().all(|c| c.is_ascii_digit()))
        .collect::<Vec<_>>()
        .join("\n"))
}

/// `Id -> (Type, Target)` of a .rels part.
fn rels(
    zip: &mut Archive<'_>,
    name: &str,
    what: &str,
) -> Result<HashMap<String, (String, String)>, Failure> {
    let mut out = HashMap::new();
    let Some(xml) = member(zip, name, what)? else {
        return Ok(out);
    };
    let mut reader = Reader::from_str(&xml);
    loop {
        match reader.read_event() {
            Ok(Event::Start(e)) | Ok(Event::Empty(e))
                if local(e.name().as_ref().as_bytes()) == b"Relationship" =>
            {
                let mut id = None;
                let mut kind = String::new();
                let mut target = None;
                for a in e.attributes().flatten() {
                    match a.key.as_ref() {
                        "Id" => id = Some(a.value.to_string()),
                        "Type" => kind = a.value.to_string(),
                        "Target" => target = Some(a.value.to_string()),
                        _ => {}
                    }
                }
                if let (Some(id), Some(target)) = (id, target) {
                    out.insert(id, (kind, target));
                }
            }
            Ok(Event::Eof) => break,
            Err(e) => {
                return Err(Failure::new(
                    Reason::Unparsable,
                    format!("{what}: {name}: {e}"),
                ));
            }
            _ => {}
        }
    }
    Ok(out)
}

/// The `r:id`s of the `element`s in document order.
fn ids_in_order(xml: &str, element: &str, what: &str) -> Result<Vec<String>, Failure> {
    let mut reader = Reader::from_str(xml);
    let mut out = Vec::new();
    loop {
        match reader.read_event() {
            Ok(Event::Start(e)) | Ok(Event::Empty(e))
                if local(e.name().as_ref().as_bytes()) == element.as_bytes() =>
            {
                if let Some(a) = e
                    .attributes()
                    .flatten()
                    .find(|a| a.key.as_ref().ends_with(":id"))
                {
                    out.push(a.value.to_string());
                }
            }
            Ok(Event::Eof) => break,
            Err(e) => {
                return Err(Failure::new(
                    Reason::Unparsable,
                    format!("{what}: presentation.xml: {e}"),
                ));
            }
            _ => {}
        }
    }
    Ok(out)
}

/// A relationship target relative to `dir`, as an archive member name.
fn resolve(dir: &str, target: &str) -> String {
    if let Some(abs) = target.strip_prefix('/') {
        return abs.to_string();
    }
    let mut parts: Vec<&str> = dir.split('/').filter(|p| !p.is_empty()).collect();
    for seg in target.split('/') {
        match seg {
            ".." => {
                parts.pop();
            }
            "." | "" => {}
            s => parts.push(s),
        }
    }
    parts.join("/")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn word_tables_keep_rows_on_one_line() {
        let xml = r#"<w:document xmlns:w="x"><w:body>
            <w:p><w:r><w:t>Heading &amp; more</w:t></w:r></w:p>
            <w:tbl><w:tr><w:tc><w:p><w:r><w:t>Service</w:t></w:r></w:p></w:tc><w:tc><w:p><w:r><w:t>Owner</w:t></w:r></w:p></w:tc></w:tr>
            <w:tr><w:tc><w:p><w:r><w:t>ledger-sync</w:t></w:r></w:p></w:tc><w:tc><w:p><w:r><w:t>Team</w:t></w:r><w:r><w:t xml:space="preserve"> Falcon</w:t></w:r></w:p></w:tc></w:tr></w:tbl>
            <w:p><w:del><w:r><w:delText>gone</w:delText></w:r></w:del><w:r><w:t>kept</w:t></w:r></w:p>
            </w:body></w:document>"#;
        let t = text_of(xml, &WORD, "DOCX").unwrap();
        assert!(t.contains("Heading & more\n"), "{t:?}");
        assert!(t.contains("Service | Owner\n"), "{t:?}");
        assert!(t.contains("ledger-sync | Team Falcon\n"), "{t:?}");
        assert!(t.contains("kept") && !t.contains("gone"), "{t:?}");
    }

    #[test]
    fn odf_spaces_and_headings() {
        let xml = r#"<office:document-content xmlns:office="o" xmlns:text="t"><office:body><office:text>
            <text:h>Title</text:h><text:p>a<text:s text:c="3"/>b<text:span>c</text:span></text:p>
            </office:text></office:body></office:document-content>"#;
        let t = text_of(xml, &ODF, "ODT").unwrap();
        assert_eq!(t.trim(), "Title\na   bc");
    }

    #[test]
    fn targets_resolve_against_their_folder() {
        assert_eq!(resolve("ppt", "slides/slide2.xml"), "ppt/slides/slide2.xml");
        assert_eq!(
            resolve("ppt/slides", "../notesSlides/notesSlide1.xml"),
            "ppt/notesSlides/notesSlide1.xml"
        );
        assert_eq!(resolve("ppt", "/ppt/slides/s.xml"), "ppt/slides/s.xml");
    }
}
