//! Text the gateway refuses wherever people or handhelds type it in: NUL, and the Unicode
//! bidirectional controls that reorder what a reader sees (a meter id that displays as `M-1001`
//! but sorts, matches and exports as something else; "Trojan Source").
//!
//! Every entry point calls [`check`] (or [`check_arg`]): the CIS import (`cis::rows`), a read's
//! fields wherever it comes from (`cycles::intake`: CSV, cradle, HTTP), the HTTP device API's own
//! fields, every form posted to the daemon (`serve::refuse_unsafe_forms`) and every command-line
//! argument (`cli::main`).

use std::fmt::Write as _;

/// A value refused for a character it contains.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field} contains {what} ({code}), which is not accepted in ids, names and notes")]
pub struct UnsafeText {
    pub field: String,
    /// "a NUL character" or "a bidirectional control character".
    pub what: &'static str,
    /// The character as `U+XXXX`.
    pub code: String,
}

/// Whether `c` is refused: NUL, and the bidirectional embeddings, overrides and isolates
/// (U+202A–U+202E, U+2066–U+2069).
pub fn is_refused(c: char) -> bool {
    matches!(c, '\0' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

/// Refuses `value` if it contains a refused character; `field` names it in the message.
pub fn check(field: &str, value: &str) -> Result<(), UnsafeText> {
    match value.chars().find(|&c| is_refused(c)) {
        None => Ok(()),
        Some(c) => Err(UnsafeText {
            field: field.to_string(),
            what: if c == '\0' {
                "a NUL character"
            } else {
                "a bidirectional control character"
            },
            code: format!("U+{:04X}", c as u32),
        }),
    }
}

/// `value` with refused characters written as `<U+202E>`: safe to put in a message or a log line.
pub fn shown(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        if is_refused(c) {
            let _ = write!(out, "<U+{:04X}>", c as u32);
        } else {
            out.push(c);
        }
    }
    out
}

/// Refuses a command-line argument (`position` counts from 1 after the program name).
pub fn check_arg(position: usize, arg: &std::ffi::OsStr) -> Result<(), UnsafeText> {
    check(&format!("argument {position}"), &arg.to_string_lossy())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nul_and_every_bidi_control_are_refused_and_named() {
        for c in [
            '\0', '\u{202A}', '\u{202B}', '\u{202C}', '\u{202D}', '\u{202E}',
        ]
        .into_iter()
        .chain(['\u{2066}', '\u{2067}', '\u{2068}', '\u{2069}'])
        {
            let value = format!("M-1{c}001");
            let e = check("meter_id", &value).unwrap_err();
            assert_eq!(e.code, format!("U+{:04X}", c as u32));
            assert!(e.to_string().starts_with("meter_id contains"), "{e}");
            assert!(!shown(&value).contains(c));
        }
        let nul = check("note", "a\0b").unwrap_err();
        assert!(
            nul.to_string().contains("a NUL character (U+0000)"),
            "{nul}"
        );
    }

    #[test]
    fn ordinary_text_in_any_script_passes() {
        for ok in [
            "M-1001",
            "O'Brien, Anne",
            "Calle 5 \u{2014} ñ",
            "שלום",
            "عربي",
            "tab\tand\nnewline",
            "",
        ] {
            assert_eq!(check("x", ok), Ok(()), "{ok}");
            assert_eq!(shown(ok), ok);
        }
    }
}
