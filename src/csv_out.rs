//! CSV the gateway writes for people: every cell goes through [`neutralise`], so a spreadsheet that
//! opens the file never takes a cell for a formula (`=HYPERLINK(...)` typed as a reader id on a
//! handheld, `@SUM(...)` in a note).
//!
//! **The rule.** A cell is written with a `'` in front when it begins with `=`, `+`, `-`, `@`, a tab
//! or a carriage return and is not a plain decimal number (`-12`, `-0.50`: negative amounts and
//! readings stay numbers), or when it begins with `'` and what follows would itself be written with a
//! `'` in front. [`restore`] takes exactly that `'` away again, so `restore(neutralise(s)) == s` for
//! every `s`: the CIS import reads back what `export` wrote (a meter id `-A7` is exported as `'-A7` and
//! imported as `-A7`; `'=x` is exported as `''=x`).
//!
//! Files written through [`Writer`]: the CIS exports (`cis::export`), the reads listing
//! (`meter-gateway reads --format csv`), the clerk's worklist CSV, the reports' CSVs, the refused
//! reads of the Handhelds page and the billing
//! batch as CSV (people open it to check a run; the billing core should take the JSON lines, whose
//! strings are untouched and covered by the batch checksum).

use serde::Serialize;
use std::borrow::Cow;
use std::io::Write;

/// Whether `cell` is a plain decimal number: an optional `-`, digits, and an optional fraction.
fn is_plain_number(cell: &str) -> bool {
    let digits = cell.strip_prefix('-').unwrap_or(cell);
    let (whole, fraction) = match digits.split_once('.') {
        Some((w, f)) => (w, Some(f)),
        None => (digits, None),
    };
    !whole.is_empty()
        && whole.bytes().all(|b| b.is_ascii_digit())
        && fraction.is_none_or(|f| !f.is_empty() && f.bytes().all(|b| b.is_ascii_digit()))
}

/// Whether `cell` is written with a `'` in front (see the module's rule).
fn needs_mark(cell: &str) -> bool {
    match cell.chars().next() {
        Some('=' | '+' | '-' | '@' | '\t' | '\r') => !is_plain_number(cell),
        Some('\'') => needs_mark(&cell[1..]),
        _ => false,
    }
}

/// The cell as written to a CSV for people.
pub fn neutralise(cell: &str) -> Cow<'_, str> {
    if needs_mark(cell) {
        Cow::Owned(format!("'{cell}"))
    } else {
        Cow::Borrowed(cell)
    }
}

/// The value of a cell [`neutralise`] wrote (any other cell is returned as it is).
pub fn restore(cell: &str) -> &str {
    match cell.strip_prefix('\'') {
        Some(rest) if needs_mark(rest) => rest,
        _ => cell,
    }
}

/// A `csv::Writer` whose every cell is [`neutralise`]d.
pub struct Writer<W: Write> {
    out: csv::Writer<W>,
    /// Whether [`Writer::serialize`] wrote its header row: each row is serialized on its own first
    /// (with the header the first time), read back as cells, and neutralised on its way to `out`.
    header_written: bool,
}

impl<W: Write> Writer<W> {
    pub fn from_writer(out: W) -> Self {
        Writer {
            out: csv::Writer::from_writer(out),
            header_written: false,
        }
    }

    /// Writes one record, each cell neutralised.
    pub fn write_record<I, T>(&mut self, record: I) -> csv::Result<()>
    where
        I: IntoIterator<Item = T>,
        T: AsRef<str>,
    {
        let cells: Vec<String> = record
            .into_iter()
            .map(|c| neutralise(c.as_ref()).into_owned())
            .collect();
        self.out.write_record(&cells)
    }

