//! The command line: parses arguments and hands each command to the module that owns it.
//! Thin on purpose: no logic here beyond dispatch.

use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

#[derive(Debug, Parser)]
#[command(
    name = "meter-gateway",
    version,
    about = "Meter-reading gateway for water utilities"
)]
pub struct Cli {
    /// The district database (created if missing).
    #[arg(
        long,
        global = true,
        env = "METER_GATEWAY_DB",
        default_value = "meter-gateway.db"
    )]
    pub db: PathBuf,
    /// Settings file (TOML): tolerances per rate class, tariff, leak policy.
    #[arg(long, global = true, env = "METER_GATEWAY_CONFIG")]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Build a demo district (and, once the daemon exists, run the whole system on it).
    Demo(DemoArgs),
    /// Import a CIS file (CSV with a header row) in one transaction.
    Import {
        #[command(subcommand)]
        what: ImportWhat,
    },
    /// Export a table as the same CSV format the import reads.
    Export { what: ExportWhat, file: PathBuf },
    /// Online, consistent copy of the database (safe while the daemon serves).
    Backup { file: PathBuf },
    /// Read cycles: open, status, close.
    Cycle {
        #[command(subcommand)]
        action: CycleAction,
    },
    /// List a cycle's reads with their validation outcome.
    Reads(ReadsArgs),
    /// Write the route file (stops in walk order, previous read, hi/lo limits) for a cycle's route.
    Route(RouteArgs),
}

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Number of accounts in the demo district.
    #[arg(long, default_value_t = 7000)]
    pub accounts: u32,
    /// Seed: the same seed builds the same district.
    #[arg(long, default_value_t = 2026)]
    pub seed: u64,
    /// Start only the daemon, no simulated handhelds.
    #[arg(long)]
    pub no_handhelds: bool,
}

#[derive(Debug, Subcommand)]
pub enum ImportWhat {
    Accounts {
        file: PathBuf,
    },
    Meters {
        file: PathBuf,
    },
    History {
        file: PathBuf,
    },
    Codes {
        file: PathBuf,
    },
    /// Field reads for a cycle (meter_id, read_at, reading, reader, codes, verified): validated on import.
    Reads {
        #[arg(long)]
        cycle: String,
        file: PathBuf,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum ExportWhat {
    Accounts,
    Meters,
    History,
    Codes,
}

#[derive(Debug, Subcommand)]
pub enum CycleAction {
    /// Open a read cycle over some or all routes.
    Open {
        id: String,
        #[arg(long)]
        from: chrono::NaiveDate,
        #[arg(long)]
        to: chrono::NaiveDate,
        /// Comma-separated route ids (default: every route).
        #[arg(long, value_delimiter = ',')]
        routes: Vec<String>,
    },
    /// Reads expected / in / flagged / resolved, per route.
    Status { id: String },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum ReadsFormat {
    Csv,
    Json,
}

#[derive(Debug, Args)]
pub struct ReadsArgs {
    #[arg(long)]
    pub cycle: String,
    #[arg(long, value_enum, default_value = "csv")]
    pub format: ReadsFormat,
    /// Write here instead of standard output.
    #[arg(long)]
    pub out: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct RouteArgs {
    #[arg(long)]
    pub cycle: String,
    #[arg(long)]
    pub route: String,
    /// Write the route file (JSON) here instead of standard output.
    #[arg(long)]
    pub out: Option<PathBuf>,
}

/// Entry point used by `main.rs`.
pub fn main() -> anyhow::Result<()> {
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
    let config = crate::config::Config::load(cli.config.as_deref())?;
    match cli.command {
        Command::Demo(args) => crate::demo::cli_demo(&cli.db, &args),
        Command::Import {
            what: ImportWhat::Reads { cycle, file },
        } => crate::cycles::cli_import_reads(&cli.db, &config, &cycle, &file),
        Command::Import { what } => crate::cis::cli_import(&cli.db, &what),
        Command::Export { what, file } => crate::cis::cli_export(&cli.db, what, &file),
        Command::Backup { file } => crate::store::cli_backup(&cli.db, &file),
        Command::Cycle { action } => crate::cycles::cli_cycle(&cli.db, &config, &action),
        Command::Reads(args) => crate::cycles::cli_reads(&cli.db, &args),
        Command::Route(args) => crate::cycles::cli_route(&cli.db, &config, &args),
    }
}
