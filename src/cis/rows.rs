//! The four CIS file formats: their columns, and how one CSV record becomes a domain value.
//!
//! Parsing here is per record and knows nothing of the database; checks against existing data
//! (unknown account, reading wider than the meter's dials...) are the importer's business.

use crate::domain::{
    Account, AccountStatus, HistoryRead, MessageCode, Meter, MeterStatus, ReadKind, Register, Unit,
};
use crate::store::{date_text, parse_date};
use chrono::NaiveDate;
use csv::ByteRecord;
use std::fmt;
use std::str::FromStr;

/// One of the CIS tables that can be imported and exported.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Table {
    Accounts,
    Meters,
    History,
    Codes,
}

impl Table {
    pub const ALL: [Table; 4] = [Table::Accounts, Table::Meters, Table::History, Table::Codes];

    pub fn as_str(self) -> &'static str {
        match self {
            Table::Accounts => "accounts",
            Table::Meters => "meters",
            Table::History => "history",
            Table::Codes => "codes",
        }
    }

    /// The file's columns in export order; `true` marks a column the header must have.
    pub fn columns(self) -> &'static [(&'static str, bool)] {
        match self {
            Table::Accounts => &[
                ("account_id", true),
                ("name", true),
                ("service_address", true),
                ("status", true),
                ("rate_class", true),
                ("route_id", true),
                ("sequence", true),
                ("apn", false),
                ("phone", false),
                // Not in the CIS format either: lets an export carry route names back in. Empty or
                // absent leaves an existing route's name alone (a new route is named after its id).
                ("route_name", false),
            ],
            Table::Meters => &[
                ("meter_id", true),
                ("account_id", true),
                ("status", true),
                ("dials", true),
                ("multiplier", true),
                ("unit", true),
                ("installed_on", false),
                ("removed_on", false),
            ],
            Table::History => &[
                ("account_id", true),
                ("meter_id", true),
                ("read_on", true),
                ("reading", true),
                ("kind", true),
            ],
            // `retired` is not in the CIS format but is exported, so that an export re-imports into
            // the same database; files without it import every code as live.
            Table::Codes => &[
                ("code", true),
                ("category", true),
                ("description", true),
                ("requires_follow_up", false),
                ("retired", false),
            ],
        }
    }
}

impl fmt::Display for Table {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A problem with one column of one record (or of the header).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FieldError {
    pub column: &'static str,
    pub reason: String,
}

/// Where each of a table's columns sits in the file (`None`: an optional column the file lacks).
#[derive(Debug, Clone)]
pub(crate) struct Layout {
    pub table: Table,
    pos: Vec<Option<usize>>,
}

impl Layout {
    /// Maps the header onto the table's columns. Names match case-insensitively, surrounding blanks and a
    /// UTF-8 byte order mark (spreadsheets write one) are ignored, and unknown columns are skipped.
    pub fn from_header(table: Table, header: &ByteRecord) -> Result<Layout, Vec<FieldError>> {
        let names: Vec<String> = header
            .iter()
            .enumerate()
            .map(|(i, raw)| {
                let s = String::from_utf8_lossy(raw);
                let s = if i == 0 {
                    s.trim_start_matches('\u{feff}')
                } else {
                    &s
                };
                s.trim().to_ascii_lowercase()
            })
            .collect();
        let mut errors = Vec::new();
        let mut pos = Vec::new();
        for &(col, required) in table.columns() {
            let found: Vec<usize> = (0..names.len()).filter(|&i| names[i] == col).collect();
            match found.as_slice() {
                [] if required => errors.push(FieldError {
                    column: col,
                    reason: "missing required column in the header".into(),
                }),
                [] => pos.push(None),
                [i] => pos.push(Some(*i)),
                _ => errors.push(FieldError {
                    column: col,
                    reason: format!("appears {} times in the header", found.len()),
                }),
            }
        }
        if errors.is_empty() {
            Ok(Layout { table, pos })
        } else {
            Err(errors)
        }
    }
}

/// Reads the fields of one record through a [`Layout`], collecting every bad column.
pub(crate) struct Fields<'r> {
    layout: &'r Layout,
    record: &'r ByteRecord,
    pub errors: Vec<FieldError>,
}

