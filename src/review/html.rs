//! HTML helpers: the one escaping function every value goes through, and the page layout.

use std::fmt::{self, Write};

/// Escapes text for HTML element content and quoted attribute values.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 8);
    let _ = write!(out, "{}", Esc(s));
    out
}

/// Displays its text HTML-escaped: `format!("<td>{}</td>", Esc(&name))`.
pub struct Esc<'a>(pub &'a str);

impl fmt::Display for Esc<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut last = 0;
        for (i, b) in self.0.bytes().enumerate() {
            let rep = match b {
                b'&' => "&amp;",
                b'<' => "&lt;",
                b'>' => "&gt;",
                b'"' => "&quot;",
                b'\'' => "&#39;",
                _ => continue,
            };
            f.write_str(&self.0[last..i])?;
            f.write_str(rep)?;
            last = i + 1;
        }
        f.write_str(&self.0[last..])
    }
}

/// Percent-encodes a value for a URL path segment or query value.
pub fn url(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// Who is looking at a page (for the header and the forms' CSRF token).
#[derive(Debug, Clone)]
pub struct Viewer {
    pub name: String,
    pub admin: bool,
    pub csrf: String,
}

impl Viewer {
    /// The hidden CSRF field every POST form carries.
    pub fn csrf_field(&self) -> String {
        format!(
            "<input type=\"hidden\" name=\"csrf\" value=\"{}\">",
            Esc(&self.csrf)
        )
    }
}

const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:0;color:#1b1b1b}\
header{background:#0b3d5c;color:#fff;padding:.5rem 1rem;display:flex;gap:1rem;align-items:center;flex-wrap:wrap}\
header a{color:#fff}header form{margin-left:auto}main{padding:1rem;max-width:80rem}\
table{border-collapse:collapse;margin:.5rem 0}th,td{border:1px solid #bbb;padding:.25rem .5rem;text-align:left;vertical-align:top}\
tr.sel{outline:3px solid #e07b00}a:focus,button:focus,input:focus,select:focus,textarea:focus{outline:3px solid #e07b00}\
.num{text-align:right;font-variant-numeric:tabular-nums}.flag{background:#fde2e1;padding:0 .3rem;border-radius:.2rem}\
.ok{background:#e3f6e3;padding:.5rem}.err{background:#fde2e1;padding:.5rem}fieldset{margin:.5rem 0}\
label{display:inline-block;margin:.2rem .5rem .2rem 0}.muted{color:#555}";

/// A full page: header with navigation, the body (already-escaped HTML), and the viewer.
pub fn page(title: &str, viewer: &Viewer, body: &str) -> String {
    let admin = if viewer.admin {
        "<a href=\"/review/codes\">Message codes</a>"
    } else {
        ""
    };
    format!(
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{t} · meter-gateway</title><style>{STYLE}</style></head><body>\
         <header><strong>meter-gateway</strong><nav><a href=\"/review\">Exceptions</a> · \
         <a href=\"/review/orders\">Field orders</a> · <a href=\"/review/reports\">Reports</a> {admin}</nav>\
         <form method=\"post\" action=\"/logout\">{csrf}<span>{who}</span> \
         <button type=\"submit\">Sign out</button></form></header>\
         <main><h1>{t}</h1>{body}</main></body></html>",
        t = Esc(title),
        csrf = viewer.csrf_field(),
        who = Esc(&viewer.name),
    )
}

/// A notice at the top of a page, from the `?done=` / `?error=` a redirect carried.
pub fn notice(done: Option<&str>, error: Option<&str>) -> String {
    let mut s = String::new();
    if let Some(d) = done.filter(|d| !d.is_empty()) {
        let _ = write!(s, "<p class=\"ok\" role=\"status\">{}</p>", Esc(d));
    }
    if let Some(e) = error.filter(|e| !e.is_empty()) {
        let _ = write!(s, "<p class=\"err\" role=\"alert\">{}</p>", Esc(e));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_markup_character_is_escaped() {
        assert_eq!(
            esc("<a href=\"x\">O'Brien & Co</a>"),
            "&lt;a href=&quot;x&quot;&gt;O&#39;Brien &amp; Co&lt;/a&gt;"
        );
        assert_eq!(esc("plain"), "plain");
        assert_eq!(esc("é<"), "é&lt;");
    }

    #[test]
    fn url_values_are_percent_encoded() {
        assert_eq!(url("R 01/&x"), "R%2001%2F%26x");
    }
}
