//! HTML helpers: the page layout (maud templates: every interpolated value is escaped unless it is
//! marked `PreEscaped` where it is written), the words the pages use for ids (flags, decisions), money
//! written one way, and a URL-encoding helper for links.

use crate::domain::FlagKind;
use maud::{html, Markup, PreEscaped, DOCTYPE};
use rust_decimal::Decimal;
use std::fmt::{self, Write};

/// Escapes text for HTML element content and quoted attribute values (for pages not yet written with
/// templates, such as the sign-in page).
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

/// Money, one way everywhere: `$1,234.50`, `−$658.13` (a true minus sign), always two decimals.
pub fn money(d: Decimal) -> String {
    let cents = d.round_dp_with_strategy(2, rust_decimal::RoundingStrategy::MidpointAwayFromZero);
    let neg = cents.is_sign_negative() && !cents.is_zero();
    let abs = cents.abs();
    let whole = abs.trunc();
    let frac = ((abs - whole) * Decimal::from(100)).round();
    let digits = whole.to_string();
    let mut grouped = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            grouped.push(',');
        }
        grouped.push(c);
    }
    format!("{}${grouped}.{frac:0>2}", if neg { "−" } else { "" })
}

/// A flag as the clerk says it: "inactive usage", not `inactive_usage`.
pub fn flag_label(kind: FlagKind) -> String {
    kind.as_str().replace('_', " ")
}

/// A flag name as stored (`inactive_usage`) in the clerk's words; unknown names are shown as they are.
pub fn flag_text(name: &str) -> String {
    name.parse::<FlagKind>()
        .map(flag_label)
        .unwrap_or_else(|_| name.replace('_', " "))
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
    pub fn csrf_field(&self) -> Markup {
        html! { input type="hidden" name="csrf" value=(self.csrf); }
    }
}

/// The pages' one stylesheet: fits a 390 px phone (tables scroll inside their own box, forms wrap),
/// and prints on Letter paper without the navigation.
/// Inline, allowed by its hash in the Content-Security-Policy (`serve::security`).
pub const STYLE: &str = "*{box-sizing:border-box}body{font-family:system-ui,sans-serif;margin:0;color:#1b1b1b}\
header{background:#0b3d5c;color:#fff;padding:.5rem 1rem;display:flex;gap:.5rem 1rem;align-items:center;flex-wrap:wrap}\
header a{color:#fff}header form{margin-left:auto}main{padding:.75rem;max-width:80rem}\
h1{font-size:1.4rem;overflow-wrap:anywhere}h2{font-size:1.15rem}\
.scroll{overflow-x:auto;max-width:100%}\
table{border-collapse:collapse;margin:.5rem 0}th,td{border:1px solid #bbb;padding:.25rem .5rem;text-align:left;vertical-align:top}\
tr.sel{outline:3px solid #e07b00}a:focus,button:focus,input:focus,select:focus,textarea:focus{outline:3px solid #e07b00}\
.num{text-align:right;font-variant-numeric:tabular-nums}.flag{background:#fde2e1;padding:0 .3rem;border-radius:.2rem;white-space:nowrap}\
.ok{background:#e3f6e3;padding:.5rem}.err{background:#fde2e1;padding:.5rem}.field-err{color:#8b1a1a;font-weight:600;display:block}\
fieldset{margin:.5rem 0;min-width:0}input,select,button{max-width:100%;font-size:1rem}\
label{display:inline-block;margin:.2rem .5rem .2rem 0}.muted{color:#555}\
.pager a,.pager strong{margin-right:.5rem}.desk{display:flex;flex-wrap:wrap;gap:1rem}.desk>*{flex:1 1 22rem;min-width:0}\
svg{max-width:100%;height:auto}.nav-read{display:flex;gap:1rem;flex-wrap:wrap}\
.sheet{border:1px dashed #888;padding:1rem;margin:1rem 0;max-width:7.5in}.sheet h2{margin-top:0}\
@media (max-width:40rem){main{padding:.5rem}td,th{padding:.2rem .3rem}\
table.cards,table.cards tbody,table.cards tr,table.cards td,table.cards th,table.cards caption{display:block;width:100%}\
table.cards thead{display:none}table.cards tr{border-bottom:2px solid #888;margin-bottom:.4rem}\
table.cards td,table.cards th{border:none;overflow-wrap:anywhere}td[data-label]::before{content:attr(data-label) \": \";font-weight:600}\
label{display:block}input:not([type=checkbox]):not([type=hidden]),select{width:100%}}\
@media print{@page{size:letter;margin:.5in}header,.noprint,nav,form{display:none!important}main{padding:0;max-width:none}\
body{font-size:11pt}.sheet{border:none;page-break-after:always;break-after:page;margin:0;max-width:none}\
table{width:100%}a{color:inherit;text-decoration:none}}";