impl<'r> Fields<'r> {
    pub fn new(layout: &'r Layout, record: &'r ByteRecord) -> Self {
        Fields {
            layout,
            record,
            errors: Vec::new(),
        }
    }

    fn bad(&mut self, column: &'static str, reason: impl Into<String>) {
        self.errors.push(FieldError {
            column,
            reason: reason.into(),
        });
    }

    /// The trimmed text of column `i` of the table (empty if the column or the field is absent).
    fn raw(&mut self, i: usize) -> Option<&'r str> {
        let column = self.layout.table.columns()[i].0;
        let Some(p) = self.layout.pos[i] else {
            return Some("");
        };
        let bytes = self.record.get(p).unwrap_or(b"");
        match std::str::from_utf8(bytes) {
            // A cell `export` marked so that a spreadsheet shows it as text (`crate::csv_out`).
            Ok(s) => {
                let s = crate::csv_out::restore(s.trim());
                if let Err(e) = crate::text::check("", s) {
                    self.bad(column, e.to_string().trim_start().to_string());
                    return None;
                }
                Some(s)
            }
            Err(_) => {
                self.bad(column, "not valid UTF-8");
                None
            }
        }
    }

    fn name(&self, i: usize) -> &'static str {
        self.layout.table.columns()[i].0
    }

    /// Any text, possibly empty.
    fn text(&mut self, i: usize) -> Option<&'r str> {
        self.raw(i)
    }

    /// Text that must not be empty.
    fn required(&mut self, i: usize) -> Option<&'r str> {
        let s = self.raw(i)?;
        if s.is_empty() {
            let c = self.name(i);
            self.bad(c, "is empty");
            return None;
        }
        Some(s)
    }

    fn parsed<T>(&mut self, i: usize, what: &str) -> Option<T>
    where
        T: FromStr,
        T::Err: fmt::Display,
    {
        let s = self.required(i)?;
        match s.parse::<T>() {
            Ok(v) => Some(v),
            Err(e) => {
                let c = self.name(i);
                self.bad(c, format!("`{s}` is not {what}: {e}"));
                None
            }
        }
    }

    /// An unsigned decimal integer; no sign, no decimal point, no thousands separator.
    fn number<T: TryFrom<u64>>(&mut self, i: usize) -> Option<T> {
        let s = self.required(i)?;
        let c = self.name(i);
        if !s.bytes().all(|b| b.is_ascii_digit()) {
            self.bad(c, format!("`{s}` is not a whole number"));
            return None;
        }
        match s.parse::<u64>().ok().and_then(|v| T::try_from(v).ok()) {
            Some(v) => Some(v),
            None => {
                self.bad(c, format!("{s} is too large"));
                None
            }
        }
    }

    fn date(&mut self, i: usize) -> Option<NaiveDate> {
        let s = self.required(i)?;
        self.date_text(i, s)
    }

    fn date_text(&mut self, i: usize, s: &str) -> Option<NaiveDate> {
        match parse_date(s) {
            Ok(d) => Some(d),
            Err(_) => {
                let c = self.name(i);
                self.bad(c, format!("`{s}` is not an ISO 8601 date (YYYY-MM-DD)"));
                None
            }
        }
    }

    /// An optional date: empty means none. `Err(())` when the text is not a date.
    fn optional_date(&mut self, i: usize) -> Result<Option<NaiveDate>, ()> {
        let s = self.raw(i).ok_or(())?;
        if s.is_empty() {
            return Ok(None);
        }
        self.date_text(i, s).map(Some).ok_or(())
    }

    /// A yes/no flag as CIS exports spell it; empty means no.
    fn flag(&mut self, i: usize) -> Option<bool> {
        let s = self.raw(i)?;
        match s.to_ascii_lowercase().as_str() {
            "" | "0" | "n" | "no" | "f" | "false" => Some(false),
            "1" | "y" | "yes" | "t" | "true" => Some(true),
            _ => {
                let c = self.name(i);
                self.bad(
                    c,
                    format!("`{s}` is not a yes/no value (true/false, yes/no, 1/0)"),
                );
                None
            }
        }
    }

    fn done<T>(self, value: Option<T>) -> Result<T, Vec<FieldError>> {
        match value {
            Some(v) if self.errors.is_empty() => Ok(v),
            _ => Err(self.errors),
        }
    }
}

