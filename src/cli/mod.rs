//! The command line: the only module that knows clap. Parses arguments, maps them onto the plain
//! arguments of the modules below, and runs each command (a file per command group: `cycles`, `cis`,
//! `billing`, `serve`), reading the clock once, at this edge.

mod billing;
mod cis;
mod cycles;
mod serve;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// `println!` for a command's output: a closed pipe (`meter-gateway reads ... | head`) ends the
/// command with an error [`main`] treats as a quiet exit, where `println!` would panic.
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        writeln!(std::io::stdout().lock(), $($arg)*)?
    }};
}
pub(crate) use say;

/// Marks an error as the user's to fix (an argument, an input file, the settings file): exit code 2.
#[derive(Debug, thiserror::Error)]
#[error(transparent)]
pub struct BadInput(#[from] anyhow::Error);

/// `e` as the user's to fix.
pub(crate) fn bad_input(e: impl Into<anyhow::Error>) -> anyhow::Error {
    anyhow::Error::new(BadInput(e.into()))
}

/// How a command failed, which its exit status tells a script.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// Input the command refuses: a bad argument, an input or settings file it cannot take (a bad
    /// CSV row, a missing file), an id that names nothing, a step out of order (closing a cycle
    /// with open exceptions). Exit code 2, as clap's for a usage error.
    Input,
    /// Anything else: the database (unreadable, corrupt, full), the system. Exit code 1.
    Internal,
}

impl Failure {
    /// The process exit code.
    pub fn exit_code(self) -> u8 {
        match self {
            Failure::Input => 2,
            Failure::Internal => 1,
        }
    }

    /// Sorts a command's error by the first typed error in its chain: the modules' errors say
    /// whether the store failed (internal) or the input was refused.
    pub fn of(e: &anyhow::Error) -> Failure {
        use crate::store::StoreError;
        let store = |e: &StoreError| match e {
            StoreError::Invalid(_) => Failure::Input,
            _ => Failure::Internal,
        };
        let cycle = |e: &crate::cycles::CycleError| match e {
            crate::cycles::CycleError::Store(e) => store(e),
            _ => Failure::Input,
        };
        for cause in e.chain() {
            if cause.is::<BadInput>()
                || cause.is::<crate::config::ConfigError>()
                || cause.is::<crate::text::UnsafeText>()
            {
                return Failure::Input;
            }
            if let Some(e) = cause.downcast_ref::<crate::cis::ImportError>() {
                return match e {
                    crate::cis::ImportError::Store(e) => store(e),
                    _ => Failure::Input,
                };
            }
            if let Some(e) = cause.downcast_ref::<crate::cis::ExportError>() {
                return match e {
                    crate::cis::ExportError::Store(e) => store(e),
                    _ => Failure::Input,
                };
            }
            if let Some(e) = cause.downcast_ref::<crate::cycles::CycleError>() {
                return cycle(e);
            }
            if let Some(e) = cause.downcast_ref::<crate::billing::BillingError>() {
                return match e {
                    crate::billing::BillingError::Store(e) => store(e),
                    crate::billing::BillingError::Cycle(e) => cycle(e),
                    _ => Failure::Input,
                };
            }
            if let Some(e) = cause.downcast_ref::<StoreError>() {
                return store(e);
            }
        }
        Failure::Internal
    }
}

/// Whether a command failed only because whoever read its output went away (`| head`).
pub fn is_closed_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}
use crate::clock::DistrictClock;
use std::path::{Path, PathBuf};

