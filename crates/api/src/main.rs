//! The `keel` binary: `serve` (default), `migrate up|down|status`, `openapi`, `admin create`,
//! `dev seed`.
//! anyhow lives here, at the edge, and nowhere else.

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::{Parser, Subcommand};
use keel_api::config::{Environment, Settings};
use keel_api::startup::{Application, db_settings, identity_ports};
use keel_api::{openapi, telemetry};
use keel_application::AppError;
use keel_application::cache::NoCache;
use keel_application::context::RequestMeta;
use keel_application::identity::admin::create_admin;
use keel_domain::identity::Password;
use keel_infrastructure::{Database, migrate, seed};

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
    /// Development tools (refused with KEEL_ENV=production).
    Dev {
        #[command(subcommand)]
        action: DevAction,
    },
}

#[derive(Debug, Subcommand)]
enum DevAction {
    /// Fill one project with many tasks, fast, for benchmarks: creates or reuses a seed owner,
    /// the project, labels and members, then inserts tasks with multi-row INSERTs. The owner's
    /// password (for accounts this run creates) comes from KEEL_SEED_PASSWORD, else
    /// `Seed-passw0rd`.
    Seed {
        /// Tasks to add; numbered after the project's last task.
        #[arg(long)]
        tasks: u64,
        /// The project's key (created when missing).
        #[arg(long, default_value = "BENCH")]
        project_key: String,
        /// Labels the project should have; each task gets 0–3 of them.
        #[arg(long, default_value_t = 8)]
        labels: usize,
        /// Member accounts besides the owner (the first is a project admin).
        #[arg(long, default_value_t = 5)]
        members: usize,
        /// Tasks per transaction.
        #[arg(long, default_value_t = 2000)]
        batch: usize,
        /// The owner's e-mail (when the project exists, its owner is kept).
        #[arg(long, default_value = "seed-owner@example.com")]
        owner_email: String,
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
    // Log lines go through a background writer: a request appends its formatted line to a
    // shared buffer and never waits on stderr; a thread writes each batch in one write.
    // Nothing is dropped (writers wait when 8 MiB are waiting); `_flush` writes out what is
    // left when `main` returns.
    let (sink, _flush) = match telemetry::background_writer(std::io::stderr()) {
        Ok(writer) => writer,
        Err(e) => {
            eprintln!("keel: cannot start the log writer: {e}");
            return ExitCode::FAILURE;
        }
    };
    if let Err(e) = telemetry::init(telemetry::subscriber(settings.log_format, sink)) {
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
        Command::Dev {
            action:
                DevAction::Seed {
                    tasks,
                    project_key,
                    labels,
                    members,
                    batch,
                    owner_email,
                },
        } => {
            let options = seed::SeedOptions {
                tasks,
                project_key,
                labels,
                members,
                batch,
                owner_email,
                password_hash: String::new(),
            };
            dev_seed(&settings, options).await
        }
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
    let ports = identity_ports(settings, &db, Arc::new(NoCache)).context("cannot set up identity")?;
    let meta = RequestMeta {
        request_id: Some("cli:admin-create".to_owned()),
        ip: None,
        user_agent: Some("keel admin create".to_owned()),
        token_id: None,
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

/// The password of the accounts `keel dev seed` creates, unless KEEL_SEED_PASSWORD is set.
const DEFAULT_SEED_PASSWORD: &str = "Seed-passw0rd";

#[allow(clippy::print_stdout)]
async fn dev_seed(settings: &Settings, mut options: seed::SeedOptions) -> anyhow::Result<()> {
    if settings.environment == Environment::Production {
        anyhow::bail!("keel dev seed is a development tool: refused with KEEL_ENV=production");
    }
    let password = std::env::var("KEEL_SEED_PASSWORD")
        .ok()
        .filter(|p| !p.is_empty())
        .unwrap_or_else(|| DEFAULT_SEED_PASSWORD.to_owned());
    let password = Password::parse(&password, "KEEL_SEED_PASSWORD")
        .map_err(|e| anyhow::anyhow!("invalid KEEL_SEED_PASSWORD: {}", e.message))?;
    let db = Database::connect(&db_settings(settings), None)
        .await
        .context("cannot open the database")?;
    if settings.auto_migrate {
        migrate::up(&db).await.context("cannot apply migrations")?;
    }
    // Hashed like any account's, so that the seeded accounts can log in.
    let ports = identity_ports(settings, &db, Arc::new(NoCache)).context("cannot set up identity")?;
    options.password_hash = ports
        .hasher
        .hash(&password)
        .await
        .context("cannot hash the seed password")?
        .as_str()
        .to_owned();
    println!(
        "keel dev seed: {} tasks into project {} (batches of {})",
        options.tasks, options.project_key, options.batch
    );
    let step = (options.tasks / 10).max(1);
    let mut next_report = step;
    let outcome = seed::seed(&db, &options, |p| {
        if p.inserted >= next_report || p.inserted == p.total {
            #[allow(clippy::cast_precision_loss)]
            let rate = p.inserted as f64 / p.elapsed.as_secs_f64().max(1e-9);
            println!(
                "  {}/{} tasks, {} task labels, {:.1} s, {:.0} tasks/s",
                p.inserted,
                p.total,
                p.task_labels,
                p.elapsed.as_secs_f64(),
                rate
            );
            while next_report <= p.inserted {
                next_report += step;
            }
        }
    })
    .await;
    db.close().await.ok();
    let report = outcome.context("keel dev seed failed")?;
    let created = |yes: bool| if yes { "created" } else { "existing" };
    println!(
        "project {} ({}): {}",
        report.project_key,
        report.project_id,
        created(report.project_created)
    );
    println!(
        "owner {} ({}): {}{}",
        report.owner.email,
        report.owner.id,
        created(report.owner.created),
        if report.owner.created {
            ", password from KEEL_SEED_PASSWORD (default Seed-passw0rd)"
        } else {
            ", password unchanged"
        }
    );
    for member in &report.members {
        println!(
            "member {} ({}): {}, {}",
            member.email,
            member.id,
            member.role.as_str(),
            created(member.created)
        );
    }
    println!("labels: {}", report.labels.join(", "));
    let (tasks_per_sec, rows_per_sec) = report.rates();
    if report.tasks > 0 {
        println!(
            "seeded {} tasks ({}-{}..{}-{}) and {} task labels in {:.1} s: {:.0} tasks/s, {:.0} rows/s",
            report.tasks,
            report.project_key,
            report.first_number,
            report.project_key,
            report.last_number,
            report.task_labels,
            report.elapsed.as_secs_f64(),
            tasks_per_sec,
            rows_per_sec
        );
    } else {
        println!("seeded 0 tasks");
    }
    Ok(())
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