/// Writes the table's header row.
pub(crate) fn header(table: Table) -> Vec<&'static str> {
    table.columns().iter().map(|c| c.0).collect()
}

/// An accounts-file record: the account, and the route's name if the file gives one.
pub(crate) struct AccountRow {
    pub account: Account,
    pub route_name: Option<String>,
}

pub(crate) fn parse_account(mut f: Fields<'_>) -> Result<AccountRow, Vec<FieldError>> {
    let id = f.required(0);
    let name = f.text(1);
    let service_address = f.text(2);
    let status = f.parsed::<AccountStatus>(3, "an account status");
    let rate_class = f.required(4);
    let route_id = f.required(5);
    let sequence = f.number::<u32>(6);
    let apn = f.text(7);
    let phone = f.text(8);
    let route_name = f.text(9);
    let value = (|| {
        let account = Account {
            id: id?.to_string(),
            name: name?.to_string(),
            service_address: service_address?.to_string(),
            status: status?,
            // The tariff and the tolerances key on the lower-case class name.
            rate_class: rate_class?.to_lowercase(),
            route_id: route_id?.to_string(),
            sequence: sequence?,
            apn: apn?.to_string(),
            phone: phone?.to_string(),
        };
        let route_name = route_name?;
        Some(AccountRow {
            account,
            route_name: (!route_name.is_empty()).then(|| route_name.to_string()),
        })
    })();
    f.done(value)
}

pub(crate) fn account_record(a: &Account, route_name: &str) -> Vec<String> {
    vec![
        a.id.clone(),
        a.name.clone(),
        a.service_address.clone(),
        a.status.as_str().into(),
        a.rate_class.clone(),
        a.route_id.clone(),
        a.sequence.to_string(),
        a.apn.clone(),
        a.phone.clone(),
        route_name.to_string(),
    ]
}

pub(crate) fn parse_meter(mut f: Fields<'_>) -> Result<Meter, Vec<FieldError>> {
    let id = f.required(0);
    let account = f.text(1);
    let status = f.parsed::<MeterStatus>(2, "a meter status");
    let dials = f.number::<u8>(3);
    if let Some(d) = dials {
        if !(Register::MIN_DIALS..=Register::MAX_DIALS).contains(&d) {
            f.bad(
                "dials",
                format!(
                    "{d} dials is outside {}..={}",
                    Register::MIN_DIALS,
                    Register::MAX_DIALS
                ),
            );
        }
    }
    let multiplier = f.number::<u32>(4);
    if multiplier == Some(0) {
        f.bad("multiplier", "must be at least 1");
    }
    let unit = f.parsed::<Unit>(5, "a unit");
    let installed_on = f.optional_date(6);
    let removed_on = f.optional_date(7);
    if let (Ok(Some(i)), Ok(Some(r))) = (installed_on, removed_on) {
        if r < i {
            f.bad(
                "removed_on",
                format!("{r} is before the installation date {i}"),
            );
        }
    }
    let account_id = account.map(|a| (!a.is_empty()).then(|| a.to_string()));
    // A meter out of service may name the account it was last installed at (CIS exports often keep
    // it) when it has a removal date: it stays there, out of service, and history keeps the link.
    // Without a removal date such a meter would look set at the account.
    let removed = matches!(removed_on, Ok(Some(_)));
    match (status, &account_id) {
        (Some(MeterStatus::Active), Some(None)) => f.bad(
            "account_id",
            "is empty, but an active meter is set at an account",
        ),
        (Some(s @ (MeterStatus::Inventory | MeterStatus::Retired)), Some(Some(a))) if !removed => f
            .bad(
                "account_id",
                format!(
                    "a meter in status {s} with no removal date is at no account: leave account_id \
                     empty, or give removed_on if `{a}` is where it was last installed"
                ),
            ),
        _ => {}
    }
    let value = (|| {
        Some(Meter {
            id: id?.to_string(),
            account_id: account_id?,
            status: status?,
            register: Register {
                dials: dials?,
                multiplier: multiplier?,
                unit: unit?,
            },
            installed_on: installed_on.ok()?,
            removed_on: removed_on.ok()?,
        })
    })();
    f.done(value)
}

