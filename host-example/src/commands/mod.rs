//! One module per command family; [`run`] picks the command's.

mod connection;
mod daemon;
mod demo;
mod metrics;
mod provision;
mod serve;
mod serve_token;
mod status;
mod sync;
mod users;

use std::process::ExitCode;

use crate::app::App;
use crate::cli::{Cli, Command, ServeTokenCommand};

/// Success unless a change was parked: it could not be provisioned and will not be retried.
pub fn exit_code(none_parked: bool) -> ExitCode {
    if none_parked {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// Runs the command line's command. `demo` and `serve` need no configuration file; every
/// other command reads it first.
pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let Cli {
        config,
        component,
        verbose,
        command,
    } = cli;
    let app = || App::load(&config, component.clone(), verbose);
    match command {
        Command::Demo => demo::run(component.as_deref()),
        Command::Serve {
            listen,
            database,
            token_env,
            new_token,
            workers,
            memory_limit_mb,
            call_deadline_secs,
            max_connections,
            max_connections_per_client,
            idle_timeout_secs,
            header_timeout_secs,
            body_timeout_secs,
            metrics_listen,
        } => serve::run(
            component.as_deref(),
            verbose,
            &serve::ServeArgs {
                listen: &listen,
                database: &database,
                token_env: token_env.as_deref(),
                new_token,
                options: host_example::serve::ServeOptions {
                    workers: usize::from(workers),
                    max_connections: usize::from(max_connections),
                    max_connections_per_client: usize::from(max_connections_per_client),
                    idle_timeout: std::time::Duration::from_secs(idle_timeout_secs),
                    header_timeout: std::time::Duration::from_secs(header_timeout_secs),
                    body_timeout: std::time::Duration::from_secs(body_timeout_secs),
                    ..host_example::serve::ServeOptions::default()
                },
                limits: host_example::GuestLimits {
                    memory_limit_bytes: (memory_limit_mb as usize) << 20,
                    call_deadline: std::time::Duration::from_secs(call_deadline_secs),
                },
                metrics_listen: metrics_listen.as_deref(),
            },
        ),
        Command::ServeToken(ServeTokenCommand::Rotate { database }) => {
            serve_token::rotate(&database)
        }
        Command::ServeToken(ServeTokenCommand::Fingerprint { database }) => {
            serve_token::show_fingerprint(&database)
        }
        Command::TestConnection => connection::test_connection(&app()?),
        Command::GetUser { id } => connection::get_user(&app()?, &id),
        Command::Provision { user, dry_run } => provision::run(&app()?, &user, dry_run),
        Command::Users(cmd) => users::run(&app()?, cmd),
        Command::Sync {
            plan,
            allow_deletes,
            full,
            metrics_listen,
        } => {
            let app = app()?;
            let _metrics = metrics::start(metrics_listen.as_deref())?;
            sync::run(&app, plan, allow_deletes, full)
        }
        Command::Daemon {
            every,
            verify_every,
            metrics_listen,
            database,
            deliver_only,
            partitions,
        } => {
            let app = app()?.with_database(database);
            let _metrics = metrics::start(metrics_listen.as_deref())?;
            daemon::run(&app, every, verify_every, deliver_only, partitions)
        }
        Command::Log {
            user,
            failed,
            limit,
        } => status::log(&app()?, user.as_deref(), failed, limit),
        Command::Status => status::status(&app()?),
        Command::Retry => status::retry(&app()?),
    }
}
