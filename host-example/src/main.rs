//! `host-example`: the command line of the wasmtime sample host.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use host_example::config::HostConfig;
use host_example::types::{CmsUser, FieldValue, ServerCapabilities, UserEvent};
use host_example::{Runtime, Session, describe_error};

/// Provision CMS users to a SCIM 2.0 server through the scim-provisioner component.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    /// The TOML configuration file.
    #[arg(long, short, global = true, default_value = "scim-provisioner.toml")]
    config: PathBuf,
    /// A component to load instead of the one built with this host.
    #[arg(long, global = true)]
    component: Option<PathBuf>,
    /// Show the component's debug log (requests and statuses; never credentials).
    #[arg(long, short, global = true)]
    verbose: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Test the SCIM base URL and credentials, and show what the server supports.
    TestConnection,
    /// Provision one user given on the command line.
    Provision {
        /// The CMS user id.
        #[arg(long)]
        id: String,
        /// A field, as NAME=VALUE (repeatable). A value with commas after `roles=` is a list.
        #[arg(long = "field", short = 'f', value_name = "NAME=VALUE")]
        fields: Vec<String>,
        /// Provision the user as blocked.
        #[arg(long)]
        blocked: bool,
    },
    /// Read one remote user by SCIM id and print it.
    GetUser {
        /// The remote SCIM id.
        id: String,
    },
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let config = HostConfig::load(&cli.config)?;
    let settings = config.settings()?;
    let runtime = Runtime::new(cli.component.unwrap_or_else(Runtime::built_component_path))?;
    let log = if cli.verbose {
        host_example::logging::LogSink::stderr(host_example::logging::Level::Debug)
    } else {
        host_example::logging::LogSink::stderr(host_example::logging::Level::Warn)
    };
    let mut session = match runtime.open_with_log(&settings, log)? {
        Ok(s) => s,
        Err(e) => bail!("{}", describe_error(&e)),
    };
    match cli.command {
        Command::TestConnection => test_connection(&mut session, &settings.base_url),
        Command::Provision {
            id,
            fields,
            blocked,
        } => {
            let user = CmsUser {
                id,
                fields: fields
                    .iter()
                    .map(|f| parse_field(f))
                    .collect::<anyhow::Result<_>>()?,
                active: !blocked,
            };
            match session.provision(&user, UserEvent::Created, None)? {
                Ok(outcome) => {
                    let link = outcome.link.as_ref();
                    println!(
                        "User {} provisioned: {}{}",
                        user.id,
                        host_example::action_label(outcome.action),
                        link.map(|l| format!(" (remote id {})", l.remote_id))
                            .unwrap_or_default()
                    );
                    Ok(ExitCode::SUCCESS)
                }
                Err(e) => {
                    println!("User {} not provisioned: {}", user.id, describe_error(&e));
                    Ok(ExitCode::FAILURE)
                }
            }
        }
        Command::GetUser { id } => match session.get_user(&id)? {
            Ok(Some(json)) => {
                let value: serde_json::Value =
                    serde_json::from_str(&json).context("the component returned invalid JSON")?;
                println!("{}", serde_json::to_string_pretty(&value)?);
                Ok(ExitCode::SUCCESS)
            }
            Ok(None) => {
                println!("no remote user with id {id}");
                Ok(ExitCode::FAILURE)
            }
            Err(e) => {
                println!("{}", describe_error(&e));
                Ok(ExitCode::FAILURE)
            }
        },
    }
}

/// `roles=editor,member` is a list; everything else is text.
fn parse_field(spec: &str) -> anyhow::Result<(String, FieldValue)> {
    let (name, value) = spec
        .split_once('=')
        .with_context(|| format!("a field must be NAME=VALUE, got {spec:?}"))?;
    let value = if name == "roles" {
        FieldValue::TextList(
            value
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(String::from)
                .collect(),
        )
    } else {
        FieldValue::Text(value.to_string())
    };
    Ok((name.to_string(), value))
}

fn test_connection(session: &mut Session, base_url: &str) -> anyhow::Result<ExitCode> {
    match session.test_connection()? {
        Ok(caps) => {
            println!("Connection successful: {base_url}");
            print_capabilities(&caps);
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            println!("Connection failed: {}", describe_error(&e));
            Ok(ExitCode::FAILURE)
        }
    }
}

fn print_capabilities(caps: &ServerCapabilities) {
    let yes = |b: bool| if b { "yes" } else { "no" };
    if !caps.discovered {
        println!("  (no /ServiceProviderConfig; assuming the conservative defaults)");
    }
    println!("  patch:          {}", yes(caps.patch));
    match &caps.bulk {
        Some(b) => println!(
            "  bulk:           yes (maxOperations {}, maxPayloadSize {})",
            b.max_operations, b.max_payload_size
        ),
        None => println!("  bulk:           no"),
    }
    match caps.filter_max_results {
        Some(n) => println!("  filter:         yes (maxResults {n})"),
        None => println!("  filter:         no"),
    }
    println!("  etag:           {}", yes(caps.etag));
    println!("  sort:           {}", yes(caps.sort));
    println!("  changePassword: {}", yes(caps.change_password));
}
