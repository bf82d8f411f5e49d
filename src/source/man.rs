//! Man pages (roff with the `man` or `mdoc` macros) as the text a reader
//! sees: section headings, paragraphs, option tags, with the typesetting
//! (font changes, spacing, macro definitions, conditionals) dropped. Not a
//! roff implementation: what man pages use, so that no `\fB` or `.SH`
//! reaches a paid endpoint, and an unknown request loses only itself.

/// Whether `text` is roff source of a man page (and not, say, a rotated
/// log named `app.log.1`).
pub fn looks_like_man(text: &str) -> bool {
    text.lines().take(200).any(|l| {
        let l = l.trim_start();
        [".TH", ".Dd", ".Dt", ".SH", ".Sh", ".so ", ".\\\"", "'\\\""]
            .iter()
            .any(|m| l.starts_with(m))
    })
}

/// The text of a man page; Err names the page a `.so` link points at when
/// that is all the file holds.
pub fn text(src: &str) -> Result<String, String> {
    let mut out = Out::default();
    let mut lines = src.lines();
    let mut link = None;
    let mut page_name = String::new();
    // The tag line after `.TP` is printed on a line of its own.
    let mut tag_next = false;
    while let Some(raw) = lines.next() {
        let line = raw.trim_end();
        let Some(req) = line.strip_prefix('.').or_else(|| line.strip_prefix('\'')) else {
            if tag_next {
                out.line(&inline(line));
                tag_next = false;
            } else {
                out.text(&inline(line));
            }
            continue;
        };
        let req = req.trim_start();
        let (name, rest) = req.split_once([' ', '\t']).unwrap_or((req, ""));
        // A `\"` comment ends a request line too (`.ig \" -*- nroff -*-`).
        let rest = rest.split("\\\"").next().unwrap_or(rest);
        let args = || words(rest);
        match name {
            "" => {}
            n if n.starts_with("\\\"") => {}
            // Macro, string and register definitions: to their end.
            "de" | "de1" | "am" | "ig" => {
                let end = if name == "ig" && !rest.trim().is_empty() {
                    format!(".{}", rest.trim())
                } else {
                    "..".to_string()
                };
                for l in lines.by_ref() {
                    if l.trim_end() == end {
                        break;
                    }
                }
            }
            "TH" | "Dt" => {
                let a = args();
                if let Some(title) = a.first() {
                    let section = a.get(1).map(String::as_str).unwrap_or_default();
                    out.heading(&format!("{title}({section})"));
                }
            }
            "SH" | "SS" | "Sh" | "Ss" => {
                let head = if rest.trim().is_empty() {
                    // The heading is the next line, which may be a font
                    // request itself (`.SS` then `.I OBJECT`).
                    match lines.next() {
                        Some(next) => match next.strip_prefix('.') {
                            Some(req) => {
                                let (_, a) = req.split_once([' ', '\t']).unwrap_or((req, ""));
                                words(a).join(" ")
                            }
                            None => inline(next),
                        },
                        None => String::new(),
                    }
                } else {
                    args().join(" ")
                };
                out.heading(&head);
            }
            "B" | "I" | "SM" | "SB" | "Nm" | "Ar" | "Cm" | "Em" | "Sy" | "Li" | "Pa" | "Ev"
            | "Va" | "Dv" | "Er" | "Ic" | "Ad" | "Ms" | "Nd" | "Dl" | "D1" | "Ql" | "Dq" | "Sq"
            | "Pq" | "Op" | "Oo" | "Fa" | "Fn" | "Fo" | "Ft" | "Vt" | "Lb" | "%A" | "%T" | "%B"
            | "%J" | "%D" => {
                let mut a = mdoc_words(rest);
                if name == "Nm" {
                    // A bare `.Nm` repeats the page's name.
                    match a.first() {
                        Some(n) if page_name.is_empty() => page_name = n.clone(),
                        None => a.push(page_name.clone()),
                        _ => {}
                    }
                }
                if name == "Nd" {
                    out.text(&format!("- {}", a.join(" ")));
                } else if rest.trim().is_empty() && matches!(name, "B" | "I" | "SM" | "SB") {
                    // The font applies to the next line, which is read as
                    // any line is (it may be a request: `.SM` then `.B X`).
                } else if name == "Dl" || name == "D1" {
                    out.line(&a.join(" "));
                } else if name == "Op" {
                    out.text(&format!("[{}]", a.join(" ")));
                } else if !a.is_empty() {
                    out.text(&a.join(" "));
                }
            }
            // Alternating fonts: the words run together.
            "BR" | "RB" | "BI" | "IB" | "IR" | "RI" => out.text(&args().concat()),
            "Fl" => out.text(&flags(rest)),
            "Xr" => {
                let a = args();
                match (a.first(), a.get(1)) {
                    (Some(page), Some(sec)) => {
                        let tail: String = a[2..].concat();
                        out.text(&format!("{page}({sec}){tail}"))
                    }
                    (Some(page), None) => out.text(page),
                    _ => {}
                }
            }
            "TP" => {
                out.paragraph();
                tag_next = true;
            }
            "IP" | "It" => {
                out.paragraph();
                let a = if name == "It" {
                    mdoc_words(rest)
                } else {
                    args()
                };
                let tag = a.first().map(String::as_str).unwrap_or_default();
                // Bullets and dashes as tags are typesetting, not text.
                if name == "It" {
                    out.line(&a.join(" "));
                } else if !tag.is_empty() && !matches!(tag, "\u{2022}" | "-" | "*" | "o") {
                    out.line(tag);
                }
            }
            "PP" | "LP" | "P" | "Pp" | "sp" | "HP" | "Bl" | "El" | "Bd" | "Ed" | "RS" | "RE"
            | "Sx" => out.paragraph(),
            "br" => out.line_break(),
            "nf" | "EX" => out.fill = false,
            "fi" | "EE" => {
                out.fill = true;
                out.line_break();
            }
            "so" => link = Some(rest.trim().to_string()),
            // Everything else (spacing, fonts, conditionals, registers,
            // hyphenation, page layout) is typesetting.
            _ => {}
        }
    }
    let text = out.finish();
    match (text.trim().is_empty(), link) {
        (true, Some(to)) => Err(format!(
            "a link to another man page (.so {to}), which is read on its own"
        )),
        _ => Ok(text),
    }
}

