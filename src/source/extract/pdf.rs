//! A PDF's text layer, page by page, through pdf-extract (on lopdf).
//!
//! Each page is extracted on its own, with panics caught per page: one
//! broken page costs that page, not the document. A PDF that opens with an
//! empty password (owner-password-only, common for "no printing" files) is
//! read; one that needs a user password is skipped as encrypted.

use pdf_extract::{Document, OutputError, PlainTextOutput};

use super::{Extracted, Failure, Part, Reason, panic_message, tidy};

pub fn pages(bytes: &[u8]) -> Extracted {
    let mut doc = Document::load_mem(bytes)
        .map_err(|e| Failure::new(Reason::Unparsable, format!("PDF: {e}")))?;
    if doc.is_encrypted() && doc.decrypt("").is_err() {
        return Err(Failure::new(
            Reason::Encrypted,
            "the PDF needs a password to open; remove it (e.g. `qpdf --decrypt`) to load it",
        ));
    }
    let numbers: Vec<u32> = doc.get_pages().keys().copied().collect();
    if numbers.is_empty() {
        return Err(Failure::new(Reason::Unparsable, "PDF: no pages"));
    }
    let mut parts = Vec::new();
    let mut failed: Vec<(u32, String, Reason)> = Vec::new();
    for n in &numbers {
        let mut text = String::new();
        let run = std::panic::AssertUnwindSafe(|| {
            let mut out = PlainTextOutput::new(&mut text);
            pdf_extract::output_doc_page(&doc, &mut out, *n)
        });
        match std::panic::catch_unwind(run) {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                failed.push((*n, describe(&e), Reason::Unparsable));
                continue;
            }
            Err(p) => {
                failed.push((*n, panic_message(&p), Reason::ParserPanicked));
                continue;
            }
        }
        let text = tidy(&text);
        if !text.trim().is_empty() {
            parts.push(Part {
                label: Some(format!("page={n}")),
                page: Some(*n),
                text,
                records: false,
            });
        }
    }
    if parts.is_empty() {
        return Err(match failed.first() {
            Some((n, why, reason)) if failed.len() == numbers.len() => {
                Failure::new(*reason, format!("no page could be read (page {n}: {why})"))
            }
            _ => Failure::new(
                Reason::NoTextLayer,
                format!(
                    "none of its {} pages has text (a scan? OCR it first, e.g. with ocrmypdf)",
                    numbers.len()
                ),
            ),
        });
    }
    if let Some((n, why, _)) = failed.first() {
        tracing::warn!(
            "{} of {} pages could not be read and were left out (page {n}: {why})",
            failed.len(),
            numbers.len()
        );
    }
    Ok(parts)
}

fn describe(e: &OutputError) -> String {
    match e {
        OutputError::PdfError(e) => format!("PDF: {e}"),
        other => format!("{other:?}"),
    }
}
