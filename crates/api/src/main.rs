//! The `keel` binary: `serve` (default), `migrate up|down|status`, `openapi`.
//! anyhow lives here, at the edge, and nowhere else.

use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use keel_api::config::Settings;
use keel_api::startup::{Application, db_settings, identity_ports};
use keel_api::{openapi, telemetry};
use keel_application::AppError;
use keel_application::context::RequestMeta;
use keel_application::identity::admin::create_admin;
use keel_infrastructure::{Database, migrate};

#[derive(Debug, Parser)]
#[command(
    name = "keel",
    version,
    about = "Keel: self-hostable project and task tracking backend"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve the HTTP API (the default).
    Serve,
    /// Apply, roll back or list schema migrations.
    Migrate {
        #[command(subcommand)]
        action: MigrateAction,
    },
    /// Print the OpenAPI document to standard output.
    Openapi,
    /// Instance administration.
    Admin {
        #[command(subcommand)]
        action: AdminAction,
    },
}

#[derive(Debug, Subcommand)]
enum AdminAction {
    /// Create an admin account. The password comes from KEEL_ADMIN_PASSWORD, or from a
    /// prompt that does not echo.
    Create {
        #[arg(long)]
        email: String,
        #[arg(long)]
        name: String,
    },
}

#[derive(Debug, Subcommand)]
enum MigrateAction {
    /// Apply every pending migration.
    Up,
    /// Roll back the last applied migrations.
    Down {
        #[arg(long, default_value_t = 1)]
        steps: u32,
    },
    /// List migrations and whether each is applied.
    Status,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let command = cli.command.unwrap_or(Command::Serve);
    if let Command::Openapi = command {
        return print_openapi();
    }

    let settings = match Settings::from_env() {
        Ok(settings) => settings,
        Err(e) => {
            eprintln!("keel: invalid configuration: {e}");
            return ExitCode::from(2);
        }
    };
    if let Err(e) = telemetry::init(telemetry::subscriber(settings.log_format, std::io::stderr)) {
        eprintln!("keel: cannot install the log subscriber: {e}");
        return ExitCode::FAILURE;
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("keel: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(command, settings)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = format!("{e:#}"), "keel stopped with an error");
            eprintln!("keel: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(command: Command, settings: Settings) -> anyhow::Result<()> {
    match command {
        Command::Serve => {
            let app = Application::build(settings).await.context("start-up failed")?;
            app.run_until_stopped().await.context("server failed")?;
            Ok(())
        }
        Command::Migrate { action } => {
            let db = Database::connect(&db_settings(&settings), None)
                .await
                .context("cannot open the database")?;
            let outcome = match action {
                MigrateAction::Up => migrate::up(&db).await.context("migrate up failed"),
                MigrateAction::Down { steps } => {
                    migrate::down(&db, steps).await.context("migrate down failed")
                }
                MigrateAction::Status => print_status(&db).await,
            };
            db.close().await.ok();
            outcome
        }
        Command::Admin {
            action: AdminAction::Create { email, name },
        } => create_admin_account(&settings, &email, &name).await,
        Command::Openapi => Ok(()),
    }
}

#[allow(clippy::print_stdout)]
async fn create_admin_account(settings: &Settings, email: &str, name: &str) -> anyhow::Result<()> {
    let password = match std::env::var("KEEL_ADMIN_PASSWORD")
        .ok()
        .filter(|p| !p.is_empty())
    {
        Some(password) => password,
        None => rpassword::prompt_password("Password for the new admin: ")
            .context("no KEEL_ADMIN_PASSWORD and no terminal to prompt on")?,
    };
    let db = Database::connect(&db_settings(settings), None)
        .await
        .context("cannot open the database")?;
    if settings.auto_migrate {
        migrate::up(&db).await.context("cannot apply migrations")?;
    }
    let ports = identity_ports(settings, &db).context("cannot set up identity")?;
    let meta = RequestMeta {
        request_id: Some("cli:admin-create".to_owned()),
        ip: None,
        user_agent: Some("keel admin create".to_owned()),
    };
    let outcome = create_admin(&ports, email, name, &password, &meta).await;
    db.close().await.ok();
    match outcome {
        Ok(user) => {
            println!("created admin {} ({})", user.email, user.id);
            Ok(())
        }
        Err(AppError::Validation(details)) => {
            let list: Vec<String> = details.iter().map(ToString::to_string).collect();
            anyhow::bail!("invalid input: {}", list.join("; "))
        }
        Err(e) => Err(anyhow::Error::new(e).context("cannot create the admin")),
    }
}

#[allow(clippy::print_stdout)]
async fn print_status(db: &Database) -> anyhow::Result<()> {
    for m in migrate::status(db)
        .await
        .context("cannot read the migration status")?
    {
        println!("{}\t{}", if m.applied { "applied" } else { "pending" }, m.name);
    }
    Ok(())
}

#[allow(clippy::print_stdout)]
fn print_openapi() -> ExitCode {
    match openapi::document_json() {
        Ok(json) => {
            println!("{json}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("keel: cannot render the OpenAPI document: {e}");
            ExitCode::FAILURE
        }
    }
}
