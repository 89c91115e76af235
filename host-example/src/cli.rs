//! The command line: clap's definitions of every command and option.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand};

/// Provision CMS users to a SCIM 2.0 server through the scim-provisioner component.
#[derive(Parser)]
#[command(version, about)]
pub struct Cli {
    /// The TOML configuration file.
    #[arg(long, short, global = true, default_value = "scim-provisioner.toml")]
    pub config: PathBuf,
    /// A component to load instead of the one built with this host.
    #[arg(long, global = true)]
    pub component: Option<PathBuf>,
    /// Show the component's debug log (requests and statuses; never credentials).
    #[arg(long, short, global = true)]
    pub verbose: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// Run the seed's whole story on this machine: a Joomla-like SCIM server, a Drupal-like
    /// client site, a connection test, manual, automatic and scheduled provisioning, and a
    /// table proving each result on the server. Needs no configuration file.
    Demo,
    /// Serve SCIM 2.0 from a directory (the Joomla side). Needs no configuration file.
    Serve {
        /// Where to listen.
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: String,
        /// The directory: a SQLite file, or a postgres:// or mysql:// URL, where several
        /// `serve` processes answer as one server (the URL may come from the environment,
        /// out of sight of `ps`).
        #[arg(long, env = "SCIM_SERVE_DATABASE", default_value = "scim-server.db")]
        database: PathBuf,
        /// The environment variable holding the bearer token; without it, a token is
        /// generated once, shown once, and only its SHA-256 kept in the database.
        #[arg(long)]
        token_env: Option<String>,
        /// Replace the token kept in the database with a new one (shown once).
        #[arg(long)]
        new_token: bool,
        /// Requests answered at once, each by its own component instance.
        #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=64))]
        workers: u16,
        /// The most linear memory one component instance may hold, in MiB.
        #[arg(long, default_value_t = 512, value_parser = clap::value_parser!(u32).range(16..=4096))]
        memory_limit_mb: u32,
        /// How long the component may run without returning or calling the host, in seconds.
        #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=3600))]
        call_deadline_secs: u64,
        /// Connections served at once; more are answered 503.
        #[arg(long, default_value_t = 128, value_parser = clap::value_parser!(u16).range(1..=4096))]
        max_connections: u16,
        /// Connections served at once from one client address; more from it are answered 503.
        #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u16).range(1..=4096))]
        max_connections_per_client: u16,
        /// Seconds a kept-alive connection may wait for its next request before it is closed.
        #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..=300))]
        idle_timeout_secs: u64,
        /// Seconds a client has to send a whole request head.
        #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=300))]
        header_timeout_secs: u64,
        /// Seconds a client has to send a whole request body, in total.
        #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=3600))]
        body_timeout_secs: u64,
        /// Serve live metrics in the Prometheus text format at http://ADDR/metrics (such
        /// as 127.0.0.1:9464; keep it on loopback unless the scraper runs elsewhere).
        #[arg(long, value_name = "ADDR")]
        metrics_listen: Option<String>,
    },
    /// Rotate the token `serve` checks, or show which one is in force, and exit (no server
    /// is started). Needs no configuration file.
    #[command(subcommand)]
    ServeToken(ServeTokenCommand),
    /// Test the SCIM base URL and credentials, and show what the server supports.
    TestConnection,
    /// Provision one user now (manual / on demand), found by id, name or email.
    Provision {
        /// The user's id, name or email.
        user: String,
        /// Print the requests that would be sent instead of sending them.
        #[arg(long)]
        dry_run: bool,
    },
    /// Change the sample CMS's users; each change is provisioned at once (automatic).
    #[command(subcommand)]
    Users(UsersCommand),
    /// Reconcile every user (scheduled): create, update what changed, deprovision.
    Sync {
        /// Print the plan and send nothing.
        #[arg(long)]
        plan: bool,
        /// Go ahead even if more users would be deprovisioned than the threshold allows.
        #[arg(long)]
        allow_deletes: bool,
        /// Verify every linked user on the server (one request each) and re-create what
        /// the server lost, instead of trusting what was last provisioned.
        #[arg(long)]
        full: bool,
        /// Serve live metrics in the Prometheus text format at http://ADDR/metrics (such
        /// as 127.0.0.1:9464; keep it on loopback unless the scraper runs elsewhere).
        #[arg(long, value_name = "ADDR")]
        metrics_listen: Option<String>,
    },
    /// Run the sync on a schedule and deliver outbox events as they come.
    Daemon {
        /// The sync interval, such as 10m, 1h or 30s.
        #[arg(long, default_value = "10m", value_parser = parse_interval)]
        every: Duration,
        /// How often the sync is a full, verifying one (`sync --full`): it reads every
        /// linked user, so it notices users deleted or changed on the server.
        #[arg(long, default_value = "24h", value_parser = parse_interval)]
        verify_every: Duration,
        /// Serve live metrics in the Prometheus text format at http://ADDR/metrics (such
        /// as 127.0.0.1:9464; keep it on loopback unless the scraper runs elsewhere).
        #[arg(long, value_name = "ADDR")]
        metrics_listen: Option<String>,
        /// The store instead of `[host] database`: an SQLite file, or a postgres:// or
        /// mysql:// URL that several daemons share (also SCIM_PROVISIONER_DATABASE, which
        /// keeps a password out of `ps`).
        #[arg(long, value_name = "URL")]
        database: Option<String>,
        /// Only deliver outbox events; take no part in the scheduled sync (extra workers on
        /// a shared database).
        #[arg(long)]
        deliver_only: bool,
        /// On a shared database, the partitions (ranges of user ids) a reconcile run this
        /// daemon starts is split into, for the daemons to share (more when one would hold
        /// over 10,000 users).
        #[arg(long, default_value_t = host_example::reconcile_shared::DEFAULT_PARTITIONS, value_parser = clap::value_parser!(u32).range(1..=4096))]
        partitions: u32,
    },
    /// Show the provisioning log, newest first.
    Log {
        /// Only this user (id).
        #[arg(long)]
        user: Option<String>,
        /// Only failures.
        #[arg(long)]
        failed: bool,
        /// How many lines.
        #[arg(long, default_value_t = 50)]
        limit: u32,
    },
    /// Show the outbox depth, parked events and the last sync.
    Status,
    /// Put parked outbox events back in line and deliver them.
    Retry,
    /// Read one remote user by SCIM id and print it.
    GetUser {
        /// The remote SCIM id.
        id: String,
    },
}