/// What is written so far: paragraphs of filled lines, or lines as they
/// are inside `.nf`.
struct Out {
    done: String,
    para: String,
    fill: bool,
}

impl Default for Out {
    fn default() -> Out {
        Out {
            done: String::new(),
            para: String::new(),
            fill: true,
        }
    }
}

impl Out {
    fn text(&mut self, s: &str) {
        let s = s.trim_end();
        if s.is_empty() {
            if !self.fill {
                self.line_break();
            } else {
                self.paragraph();
            }
            return;
        }
        if self.fill {
            if !self.para.is_empty() && !self.para.ends_with('\n') {
                self.para.push(' ');
            }
            self.para.push_str(s.trim_start());
        } else {
            self.line_break();
            self.para.push_str(s);
            self.para.push('\n');
        }
    }

    /// `s` on a line of its own.
    fn line(&mut self, s: &str) {
        self.line_break();
        self.text(s);
        self.line_break();
    }

    fn line_break(&mut self) {
        if !self.para.is_empty() && !self.para.ends_with('\n') {
            self.para.push('\n');
        }
    }

    fn paragraph(&mut self) {
        let p = self.para.trim_end();
        if !p.is_empty() {
            self.done.push_str(p);
            self.done.push_str("\n\n");
        }
        self.para.clear();
    }

    fn heading(&mut self, s: &str) {
        self.paragraph();
        if !s.trim().is_empty() {
            self.done.push_str(s.trim());
            self.done.push_str("\n\n");
        }
    }

    fn finish(mut self) -> String {
        self.paragraph();
        self.done.trim_end().to_string()
    }
}