pub(crate) fn meter_record(m: &Meter) -> Vec<String> {
    vec![
        m.id.clone(),
        m.account_id.clone().unwrap_or_default(),
        m.status.as_str().into(),
        m.register.dials.to_string(),
        m.register.multiplier.to_string(),
        m.register.unit.as_str().into(),
        m.installed_on.map(date_text).unwrap_or_default(),
        m.removed_on.map(date_text).unwrap_or_default(),
    ]
}

pub(crate) fn parse_history(mut f: Fields<'_>) -> Result<HistoryRead, Vec<FieldError>> {
    let account_id = f.required(0);
    let meter_id = f.required(1);
    let read_on = f.date(2);
    let reading = f.number::<u64>(3);
    let kind = f.parsed::<ReadKind>(4, "a read kind");
    let value = (|| {
        Some(HistoryRead {
            account_id: account_id?.to_string(),
            meter_id: meter_id?.to_string(),
            read_on: read_on?,
            reading: reading?,
            kind: kind?,
        })
    })();
    f.done(value)
}

pub(crate) fn history_record(h: &HistoryRead) -> Vec<String> {
    vec![
        h.account_id.clone(),
        h.meter_id.clone(),
        date_text(h.read_on),
        h.reading.to_string(),
        h.kind.as_str().into(),
    ]
}

pub(crate) fn parse_code(mut f: Fields<'_>) -> Result<MessageCode, Vec<FieldError>> {
    let code = f.required(0);
    let category = f.required(1);
    let description = f.text(2);
    let requires_follow_up = f.flag(3);
    let retired = f.flag(4);
    let value = (|| {
        Some(MessageCode {
            code: code?.to_string(),
            category: category?.to_lowercase(),
            description: description?.to_string(),
            requires_follow_up: requires_follow_up?,
            retired: retired?,
        })
    })();
    f.done(value)
}