    /// Serializes one row (a struct: its field names make the header row before the first row), each
    /// cell neutralised.
    pub fn serialize<S: Serialize>(&mut self, row: S) -> csv::Result<()> {
        let mut staging = csv::WriterBuilder::new()
            .has_headers(!self.header_written)
            .buffer_capacity(512)
            .from_writer(Vec::new());
        staging.serialize(row)?;
        let bytes = staging
            .into_inner()
            .map_err(|e| csv::Error::from(std::io::Error::other(e.to_string())))?;
        self.header_written = true;
        let mut reader = csv::ReaderBuilder::new()
            .has_headers(false)
            .flexible(true)
            .from_reader(bytes.as_slice());
        for record in reader.records() {
            self.write_record(record?.iter())?;
        }
        Ok(())
    }

    pub fn flush(&mut self) -> std::io::Result<()> {
        self.out.flush()
    }

    /// Flushes and returns the underlying writer.
    pub fn into_inner(self) -> std::io::Result<W> {
        self.out
            .into_inner()
            .map_err(|e| std::io::Error::other(e.error().to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formula_cells_are_marked_and_numbers_are_not() {
        for (cell, written) in [
            ("=1+1", "'=1+1"),
            (
                "=HYPERLINK(\"http://x\",\"y\")",
                "'=HYPERLINK(\"http://x\",\"y\")",
            ),
            ("+1-2", "'+1-2"),
            ("+5", "'+5"),
            ("-A7", "'-A7"),
            ("-2+3", "'-2+3"),
            ("@SUM(A1)", "'@SUM(A1)"),
            ("\tx", "'\tx"),
            ("\rx", "'\rx"),
            ("-", "'-"),
            ("-.5", "'-.5"),
            ("-1.", "'-1."),
            ("'=x", "''=x"),
            ("''-y", "'''-y"),
            ("-12", "-12"),
            ("-0.50", "-0.50"),
            ("12.5", "12.5"),
            ("M-1001", "M-1001"),
            ("O'Brien", "O'Brien"),
            ("'quoted'", "'quoted'"),
            ("", ""),
            ("a=b", "a=b"),
        ] {
            assert_eq!(neutralise(cell), written, "{cell:?}");
        }
    }

    #[test]
    fn restore_undoes_neutralise_for_every_cell() {
        let samples = [
            "=1+1", "-A7", "-12", "'=x", "''=x", "'''", "'", "''", "'-", "'-12", "@", "+", "\t",
            "x", "", "'abc", "-0.5", "'\r",
        ];
        for s in samples {
            assert_eq!(restore(&neutralise(s)), s, "{s:?}");
        }
        // Every string of up to three characters from the characters that matter.
        let alphabet = ['=', '+', '-', '@', '\t', '\r', '\'', '1', '.', 'a'];
        let mut all = vec![String::new()];
        for _ in 0..3 {
            let longer: Vec<String> = all
                .iter()
                .flat_map(|s| alphabet.iter().map(move |c| format!("{s}{c}")))
                .collect();
            all.extend(longer);
        }
        all.sort();
        all.dedup();
        for s in &all {
            let written = neutralise(s);
            assert_eq!(restore(&written), s, "{s:?} written as {written:?}");
            assert!(
                !matches!(written.chars().next(), Some('=' | '+' | '@' | '\t' | '\r'))
                    && (!written.starts_with('-') || is_plain_number(&written)),
                "{s:?} written as {written:?}"
            );
        }
    }

    #[derive(Serialize)]
    struct Row<'a> {
        reader: &'a str,
        amount: &'a str,
        note: Option<&'a str>,
    }

    #[test]
    fn serialized_rows_get_their_header_once_and_every_cell_neutralised() {
        let mut w = Writer::from_writer(Vec::new());
        w.serialize(Row {
            reader: "=1+1",
            amount: "-3.20",
            note: Some("a, \"b\"\nc"),
        })
        .unwrap();
        w.serialize(Row {
            reader: "@x",
            amount: "4",
            note: None,
        })
        .unwrap();
        w.write_record(["-A", "ok", "-1"]).unwrap();
        let text = String::from_utf8(w.into_inner().unwrap()).unwrap();
        assert_eq!(
            text,
            "reader,amount,note\n'=1+1,-3.20,\"a, \"\"b\"\"\nc\"\n'@x,4,\n'-A,ok,-1\n"
        );
    }
}