#[derive(Subcommand)]
pub enum ServeTokenCommand {
    /// Replace the token with a new one, printed once on stdout (every `serve` on a
    /// PostgreSQL or MariaDB database takes it within seconds; on SQLite, restart `serve`).
    Rotate {
        /// `serve`'s directory: a SQLite file, or a postgres:// or mysql:// URL.
        #[arg(long, env = "SCIM_SERVE_DATABASE", default_value = "scim-server.db")]
        database: PathBuf,
    },
    /// Print the token's fingerprint: the first 16 hex digits of its SHA-256, as
    /// `printf %s "$TOKEN" | sha256sum` shows them.
    Fingerprint {
        /// `serve`'s directory: a SQLite file, or a postgres:// or mysql:// URL.
        #[arg(long, env = "SCIM_SERVE_DATABASE", default_value = "scim-server.db")]
        database: PathBuf,
    },
}

#[derive(Subcommand)]
pub enum UsersCommand {
    /// Add a user.
    Add {
        /// Login name.
        #[arg(long)]
        name: String,
        /// Email.
        #[arg(long)]
        mail: String,
        /// Another field, as NAME=VALUE (repeatable; `roles=a,b` is a list).
        #[arg(long = "field", short = 'f', value_name = "NAME=VALUE")]
        fields: Vec<String>,
        /// Add the user blocked.
        #[arg(long)]
        blocked: bool,
    },
    /// Change a user's fields.
    Update {
        /// The user's id, name or email.
        user: String,
        /// New login name.
        #[arg(long)]
        name: Option<String>,
        /// New email.
        #[arg(long)]
        mail: Option<String>,
        /// A field to set, as NAME=VALUE; an empty VALUE clears it.
        #[arg(long = "field", short = 'f', value_name = "NAME=VALUE")]
        fields: Vec<String>,
    },
    /// Block a user.
    Block {
        /// The user's id, name or email.
        user: String,
    },
    /// Unblock a user.
    Unblock {
        /// The user's id, name or email.
        user: String,
    },
    /// Delete a user.
    Delete {
        /// The user's id, name or email.
        user: String,
    },
    /// Load users from CSV (with a header row) or JSON Lines, in one transaction. They are
    /// provisioned by the next sync, or at once with --provision.
    Import {
        /// The file (`.csv`, or `.jsonl` / `.ndjson`).
        file: PathBuf,
        /// Record a `created` event for each user and deliver them now.
        #[arg(long)]
        provision: bool,
    },
    /// List users.
    List,
}

/// Parses an interval such as `30s`, `10m` or `1h` (a bare number is seconds).
fn parse_interval(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (number, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = number
        .parse()
        .map_err(|_| format!("not an interval: {s:?} (try 30s, 10m, 1h)"))?;
    let secs = match unit {
        "" | "s" => n,
        "m" => n * 60,
        "h" => n * 3600,
        "d" => n * 86_400,
        _ => return Err(format!("unknown unit {unit:?} (use s, m, h or d)")),
    };
    if secs == 0 {
        return Err("the interval must be positive".into());
    }
    Ok(Duration::from_secs(secs))
}