/// A full page: header with navigation, the body, and the viewer.
pub fn page(title: &str, viewer: &Viewer, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · meter-gateway" }
                style { (PreEscaped(STYLE)) }
            }
            body {
                header {
                    strong { "meter-gateway" }
                    nav {
                        a href="/review" { "Exceptions" } " · "
                        a href="/review/orders" { "Field orders" } " · "
                        a href="/review/paperwork" { "Paperwork" } " · "
                        a href="/review/reports" { "Reports" } " · "
                        a href="/review/handhelds" { "Handhelds" } " · "
                        a href="/review/codes" { "Message codes" }
                    }
                    form method="post" action="/logout" {
                        (viewer.csrf_field())
                        span { (viewer.name) } " "
                        button type="submit" { "Sign out" }
                    }
                }
                main {
                    h1 { (title) }
                    (body)
                }
            }
        }
    }
}

/// A notice at the top of a page, from the `?done=` / `?error=` a redirect carried.
pub fn notice(done: Option<&str>, error: Option<&str>) -> Markup {
    html! {
        @if let Some(d) = done.filter(|d| !d.is_empty()) {
            p.ok role="status" { (d) }
        }
        @if let Some(e) = error.filter(|e| !e.is_empty()) {
            p.err role="alert" { (e) }
        }
    }
}

/// A form the server refused: which form, which field, the message, and what was typed (shown again
/// in the form, the message beside the field).
#[derive(Debug, Clone, Default)]
pub struct FormError {
    pub form: String,
    pub field: String,
    pub message: String,
    pub values: std::collections::HashMap<String, String>,
}

impl FormError {
    /// What was typed into `name` of `form`, if this error is that form's.
    pub fn value(&self, form: &str, name: &str) -> Option<&str> {
        (self.form == form)
            .then(|| self.values.get(name).map(String::as_str))
            .flatten()
    }

    /// The message beside `name` of `form` (the form's first field when the error names none).
    pub fn beside(&self, form: &str, name: &str) -> Markup {
        html! {
            @if self.form == form && self.field == name {
                span.field-err id={ "err-" (form) "-" (name) } { (self.message) }
            }
        }
    }
}

/// The value to show in `name` of `form`: what was typed when the form was refused, else `default`.
pub fn typed<'a>(err: Option<&'a FormError>, form: &str, name: &str, default: &'a str) -> &'a str {
    err.and_then(|e| e.value(form, name)).unwrap_or(default)
}

/// The message beside a field, when the refused form is this one.
pub fn beside(err: Option<&FormError>, form: &str, name: &str) -> Markup {
    match err {
        Some(e) => e.beside(form, name),
        None => html! {},
    }
}

/// A page for a browser that asked for something that failed (the API keeps answering JSON).
pub fn error_page(status: u16, message: &str) -> Markup {
    let title = match status {
        400 => "That was refused",
        401 | 403 => "Not allowed",
        404 => "Not found",
        413 => "Too large",
        429 => "Too many attempts",
        _ => "Something went wrong",
    };
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · meter-gateway" }
                style { (PreEscaped(STYLE)) }
            }
            body {
                header { strong { "meter-gateway" } nav { a href="/review" { "Exceptions" } } }
                main {
                    h1 { (title) }
                    p.err role="alert" { (message) }
                    p { a href="/review" { "Back to the exceptions" } }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;

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

    #[test]
    fn money_is_written_one_way() {
        let d = |s: &str| Decimal::from_str(s).unwrap();
        assert_eq!(money(d("-658.13")), "−$658.13");
        assert_eq!(money(d("81732.905")), "$81,732.91");
        assert_eq!(money(d("5")), "$5.00");
        assert_eq!(money(d("-0.001")), "$0.00");
        assert_eq!(money(d("1234567.5")), "$1,234,567.50");
    }

    #[test]
    fn templates_escape_what_they_interpolate() {
        let v = Viewer {
            name: "<b>ann</b>".into(),
            admin: false,
            csrf: "\"x".into(),
        };
        let p = page("O'Brien <script>", &v, html! { p { ("<i>") } }).into_string();
        assert!(p.contains("O&#39;Brien &lt;script&gt;") || p.contains("O'Brien &lt;script&gt;"));
        assert!(p.contains("&lt;b&gt;ann&lt;/b&gt;"));
        assert!(p.contains("value=\"&quot;x\""));
        assert!(p.contains("&lt;i&gt;") && !p.contains("<i>"));
        assert_eq!(flag_text("inactive_usage"), "inactive usage");
    }
}