#[derive(Debug, Parser)]
#[command(
    name = "meter-gateway",
    version,
    about = "Meter-reading gateway for water utilities: district data from the CIS, read cycles, \
             handheld sync, validation, the clerks' exception queue, the billing handoff",
    after_help = "Start with `meter-gateway demo`: a demo district served on http://127.0.0.1:8080 with \
                  simulated handhelds syncing into it."
)]
pub struct Cli {
    /// The district database, created if missing [default: meter-gateway.db; `demo` uses a temporary
    /// one unless given]
    #[arg(long, global = true, env = "METER_GATEWAY_DB")]
    pub db: Option<PathBuf>,
    /// Settings file (TOML): tolerances per rate class, daemon limits, tariff, leak policy; without
    /// one, every setting has its default (see examples/config.toml)
    #[arg(long, global = true, env = "METER_GATEWAY_CONFIG")]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Build a demo district and run the whole system on it: the daemon with a clerk and an admin
    /// login, and simulated handhelds syncing over serial and HTTP (until Ctrl-C).
    Demo(DemoArgs),
    /// Import a CIS file (CSV with a header row) in one transaction: any bad row, nothing written.
    Import {
        #[command(subcommand)]
        what: ImportWhat,
    },
    /// Export a table as the same CSV format the import reads.
    Export {
        #[command(subcommand)]
        what: ExportCommand,
    },
    /// Online, consistent copy of the database (safe while the daemon serves).
    Backup {
        /// Where to write the copy (a SQLite database file).
        file: PathBuf,
    },
    /// Read cycles: open, status, close, reopen.
    Cycle {
        #[command(subcommand)]
        action: CycleAction,
    },
    /// List a cycle's reads with their validation outcome.
    Reads(ReadsArgs),
    /// Write the route file (stops in walk order, previous read, hi/lo limits) for a cycle's route.
    Route(RouteArgs),
    /// Run the daemon: HTTP API and clerk pages, one listener per serial dock.
    Serve(ServeArgs),
    /// Handhelds: register (prints the device's secret once), list, retire, give a new token.
    Device {
        #[command(subcommand)]
        action: DeviceAction,
    },
    /// Assign a cycle's route to a handheld (it loads it at its next docking).
    Assign {
        /// The cycle id, e.g. 2026-11.
        #[arg(long)]
        cycle: String,
        /// The route id, e.g. R01.
        #[arg(long)]
        route: String,
        /// The handheld's device id, e.g. HH-01.
        #[arg(long)]
        device: String,
    },
    /// Office users: clerks, admins, billing: add, list, disable, enable, reset a password or token.
    User {
        #[command(subcommand)]
        action: UserAction,
    },
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address for the HTTP API and the clerk pages.
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub http: std::net::SocketAddr,
    /// A serial dock (cradle) to listen on; repeat for several.
    #[arg(long)]
    pub serial: Vec<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum DeviceAction {
    /// Register a handheld; prints its secret token once (only a hash is kept).
    Add {
        /// The handheld's id, e.g. HH-01 (the token starts with it).
        device_id: String,
    },
    /// List registered handhelds.
    List,
    /// Retire a handheld (lost, broken, stolen): its token is refused at once; its reads and history
    /// are kept. Audited.
    Retire {
        /// The handheld's id, e.g. HH-01.
        device_id: String,
        /// Why, for the audit log.
        #[arg(long, default_value = "")]
        reason: String,
    },
    /// Give a handheld a new token, printed once; the old one is refused from then on. Audited.
    Rotate {
        /// The handheld's id, e.g. HH-01.
        device_id: String,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum Role {
    /// Works the exception queue, field orders and reports (signs in with a password).
    Clerk,
    /// A clerk who also approves leak credits above the District's limit (signs in with a password).
    Admin,
    /// The billing run: fetches closed cycles' batches with an API token.
    Billing,
}

impl From<Role> for crate::domain::UserRole {
    fn from(r: Role) -> Self {
        match r {
            Role::Clerk => crate::domain::UserRole::Clerk,
            Role::Admin => crate::domain::UserRole::Admin,
            Role::Billing => crate::domain::UserRole::Billing,
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum UserAction {
    /// Create a user. Clerks and admins get a password (prompted, or --password-stdin); billing users
    /// get an API token, printed once.
    Add {
        /// The user's sign-in name.
        name: String,
        /// What the user may do.
        #[arg(long, value_enum)]
        role: Role,
        /// Read the password from standard input instead of prompting.
        #[arg(long)]
        password_stdin: bool,
    },
    /// List users and their roles.
    List,
    /// Disable a user: their sessions end and their API tokens are revoked at once. Audited.
    Disable {
        /// The user's sign-in name.
        name: String,
        /// Why, for the audit log.
        #[arg(long, default_value = "")]
        reason: String,
    },
    /// Enable a disabled user again (they sign in anew; a billing user needs `reset-password`).
    /// Audited.
    Enable {
        /// The user's sign-in name.
        name: String,
        /// Why, for the audit log.
        #[arg(long, default_value = "")]
        reason: String,
    },
    /// Give a clerk or admin a new password (prompted, or --password-stdin), or a billing user a new
    /// API token (printed once): their sessions end and old tokens are refused. Audited.
    ResetPassword {
        /// The user's sign-in name.
        name: String,
        /// Read the new password from standard input instead of prompting.
        #[arg(long)]
        password_stdin: bool,
    },
}

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Number of accounts in the demo district (routes of about 600).
    #[arg(long, default_value_t = 7000)]
    pub accounts: u32,
    /// Seed: the same seed builds the same district.
    #[arg(long, default_value_t = 2026)]
    pub seed: u64,
    /// Start only the daemon, no simulated handhelds.
    #[arg(long)]
    pub no_handhelds: bool,
}

impl From<DemoArgs> for crate::demo::show::Options {
    fn from(a: DemoArgs) -> Self {
        crate::demo::show::Options {
            accounts: a.accounts,
            seed: a.seed,
            no_handhelds: a.no_handhelds,
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum ImportWhat {
    /// Accounts (account_id, name, service_address, status, rate_class, route_id, sequence, apn, phone).
    Accounts {
        /// The CSV file.
        file: PathBuf,
    },
    /// Meters (meter_id, account_id, status, dials, multiplier, unit, installed_on, removed_on).
    Meters {
        /// The CSV file.
        file: PathBuf,
    },
    /// Read history (account_id, meter_id, read_on, reading, kind).
    History {
        /// The CSV file.
        file: PathBuf,
    },
    /// Message codes (code, category, description, requires_follow_up).
    Codes {
        /// The CSV file.
        file: PathBuf,
    },
    /// Field reads for a cycle (meter_id, read_at, reading, reader, codes, verified): validated on import.
    Reads {
        /// The open cycle the reads belong to, e.g. 2026-11.
        #[arg(long)]
        cycle: String,
        /// The CSV file.
        file: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
pub enum ExportCommand {
    /// Accounts, in the format `import accounts` reads.
    Accounts {
        /// The CSV file to write (replaced only once complete).
        file: PathBuf,
    },
    /// Meters, in the format `import meters` reads.
    Meters {
        /// The CSV file to write (replaced only once complete).
        file: PathBuf,
    },
    /// Read history, in the format `import history` reads.
    History {
        /// The CSV file to write (replaced only once complete).
        file: PathBuf,
    },
    /// Message codes, in the format `import codes` reads.
    Codes {
        /// The CSV file to write (replaced only once complete).
        file: PathBuf,
    },
    /// A closed cycle's billing batch (standard output when no FILE).
    Billing {
        /// The closed cycle, e.g. 2026-11.
        #[arg(long)]
        cycle: String,
        /// JSON lines (one record per account after a header) or CSV.
        #[arg(long, value_enum, default_value = "jsonl")]
        format: BillingFormat,
        /// Where to write the batch.
        file: Option<PathBuf>,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum BillingFormat {
    /// JSON lines: a header, then one record per account.
    Jsonl,
    /// CSV with a header row, one row per account and meter.
    Csv,
}

impl From<BillingFormat> for crate::billing::BatchFormat {
    fn from(f: BillingFormat) -> Self {
        match f {
            BillingFormat::Jsonl => crate::billing::BatchFormat::Jsonl,
            BillingFormat::Csv => crate::billing::BatchFormat::Csv,
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum CycleAction {
    /// Open a read cycle over some or all routes.
    Open {
        /// The cycle id, e.g. 2026-11.
        id: String,
        /// First day of the read window (YYYY-MM-DD).
        #[arg(long)]
        from: chrono::NaiveDate,
        /// Last day of the read window (YYYY-MM-DD).
        #[arg(long)]
        to: chrono::NaiveDate,
        /// Comma-separated route ids (default: every route).
        #[arg(long, value_delimiter = ',')]
        routes: Vec<String>,
    },
    /// Reads expected / in / flagged / resolved, per route.
    Status {
        /// The cycle id.
        id: String,
    },
    /// Estimate missing reads, refuse while exceptions are unresolved, freeze the cycle and write its
    /// billing batch.
    Close {
        /// The cycle id.
        id: String,
        /// Accounts to hold out of the batch explicitly.
        #[arg(long, num_args = 1..)]
        hold: Vec<String>,
    },
    /// Reopen a closed cycle for corrections (audited); closing again writes a new batch version.
    Reopen {
        /// The cycle id.
        id: String,
        /// Why, for the audit log.
        #[arg(long)]
        reason: String,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum ReadsFormat {
    /// CSV with a header row.
    Csv,
    /// A JSON array of objects.
    Json,
}

impl From<ReadsFormat> for crate::cycles::ReadsFormat {
    fn from(f: ReadsFormat) -> Self {
        match f {
            ReadsFormat::Csv => crate::cycles::ReadsFormat::Csv,
            ReadsFormat::Json => crate::cycles::ReadsFormat::Json,
        }
    }
}

#[derive(Debug, Args)]
pub struct ReadsArgs {
    /// The cycle id, e.g. 2026-11.
    #[arg(long)]
    pub cycle: String,
    /// One row per read, with its flags and explanation.
    #[arg(long, value_enum, default_value = "csv")]
    pub format: ReadsFormat,
    /// Write here instead of standard output.
    #[arg(long)]
    pub out: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct RouteArgs {
    /// The cycle id, e.g. 2026-11.
    #[arg(long)]
    pub cycle: String,
    /// The route id, e.g. R01.
    #[arg(long)]
    pub route: String,
    /// Write the route file (JSON) here instead of standard output.
    #[arg(long)]
    pub out: Option<PathBuf>,
}

/// Entry point used by `main.rs`.
pub fn main() -> anyhow::Result<()> {
    // Ids, names, reasons and paths alike: no NUL (the OS cannot pass one) and no bidirectional
    // control character, whatever the command (`crate::text`).
    for (position, arg) in std::env::args_os().enumerate().skip(1) {
        crate::text::check_arg(position, &arg).map_err(bad_input)?;
    }
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    run(cli)
}

pub fn run(cli: Cli) -> anyhow::Result<()> {
    let config = crate::config::Config::load(cli.config.as_deref()).map_err(bad_input)?;
    let Cli { db, command, .. } = cli;
    // The demo runs on a temporary database unless `--db` says where to keep it; every other command
    // works on `meter-gateway.db` in the working directory by default.
    let db = match command {
        Command::Demo(args) => return crate::demo::show::run(db.as_deref(), config, &args.into()),
        _ => db.unwrap_or_else(|| PathBuf::from("meter-gateway.db")),
    };
    dispatch(&db, command, config)
}

fn dispatch(db: &Path, command: Command, config: crate::config::Config) -> anyhow::Result<()> {
    use crate::cis::Table;
    // The CLI's clock, read at the edge, in the district's time zone (`[district] time_zone`).
    let clock = &DistrictClock::system(config.district.time_zone);
    match command {
        Command::Demo(args) => crate::demo::show::run(Some(db), config, &args.into()),
        Command::Import {
            what: ImportWhat::Reads { cycle, file },
        } => cycles::import_reads(db, &config, &cycle, &file, clock),
        Command::Import { what } => cis::import(db, &what),
        Command::Export { what } => match what {
            ExportCommand::Accounts { file } => cis::export(db, Table::Accounts, &file),
            ExportCommand::Meters { file } => cis::export(db, Table::Meters, &file),
            ExportCommand::History { file } => cis::export(db, Table::History, &file),
            ExportCommand::Codes { file } => cis::export(db, Table::Codes, &file),
            ExportCommand::Billing {
                cycle,
                format,
                file,
            } => billing::export(db, &cycle, format.into(), file.as_deref()),
        },
        Command::Backup { file } => backup(db, &file),
        Command::Cycle {
            action: CycleAction::Close { id, hold },
        } => billing::close(db, &config, &id, &hold, clock),
        Command::Cycle {
            action: CycleAction::Reopen { id, reason },
        } => billing::reopen(db, &id, &reason, clock),
        Command::Cycle { action } => cycles::cycle(db, &action, clock),
        Command::Reads(args) => cycles::reads(db, &args),
        Command::Route(args) => cycles::route(db, &config, &args),
        Command::Serve(args) => serve::serve(db, config, &args, clock),
        Command::Device { action } => serve::device(db, &action, clock),
        Command::Assign {
            cycle,
            route,
            device,
        } => serve::assign(db, &cycle, &route, &device, clock),
        Command::User { action } => serve::user(db, &action, clock),
    }
}

/// Who the audit log names for a command run at the CLI: `cli:$USER`.
fn actor() -> String {
    std::env::var("USER")
        .ok()
        .filter(|u| !u.trim().is_empty())
        .map(|u| format!("cli:{u}"))
        .unwrap_or_else(|| "cli".to_string())
}

/// `meter-gateway backup FILE`.
fn backup(db: &Path, file: &Path) -> anyhow::Result<()> {
    let report = crate::store::backup_database(db, file)?;
    say!(
        "backed up {} to {} ({} pages, {} bytes, schema version {})",
        db.display(),
        report.path.display(),
        report.pages,
        report.bytes,
        report.schema_version
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    /// Every command, subcommand, argument and choice says what it is for in `--help`.
    #[test]
    fn every_command_and_argument_has_a_help_line() {
        fn walk(cmd: &clap::Command, path: &str, missing: &mut Vec<String>) {
            let path = format!("{path} {}", cmd.get_name()).trim().to_string();
            if cmd.get_about().is_none() {
                missing.push(format!("`{path}` has no about"));
            }
            for arg in cmd.get_arguments() {
                let id = arg.get_id().as_str();
                if matches!(id, "help" | "version") {
                    continue;
                }
                if arg.get_help().is_none() {
                    missing.push(format!("`{path}`: argument `{id}` has no help"));
                }
                // A flag's true/false are not choices to explain.
                let choices = if arg.get_action().takes_values() {
                    arg.get_possible_values()
                } else {
                    Vec::new()
                };
                for value in choices {
                    if value.get_help().is_none() {
                        missing.push(format!(
                            "`{path}`: value `{}` of `{id}` has no help",
                            value.get_name()
                        ));
                    }
                }
            }
            for sub in cmd.get_subcommands().filter(|s| s.get_name() != "help") {
                walk(sub, &path, missing);
            }
        }
        let mut missing = Vec::new();
        walk(&Cli::command(), "", &mut missing);
        assert!(missing.is_empty(), "{missing:#?}");
    }

    #[test]
    fn the_demo_is_described_as_what_it_does_today() {
        let help = Cli::command().render_long_help().to_string();
        assert!(!help.contains("once the daemon exists"), "{help}");
        assert!(help.contains("demo"), "{help}");
    }
}