/// A request's arguments: split at blanks, "quoted" ones kept whole, each
/// with its escapes resolved.
fn words(rest: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    let mut chars = rest.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' if quoted && chars.peek() == Some(&'"') => {
                cur.push('"');
                chars.next();
            }
            '"' => quoted = !quoted,
            '\\' => {
                cur.push('\\');
                if let Some(n) = chars.next() {
                    cur.push(n);
                }
            }
            ' ' | '\t' if !quoted => {
                if !cur.is_empty() {
                    out.push(std::mem::take(&mut cur));
                }
            }
            _ => cur.push(c),
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out.iter().map(|w| inline(w)).collect()
}

/// The mdoc macros that may be called inside another's arguments
/// (`.Op Fl v Ar file`): dropped, except `Fl`, which makes a flag.
const MDOC_CALLABLE: &[&str] = &[
    "Ar", "Cm", "Em", "Sy", "Li", "Pa", "Ev", "Va", "Dv", "Er", "Ic", "Ad", "Ms", "Nm", "Op", "Oo",
    "Oc", "Dq", "Sq", "Pq", "Ql", "Xr", "Fa", "Ns", "No", "Qo", "Qc", "Do", "Dc", "Bq", "Brq",
    "Aq",
];

fn mdoc_words(rest: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut flag = false;
    for w in words(rest) {
        if w == "Fl" {
            flag = true;
        } else if MDOC_CALLABLE.contains(&w.as_str()) {
            flag = false;
        } else if flag {
            out.push(format!("-{w}"));
            flag = false;
        } else {
            out.push(w);
        }
    }
    out
}

/// `.Fl v x` → "-v -x"; a bare `.Fl` is a lone dash.
fn flags(rest: &str) -> String {
    let w = mdoc_words(&format!("Fl {}", rest.trim()));
    if w.is_empty() {
        "-".into()
    } else {
        w.join(" ")
    }
}

/// A text line with its escapes resolved: fonts and sizes dropped, glyphs
/// by name made characters, a trailing `\"` comment cut.
pub fn inline(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut it = s.chars().peekable();
    while let Some(c) = it.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        let Some(e) = it.next() else { break };
        match e {
            '"' => break,
            '\\' | 'e' | 'E' => out.push('\\'),
            '-' => out.push('-'),
            ' ' | '~' | '0' => out.push(' '),
            't' => out.push('\t'),
            '&' | '|' | '^' | ':' | '%' | 'c' | ')' | '/' | ',' | '{' | '}' | 'a' | 'd' | 'u'
            | 'r' | 'p' | 'z' => {}
            '.' => out.push('.'),
            '\'' => out.push('\''),
            '`' => out.push('`'),
            // Font, size, register, motion, width: the argument is dropped.
            'f' | 'F' | 'n' | 'k' | 'g' | 'm' | 'M' | 'Y' | 'V' => {
                skip_name(&mut it);
            }
            's' => {
                if matches!(it.peek(), Some('+') | Some('-')) {
                    it.next();
                }
                if it.peek() == Some(&'(') {
                    it.next();
                    it.next();
                    it.next();
                } else if it.peek() == Some(&'[') {
                    skip_name(&mut it);
                } else {
                    while it.peek().is_some_and(|c| c.is_ascii_digit()) {
                        it.next();
                    }
                }
            }
            'h' | 'v' | 'w' | 'l' | 'L' | 'o' | 'b' | 'D' | 'X' | 'x' | 'N' | 'Z' | 'A' | 'B'
            | 'R' => {
                // A delimited argument: \w'text', \h'1n'.
                if let Some(d) = it.next() {
                    for c in it.by_ref() {
                        if c == d {
                            break;
                        }
                    }
                }
            }
            '(' => {
                let name: String = it.by_ref().take(2).collect();
                glyph(&name, &mut out);
            }
            '[' => {
                let name: String = it.by_ref().take_while(|c| *c != ']').collect();
                bracket_glyph(&name, &mut out);
            }
            '*' => {
                let name = match it.next() {
                    Some('(') => it.by_ref().take(2).collect(),
                    Some('[') => it.by_ref().take_while(|c| *c != ']').collect(),
                    Some(c) => c.to_string(),
                    None => String::new(),
                };
                out.push_str(string(&name));
            }
            other => out.push(other),
        }
    }
    out
}