pub(crate) fn code_record(c: &MessageCode) -> Vec<String> {
    let flag = |b: bool| if b { "true" } else { "false" }.to_string();
    vec![
        c.code.clone(),
        c.category.clone(),
        c.description.clone(),
        flag(c.requires_follow_up),
        flag(c.retired),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layout(table: Table, header: &[&str]) -> Layout {
        Layout::from_header(table, &ByteRecord::from(header.to_vec())).unwrap()
    }

    #[test]
    fn header_names_match_in_any_order_and_case_and_extra_columns_are_skipped() {
        let l = layout(
            Table::History,
            &[
                "\u{feff}Kind",
                "note",
                " READING ",
                "read_on",
                "meter_id",
                "account_id",
            ],
        );
        let rec = ByteRecord::from(vec!["Actual", "x", "0042", "2026-01-31", "M1", "A1"]);
        let h = parse_history(Fields::new(&l, &rec)).unwrap();
        assert_eq!(h.reading, 42);
        assert_eq!(h.kind, ReadKind::Actual);
    }

    #[test]
    fn a_missing_required_column_is_named_and_an_optional_one_is_not() {
        let errs = Layout::from_header(
            Table::Accounts,
            &ByteRecord::from(vec!["account_id", "name"]),
        )
        .unwrap_err();
        let cols: Vec<_> = errs.iter().map(|e| e.column).collect();
        assert_eq!(
            cols,
            [
                "service_address",
                "status",
                "rate_class",
                "route_id",
                "sequence"
            ]
        );
    }

    #[test]
    fn every_bad_column_of_a_record_is_reported() {
        let l = layout(
            Table::Meters,
            &[
                "meter_id",
                "account_id",
                "status",
                "dials",
                "multiplier",
                "unit",
                "installed_on",
            ],
        );
        let rec = ByteRecord::from(vec![
            "M1",
            "A1",
            "broken",
            "13",
            "0",
            "litres",
            "2026-02-30",
        ]);
        let errs = parse_meter(Fields::new(&l, &rec)).unwrap_err();
        let cols: Vec<_> = errs.iter().map(|e| e.column).collect();
        assert_eq!(
            cols,
            ["status", "dials", "multiplier", "unit", "installed_on"]
        );
    }

    #[test]
    fn numbers_refuse_signs_decimals_and_overflow() {
        let l = layout(
            Table::History,
            &["account_id", "meter_id", "read_on", "reading", "kind"],
        );
        for bad in ["-5", "1.5", "1,000", "99999999999999999999999"] {
            let rec = ByteRecord::from(vec!["A1", "M1", "2026-01-31", bad, "actual"]);
            let errs = parse_history(Fields::new(&l, &rec)).unwrap_err();
            assert_eq!(errs[0].column, "reading", "{bad}");
        }
    }

    #[test]
    fn an_inventory_meter_names_an_account_only_as_where_it_was_removed_from() {
        let l = layout(
            Table::Meters,
            &[
                "meter_id",
                "account_id",
                "status",
                "dials",
                "multiplier",
                "unit",
            ],
        );
        let rec = ByteRecord::from(vec!["M1", "A1", "inventory", "4", "1", "hcf"]);
        let errs = parse_meter(Fields::new(&l, &rec)).unwrap_err();
        assert_eq!(errs[0].column, "account_id");
        let rec = ByteRecord::from(vec!["M1", "", "active", "4", "1", "hcf"]);
        let errs = parse_meter(Fields::new(&l, &rec)).unwrap_err();
        assert_eq!(errs[0].column, "account_id");
        let rec = ByteRecord::from(vec!["M1", "", "inventory", "4", "1", "hcf"]);
        assert_eq!(parse_meter(Fields::new(&l, &rec)).unwrap().account_id, None);
        // With its removal date, the account is where it was last installed.
        let l = layout(
            Table::Meters,
            &[
                "meter_id",
                "account_id",
                "status",
                "dials",
                "multiplier",
                "unit",
                "installed_on",
                "removed_on",
            ],
        );
        for status in ["inventory", "retired"] {
            let rec = ByteRecord::from(vec![
                "M1",
                "A1",
                status,
                "4",
                "1",
                "hcf",
                "2010-01-04",
                "2024-06-03",
            ]);
            let m = parse_meter(Fields::new(&l, &rec)).unwrap();
            assert_eq!(m.account_id.as_deref(), Some("A1"), "{status}");
            assert_eq!(
                meter_record(&m),
                rec.iter()
                    .map(|b| String::from_utf8_lossy(b).into_owned())
                    .collect::<Vec<_>>()
            );
        }
        let rec = ByteRecord::from(vec![
            "M1",
            "A1",
            "retired",
            "4",
            "1",
            "hcf",
            "2010-01-04",
            "",
        ]);
        let errs = parse_meter(Fields::new(&l, &rec)).unwrap_err();
        assert_eq!(errs[0].column, "account_id");
    }

    #[test]
    fn records_written_for_export_parse_back_to_the_same_value() {
        let code = MessageCode {
            code: "LK".into(),
            category: "trouble".into(),
            description: "Leak, seen at the meter".into(),
            requires_follow_up: true,
            retired: false,
        };
        let l = layout(Table::Codes, &header(Table::Codes));
        let rec = ByteRecord::from(code_record(&code));
        assert_eq!(parse_code(Fields::new(&l, &rec)).unwrap(), code);
    }
}
