//! The command line: subcommands and the settings every role shares.

use anyhow::Context;
use clap::{Parser, Subcommand};

use crate::config::{Config, Settings};

/// Copains: a self-hostable community platform with end-to-end encryption.
///
/// Every setting can be given as a flag, as a `COPAINS_*` environment variable (shown
/// in brackets), or in a TOML file named by `--config` (keys are the flag names with `_`).
/// Flags beat variables, which beat the file.
#[derive(Debug, Parser)]
#[command(name = "copains", version, about, long_about = None)]
pub struct Cli {
    /// What to run.
    #[command(subcommand)]
    pub command: Command,
    /// Settings.
    #[command(flatten)]
    pub settings: Settings,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run every role in one process: API, gateway, SFU and web app.
    /// Starts a private PostgreSQL when DATABASE_URL is unset; uses the in-process bus
    /// unless COPAINS_REDIS_URL is set.
    Serve,
    /// Run the API role only (publishes events on Redis when COPAINS_REDIS_URL is set).
    Api,
    /// Run the gateway role only (WebSocket at /gateway; needs COPAINS_REDIS_URL to hear
    /// the api nodes).
    Gateway,
    /// Run the SFU role only (UDP media on COPAINS_SFU_PORTS; needs COPAINS_REDIS_URL to
    /// hear the gateways' voice signalling).
    Sfu,
    /// Apply database migrations and exit.
    Migrate,
    /// Administer the instance from the server's shell.
    #[command(subcommand)]
    Admin(AdminCommand),
    /// Print the configuration reference (Markdown) generated from the settings.
    ConfigReference,
}

/// `copains admin …`
#[derive(Debug, Subcommand)]
pub enum AdminCommand {
    /// Create an account without the registration policy. The password is read from
    /// COPAINS_NEW_PASSWORD or generated and printed.
    CreateUser {
        /// Username.
        username: String,
        /// Email address.
        email: String,
        /// Make the account an instance admin.
        #[arg(long)]
        admin: bool,
    },
    /// Print a single-use password-reset link (valid one hour) for a username or email.
    ResetLink {
        /// Username or email.
        user: String,
    },
    /// Suspend an account instance-wide and end its sessions.
    Suspend {
        /// Username or email.
        user: String,
        /// Why.
        #[arg(long, default_value = "suspended by an administrator")]
        reason: String,
    },
    /// Lift a suspension.
    Unsuspend {
        /// Username or email.
        user: String,
    },
}

/// Runs the parsed command line.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    if let Command::ConfigReference = cli.command {
        print!("{}", crate::config::reference());
        return Ok(());
    }
    let config = Config::load(cli.settings).context("reading the configuration")?;
    crate::serve::init_tracing(&config);
    match cli.command {
        Command::Serve => crate::serve::serve(config, crate::serve::Roles::ALL).await,
        Command::Api => crate::serve::serve(config, crate::serve::Roles::API).await,
        Command::Gateway => crate::serve::serve(config, crate::serve::Roles::GATEWAY).await,
        Command::Sfu => crate::serve::serve(config, crate::serve::Roles::SFU).await,
        Command::Migrate => crate::serve::migrate_only(config).await,
        Command::Admin(cmd) => crate::admin::run(config, cmd).await,
        Command::ConfigReference => Ok(()),
    }
}