/// Skips a one-character, `(xx` or `[name]` escape argument.
fn skip_name(it: &mut std::iter::Peekable<std::str::Chars>) {
    match it.next() {
        Some('(') => {
            it.next();
            it.next();
        }
        Some('[') => for _ in it.by_ref().take_while(|c| *c != ']') {},
        _ => {}
    }
}

/// Predefined strings man pages use (`\*(lq`, `\*R`).
fn string(name: &str) -> &'static str {
    match name {
        "lq" | "L\"" => "\u{201c}",
        "rq" | "R\"" => "\u{201d}",
        "R" | "rg" => "\u{ae}",
        "Tm" | "tm" => "\u{2122}",
        "aq" => "'",
        "dq" | "q" => "\"",
        _ => "",
    }
}

/// `\[name]`: a glyph name, or `u` and a code point (`\[u00E9]`).
fn bracket_glyph(name: &str, out: &mut String) {
    if let Some(hex) = name.strip_prefix('u')
        && let Ok(n) = u32::from_str_radix(hex.split('_').next().unwrap_or(hex), 16)
        && let Some(c) = char::from_u32(n)
    {
        out.push(c);
    } else {
        glyph(name, out);
    }
}

/// An accented letter by its groff name (`:a` ä, `'e` é, `oa` å, `,c`
/// ç): how pages in Swedish, German or French write their letters.
fn accented(name: &str) -> Option<char> {
    let mut c = name.chars();
    let (mark, letter) = (c.next()?, c.next()?);
    if c.next().is_some() {
        return None;
    }
    let (from, to) = match mark {
        ':' => ("aeiouyAEIOU", "äëïöüÿÄËÏÖÜ"),
        '\'' => ("aeiouyAEIOUYc", "áéíóúýÁÉÍÓÚÝć"),
        '`' => ("aeiouAEIOU", "àèìòùÀÈÌÒÙ"),
        '^' => ("aeiouAEIOU", "âêîôûÂÊÎÔÛ"),
        '~' => ("anoANO", "ãñõÃÑÕ"),
        ',' => ("cC", "çÇ"),
        'o' => ("aA", "åÅ"),
        'v' => ("sSzZ", "šŠžŽ"),
        '/' => ("oOl", "øØł"),
        _ => return None,
    };
    from.chars()
        .position(|l| l == letter)
        .and_then(|i| to.chars().nth(i))
}

/// Writes the glyph `name` names (unknown ones are dropped).
fn glyph(name: &str, out: &mut String) {
    match accented(name) {
        Some(c) => out.push(c),
        None => out.push_str(named(name)),
    }
}

