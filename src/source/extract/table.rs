//! Spreadsheets (calamine) and CSV/TSV (csv): one line per row of
//! "header: value" pairs, so every chunk says what each value means. Each
//! sheet is a part of its own; the chunker packs whole rows (see
//! `Part::records`).

use std::io::Cursor;

use calamine::{Data, Reader, Sheets};

use super::{Extracted, Failure, Kind, Part, Reason};

/// Rows (as cell texts) into record lines. The first row with any value is
/// the header; empty rows are left out; a column without a header is named
/// by its spreadsheet letter.
fn records(rows: impl Iterator<Item = Vec<String>>) -> String {
    let mut header: Option<Vec<String>> = None;
    let mut out = String::new();
    for row in rows {
        let row: Vec<String> = row.iter().map(|c| one_line(c)).collect();
        if row.iter().all(|c| c.is_empty()) {
            continue;
        }
        let Some(h) = &header else {
            header = Some(row);
            continue;
        };
        let mut first = true;
        for (i, value) in row.iter().enumerate() {
            if value.is_empty() {
                continue;
            }
            if !first {
                out.push_str("; ");
            }
            first = false;
            match h.get(i).filter(|n| !n.is_empty()) {
                Some(name) => out.push_str(name),
                None => out.push_str(&column_letter(i)),
            }
            out.push_str(": ");
            out.push_str(value);
        }
        out.push('\n');
    }
    // A sheet of one row: its header is all there is, and still worth keeping.
    if out.is_empty()
        && let Some(h) = header
    {
        out = h.join("; ");
        out.push('\n');
    }
    out
}

/// A cell's text on one line: the record is the line.
fn one_line(s: &str) -> String {
    let s = s.trim();
    if !s.contains(['\n', '\r', '\t', '\0']) {
        return s.to_string();
    }
    s.split(['\n', '\r', '\t', '\0'])
        .filter(|p| !p.trim().is_empty())
        .map(str::trim)
        .collect::<Vec<_>>()
        .join(" ")
}

fn column_letter(mut i: usize) -> String {
    let mut s = Vec::new();
    loop {
        s.push(b'A' + (i % 26) as u8);
        if i < 26 {
            break;
        }
        i = i / 26 - 1;
    }
    s.reverse();
    String::from_utf8_lossy(&s).into_owned()
}

fn cell(d: &Data) -> String {
    match d {
        // Dates are stored as day numbers: shown as a date, not 45943.5.
        Data::DateTime(dt) if dt.is_datetime() => {
            let (y, mo, d, h, mi, s, _) = dt.to_ymd_hms_milli();
            if (h, mi, s) == (0, 0, 0) {
                format!("{y:04}-{mo:02}-{d:02}")
            } else {
                format!("{y:04}-{mo:02}-{d:02} {h:02}:{mi:02}:{s:02}")
            }
        }
        Data::Error(_) | Data::Empty => String::new(),
        other => other.to_string(),
    }
}

pub fn sheets(bytes: &[u8], kind: Kind) -> Extracted {
    let rs = Cursor::new(bytes);
    let opened: Result<Sheets<_>, String> = match kind {
        Kind::Xls => calamine::open_workbook_from_rs(rs)
            .map(Sheets::Xls)
            .map_err(|e: calamine::XlsError| e.to_string()),
        Kind::Xlsb => calamine::open_workbook_from_rs(rs)
            .map(Sheets::Xlsb)
            .map_err(|e: calamine::XlsbError| e.to_string()),
        Kind::Ods => calamine::open_workbook_from_rs(rs)
            .map(Sheets::Ods)
            .map_err(|e: calamine::OdsError| e.to_string()),
        _ => calamine::open_workbook_from_rs(rs)
            .map(Sheets::Xlsx)
            .map_err(|e: calamine::XlsxError| e.to_string()),
    };
    let mut book = opened.map_err(|e| {
        let reason = if e.contains("assword") || e.contains("ncrypt") {
            Reason::Encrypted
        } else {
            Reason::Unparsable
        };
        Failure::new(reason, format!("spreadsheet: {e}"))
    })?;
    let mut parts = Vec::new();
    for name in book.sheet_names() {
        let range = book
            .worksheet_range(&name)
            .map_err(|e| Failure::new(Reason::Unparsable, format!("sheet {name:?}: {e}")))?;
        let text = records(range.rows().map(|r| r.iter().map(cell).collect()));
        if !text.trim().is_empty() {
            parts.push(Part {
                label: Some(name),
                page: None,
                text,
                records: true,
            });
        }
    }
    if parts.is_empty() {
        return Err(Failure::new(Reason::Empty, "no sheet has a value"));
    }
    Ok(parts)
}

/// A CSV or TSV file (already read as UTF-8) as records. Rows may have
/// fewer or more fields than the header; quoted fields may hold newlines.
pub fn csv_parts(text: &str, delimiter: u8) -> Extracted {
    let mut reader = csv::ReaderBuilder::new()
        .delimiter(delimiter)
        .has_headers(false)
        .flexible(true)
        .from_reader(text.as_bytes());
    let mut rows = Vec::new();
    for (i, rec) in reader.records().enumerate() {
        let rec = rec.map_err(|e| {
            let line = e.position().map_or(i as u64 + 1, |p| p.line());
            Failure::new(Reason::Unparsable, format!("CSV, line {line}: {e}"))
        })?;
        rows.push(rec.iter().map(str::to_string).collect::<Vec<_>>());
    }
    let text = records(rows.into_iter());
    if text.trim().is_empty() {
        return Err(Failure::new(Reason::Empty, "no row has a value"));
    }
    Ok(vec![Part {
        label: None,
        page: None,
        text,
        records: true,
    }])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_become_header_value_records() {
        let parts = csv_parts(
            "id,name,notes\n1,Ada,\"likes, commas\nand lines\"\n\n2,,short\n3,Bob,x,extra\n",
            b',',
        )
        .unwrap();
        assert_eq!(
            parts[0].text,
            "id: 1; name: Ada; notes: likes, commas and lines\nid: 2; notes: short\nid: 3; name: Bob; notes: x; D: extra\n"
        );
        assert!(parts[0].records);
    }

    #[test]
    fn columns_without_a_header_are_named_by_letter() {
        assert_eq!(column_letter(0), "A");
        assert_eq!(column_letter(27), "AB");
    }
}