/// Glyph names (groff_char(7)) that man pages use.
fn named(name: &str) -> &'static str {
    match name {
        "ss" => "ß",
        "ae" => "æ",
        "AE" => "Æ",
        "oe" => "œ",
        "OE" => "Œ",
        "r!" => "¡",
        "r?" => "¿",
        "Fo" => "«",
        "Fc" => "»",
        "Eu" | "eu" => "€",
        "Po" => "£",
        "ct" => "¢",
        "fi" => "fi",
        "fl" => "fl",
        "ff" => "ff",
        "Fi" => "ffi",
        "Fl" => "ffl",
        "ul" | "ru" => "_",
        "pc" => "·",
        "at" => "@",
        "sh" => "#",
        "Do" => "$",
        "12" => "½",
        "14" => "¼",
        "34" => "¾",
        "em" => "\u{2014}",
        "en" => "\u{2013}",
        "hy" | "mi" | "-" => "-",
        "aq" | "cq" | "oq" => "'",
        "dq" => "\"",
        "lq" => "\u{201c}",
        "rq" => "\u{201d}",
        "bu" => "\u{2022}",
        "co" => "\u{a9}",
        "rg" => "\u{ae}",
        "tm" => "\u{2122}",
        "de" => "\u{b0}",
        "mu" => "\u{d7}",
        "di" => "\u{f7}",
        "+-" => "\u{b1}",
        "<=" => "\u{2264}",
        ">=" => "\u{2265}",
        "!=" => "\u{2260}",
        "->" => "\u{2192}",
        "<-" => "\u{2190}",
        "ha" | "a^" => "^",
        "ti" | "a~" => "~",
        "rs" => "\\",
        "sl" => "/",
        "pl" => "+",
        "eq" => "=",
        "ba" | "or" => "|",
        "lB" => "[",
        "rB" => "]",
        "lC" => "{",
        "rC" => "}",
        "la" => "\u{27e8}",
        "ra" => "\u{27e9}",
        "sc" => "\u{a7}",
        "ps" => "\u{b6}",
        "dg" => "\u{2020}",
        _ => "",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PAGE: &str = r#".\" Copyright and a comment
.ig \" -*- nroff -*-
Licence text, ignored.
..
.de XX
.ft B
..
.TH LS 1 "2024-01-01" "GNU coreutils" "User Commands"
.SH NAME
ls \- list directory contents
.SH SYNOPSIS
.B ls
[\fIOPTION\fR]... [\fIFILE\fR]...
.SH DESCRIPTION
.PP
List information about the FILEs \(em the current directory by default.
Sort entries alphabetically if none of \fB\-cftuvSUX\fP is specified.
.TP
\fB\-a\fR, \fB\-\-all\fR
do not ignore entries starting with .
.IP \(bu 2
a bullet item
.nf
  line one
  line two
.fi
.SH "SEE ALSO"
.BR dir (1),
\*(lqquoted\*(rq and \[u00E9]t\[e'] \s-1SMALL\s0 \w'xx'done
.SS
.I OBJECT
tr\(:affa f\(oar \[:o]l, gar\(,con, stra\(sse
"#;

    #[test]
    fn a_man_page_reads_as_its_text() {
        assert!(looks_like_man(PAGE));
        let t = text(PAGE).unwrap();
        for want in [
            "LS(1)",
            "NAME\n\nls - list directory contents",
            "SYNOPSIS\n\nls [OPTION]... [FILE]...",
            "FILEs \u{2014} the current directory by default. Sort entries",
            "of -cftuvSUX is specified.",
            "-a, --all\ndo not ignore entries starting with .",
            "a bullet item",
            "  line one\n  line two",
            "SEE ALSO\n\ndir(1),",
            "\u{201c}quoted\u{201d} and \u{e9}t SMALL done",
            "OBJECT\n\ntr\u{e4}ffa f\u{e5}r \u{f6}l, gar\u{e7}on, stra\u{df}e",
        ] {
            assert!(t.contains(want), "{want:?} not in:\n{t}");
        }
        for gone in [
            "\\f",
            ".SH",
            ".TP",
            "ft B",
            "Copyright",
            "Licence",
            "\\(",
            "\\*",
        ] {
            assert!(!t.contains(gone), "{gone:?} left in:\n{t}");
        }
    }

    #[test]
    fn mdoc_pages_too() {
        let page = ".Dd January 1, 2024\n.Dt CAT 1\n.Os\n.Sh NAME\n.Nm cat\n.Nd concatenate files\n.Sh SYNOPSIS\n.Nm\n.Op Fl benstuv\n.Ar\n.Sh SEE ALSO\n.Xr head 1 ,\n.Xr tail 1\n";
        assert!(looks_like_man(page));
        let t = text(page).unwrap();
        for want in [
            "CAT(1)",
            "NAME\n\ncat - concatenate files",
            "-benstuv",
            "head(1), tail(1)",
        ] {
            assert!(t.contains(want), "{want:?} not in:\n{t}");
        }
    }

    #[test]
    fn a_link_page_names_its_target_and_a_log_is_not_a_man_page() {
        let e = text(".so man1/gzip.1\n").unwrap_err();
        assert!(e.contains("man1/gzip.1"), "{e}");
        assert!(!looks_like_man(
            "2024-01-01 12:00 started\n2024-01-01 12:01 .stopped\n"
        ));
    }
}
