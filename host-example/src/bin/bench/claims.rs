//! The outbox's claim overhead on a shared database (`--claims [N]`, issue 30): N events
//! (100,000 by default) queued (users of 4 events each, in rounds, so each user's events
//! wait behind one another), then drained by 1, 2 and 4 workers (threads, each with its
//! own connection, as `daemon` processes have) against a server that answers at once. Each
//! worker claims a batch of 100 under its lease (`Store::claim_due`) and records it exactly
//! as a delivery does (`Store::settle`: the links saved, the events removed, a log line
//! each, in one transaction). Only the queue's cost is measured: no component call and no
//! HTTP.
//!
//! Each worker count is run `--claims-runs` times (3), each on a freshly emptied and
//! refilled outbox, and the table gives the median events/s and the range: one drain of
//! 20,000 events took about a second and its figure varied by half from one run to the
//! next. Also reported: the CPU per event of the workers (this process), of the database
//! server (MariaDB on this machine, from its `@@pid_file`: the figure that other work on
//! the machine disturbs least) and of the whole machine (the workers, the database and
//! anything else running: a figure well above the workers' plus the database's means the
//! machine was not quiet), and the load average after each worker count.
//!
//! One command, on throwaway servers of its own (a PostgreSQL, then a MariaDB, started as
//! the tests start them: loopback, a temporary directory; PostgreSQL with `fsync=off`,
//! MariaDB with `innodb_flush_log_at_trx_commit=2`):
//!
//! ```sh
//! cargo build --release -p host-example --bin bench --features db-test-support
//! target/release/bench --claims 100000 --claims-database throwaway
//! ```
//!
//! `--claims-counts 4` runs only 4 workers; `--claims-runs 5` runs each count 5 times;
//! `--claims-database throwaway-mariadb` runs only the MariaDB.
//! `--claims-empty delete` empties the tables by `DELETE` and then analyzes them, so each
//! run starts on an outbox churned as production's is (see [`Emptying::Delete`]). Before
//! the claim was made independent of the statistics, this stalled PostgreSQL's claims for
//! many minutes (one claim ran 12–68 s; the run never ended):
//!
//! ```sh
//! target/release/bench --claims 100000 --claims-database throwaway --claims-counts 4 \
//!   --claims-runs 7 --claims-empty delete
//! ```
//! Or on a database of your own (one the bench may empty: its outbox, users, links and
//! log are emptied with `TRUNCATE` before each run):
//!
//! ```sh
//! target/release/bench --claims 100000 --claims-database postgres://user:pass@127.0.0.1:5432/db
//! ```

use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use host_example::clock::{now_ms, now_rfc3339};
use host_example::database::{DatabaseUrl, Db, Dialect};
use host_example::store::{LogEntry, SettleOutcome, Settlement, Store, UserRecord};
use host_example::types::{Link, UserEvent};
use serde_json::{Map, json};

use crate::proc_cpu::{machine_cpu_seconds, process_cpu_seconds};

/// Events a worker claims at once (the delivery's batch).
const BATCH: u32 = 100;

/// How the tables are emptied before each run (`--claims-empty`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Emptying {
    /// `TRUNCATE`: each run starts as on a new database.
    Truncate,
    /// `DELETE`, then `ANALYZE`: each run starts on the tables the previous runs churned
    /// (dead rows, bloated indexes) with statistics taken while the outbox was empty, as
    /// a production outbox is after a burst of events delivered and deleted, once
    /// autovacuum has analyzed it between bursts (on PostgreSQL: `reltuples` 0 with the
    /// table's pages still there).
    Delete,
}

fn empty(url: &DatabaseUrl, emptying: Emptying) -> Result<()> {
    // Through the store first, so the schema exists.
    drop(Store::open_url(url, Duration::from_secs(30))?);
    let mut db = Db::connect(url)?;
    let verb = match emptying {
        Emptying::Truncate => "TRUNCATE TABLE",
        Emptying::Delete => "DELETE FROM",
    };
    for table in ["outbox", "links", "users", "provisioning_log"] {
        db.execute(&format!("{verb} {table}"), &[])?;
        if emptying == Emptying::Delete {
            let analyze = match db.dialect() {
                Dialect::Postgres => format!("ANALYZE {table}"),
                _ => format!("ANALYZE TABLE {table}"),
            };
            // MariaDB answers ANALYZE TABLE with a result set.
            db.query(&analyze, &[])?;
        }
    }
    Ok(())
}

/// Threads that queue the events (setup, not measured).
const ENQUEUERS: usize = 4;

/// Users added or changed per transaction while queueing.
const ENQUEUE_CHUNK: usize = 500;

/// Queues `events`: `events / 4` users (explicit ids, so the queueing threads do not wait
/// for one another's id), each with a `created` event and then up to 3 `updated` ones,
/// by [`ENQUEUERS`] threads, each its own users in rounds.
fn enqueue(url: &DatabaseUrl, events: usize) -> Result<()> {
    let users = events.div_ceil(4).max(1);
    let run = now_ms();
    let threads: Vec<_> = (0..ENQUEUERS)
        .map(|t| {
            let url = url.clone();
            std::thread::spawn(move || -> Result<()> {
                let mut store = Store::open_url(&url, Duration::from_secs(30))?;
                let mine: Vec<usize> = (t..users).step_by(ENQUEUERS).collect();
                let ids: Vec<String> = mine.iter().map(|i| format!("claims-{i}")).collect();
                for chunk in mine.chunks(ENQUEUE_CHUNK) {
                    store.batch(|s| {
                        for &i in chunk {
                            let mut fields = Map::new();
                            fields.insert("seq".into(), json!("1"));
                            s.add_user(
                                UserRecord {
                                    id: format!("claims-{i}"),
                                    name: format!("claims-{run}-{i}"),
                                    mail: format!("claims-{run}-{i}@example.com"),
                                    fields,
                                    active: true,
                                },
                                true,
                            )?;
                        }
                        Ok(())
                    })?;
                }
                for round in 2..=4 {
                    // The users whose `round`th event is one of the `events`.
                    let left = events.saturating_sub(users * (round - 1));
                    let with: Vec<&String> = mine
                        .iter()
                        .zip(&ids)
                        .filter(|(i, _)| **i < left)
                        .map(|(_, id)| id)
                        .collect();
                    for chunk in with.chunks(ENQUEUE_CHUNK) {
                        store.batch(|s| {
                            for id in chunk {
                                s.change_user(id, UserEvent::Updated, |u| {
                                    u.fields.insert("seq".into(), json!(round.to_string()));
                                })?;
                            }
                            Ok(())
                        })?;
                    }
                }
                Ok(())
            })
        })
        .collect();
    for t in threads {
        t.join()
            .map_err(|_| anyhow::anyhow!("a queueing thread panicked"))??;
    }
    Ok(())
}

/// One worker: claims and settles until the outbox is empty; returns the events it
/// claimed and those it settled.
fn worker(url: &DatabaseUrl) -> Result<(Vec<i64>, Vec<i64>, Spent)> {
    let mut store = Store::open_url(url, Duration::from_secs(30))?;
    let mut claimed = Vec::new();
    let mut settled = Vec::new();
    let mut spent = Spent::default();
    loop {
        let started = Instant::now();
        let events = store.claim_due(now_ms(), false, BATCH)?;
        spent.claiming += started.elapsed().as_secs_f64();
        spent.claims += 1;
        claimed.extend(events.iter().map(|e| e.seq));
        if events.is_empty() {
            spent.empty_claims += 1;
            if store.outbox_depth()?.0 == 0 {
                return Ok((claimed, settled, spent));
            }
            // Every user left has an event in flight on another worker.
            std::thread::sleep(Duration::from_millis(1));
            continue;
        }
        // As `delivery` records a batch: one `Store::settle`.
        let settlements: Vec<Settlement> = events
            .iter()
            .map(|e| Settlement {
                seq: e.seq,
                user_id: e.user_id.clone(),
                outcome: SettleOutcome::Delivered {
                    link: Some(Link {
                        remote_id: format!("remote-{}", e.user_id),
                        version: Some(format!("W/\"{}\"", e.seq)),
                        snapshot: None,
                    }),
                    fingerprint: "fingerprint".into(),
                },
                log: LogEntry {
                    at: now_rfc3339(),
                    user_id: e.user_id.clone(),
                    operation: "updated".into(),
                    http_status: None,
                    outcome: "updated".into(),
                    error: None,
                    duration_ms: 0,
                },
            })
            .collect();
        let started = Instant::now();
        settled.extend(store.settle(&settlements)?);
        spent.settling += started.elapsed().as_secs_f64();
    }
}

/// Where a worker's time went: seconds waiting for its claims and its settles (on two
/// cores shared with the database, mostly the database's work and the wait for a core),
/// the claims made, and those that found nothing to claim.
#[derive(Default, Clone, Copy)]
struct Spent {
    claiming: f64,
    settling: f64,
    claims: u64,
    empty_claims: u64,
}

impl std::ops::AddAssign for Spent {
    fn add_assign(&mut self, o: Spent) {
        self.claiming += o.claiming;
        self.settling += o.settling;
        self.claims += o.claims;
        self.empty_claims += o.empty_claims;
    }
}

/// What a `--claims` run does: events queued per drain, drains per worker count, the
/// worker counts, and how the tables are emptied between drains.
pub struct Run {
    pub events: usize,
    pub runs: usize,
    pub counts: Vec<usize>,
    pub emptying: Emptying,
}

/// Runs the claim benchmark and prints its table: on `database`, or with `throwaway` on
/// a PostgreSQL and then a MariaDB of its own (the tests' throwaway servers: feature
/// `db-test-support`). Each worker count in `counts` is run `runs` times.
pub fn run(database: &str, run: &Run) -> Result<()> {
    if run.events == 0 || run.runs == 0 || run.counts.contains(&0) {
        bail!("--claims, --claims-runs and --claims-counts must be at least 1");
    }
    match database {
        "throwaway" => run_throwaway(run, true),
        "throwaway-mariadb" => run_throwaway(run, false),
        _ => run_on(database, run),
    }
}

/// The throwaway servers: a PostgreSQL (if `postgres`), then a MariaDB.
#[cfg(feature = "db-test-support")]
fn run_throwaway(run: &Run, postgres: bool) -> Result<()> {
    use host_example::database::test_support::{TestMariaDb, TestPostgres};
    if postgres {
        let pg = TestPostgres::start()?;
        run_on(&pg.create_database("claims")?, run)?;
    }
    let maria = TestMariaDb::start()?;
    run_on(&maria.create_database("claims")?, run)
}

#[cfg(not(feature = "db-test-support"))]
fn run_throwaway(_run: &Run, _postgres: bool) -> Result<()> {
    bail!("--claims-database throwaway needs the bench built with --features db-test-support")
}

/// CPU seconds so far: this process's (the workers'), and the machine's busy time (every
/// core's, all processes: the workers, the database, and whatever else runs).
fn cpu_seconds() -> (f64, f64) {
    let own = process_cpu_seconds("self").unwrap_or(0.0);
    let busy = machine_cpu_seconds().map_or(0.0, |(busy, _)| busy);
    (own, busy)
}

/// The database server's CPU seconds so far, when it runs on this machine and says where
/// its process is: MariaDB's `@@pid_file` (its threads are one process). `None` for
/// PostgreSQL (a process per connection) or a server elsewhere. Unlike the machine's
/// busy time, this leaves out whatever else the machine runs.
fn database_cpu_seconds(url: &DatabaseUrl) -> Option<f64> {
    let mut db = Db::connect(url).ok()?;
    if db.dialect() == Dialect::Postgres {
        return None;
    }
    let pid_file = db
        .query("SELECT @@pid_file", &[])
        .ok()?
        .first()?
        .text(0)
        .ok()?;
    let pid = std::fs::read_to_string(pid_file).ok()?;
    process_cpu_seconds(pid.trim())
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

/// The database's own counters of the work a drain did (MariaDB: statements, index
/// look-ups, rows stepped over, rows read by InnoDB, row-lock waits; PostgreSQL: commits,
/// rows fetched by index and rows returned by scans), by name. Empty if they cannot be
/// read.
fn database_counters(url: &DatabaseUrl) -> Vec<(String, f64)> {
    let read = || -> Result<Vec<(String, f64)>> {
        let mut db = Db::connect(url)?;
        let rows = match db.dialect() {
            Dialect::Postgres => db.query(
                "SELECT 'xact_commit', CAST(xact_commit AS TEXT) FROM pg_stat_database
                   WHERE datname = current_database()
                 UNION ALL SELECT 'tup_fetched', CAST(tup_fetched AS TEXT) FROM pg_stat_database
                   WHERE datname = current_database()
                 UNION ALL SELECT 'tup_returned', CAST(tup_returned AS TEXT) FROM pg_stat_database
                   WHERE datname = current_database()",
                &[],
            )?,
            _ => db.query(
                "SELECT VARIABLE_NAME, VARIABLE_VALUE FROM information_schema.GLOBAL_STATUS
                 WHERE VARIABLE_NAME IN ('QUESTIONS', 'HANDLER_READ_KEY', 'HANDLER_READ_NEXT',
                     'HANDLER_READ_RND_NEXT', 'INNODB_ROWS_READ', 'INNODB_ROW_LOCK_WAITS',
                     'INNODB_DEADLOCKS')
                 ORDER BY VARIABLE_NAME",
                &[],
            )?,
        };
        rows.iter()
            .map(|r| Ok((r.text(0)?.to_lowercase(), r.text(1)?.parse().unwrap_or(0.0))))
            .collect()
    };
    read().unwrap_or_default()
}

/// One drain by `workers` workers of `events` freshly queued: (seconds, workers' CPU
/// seconds, the machine's busy CPU seconds, the database's counters' increase).
fn drain(url: &DatabaseUrl, run: &Run, workers: usize) -> Result<Drained> {
    let events = run.events;
    empty(url, run.emptying)?;
    enqueue(url, events)?;
    let counters_before = database_counters(url);
    let (own_before, busy_before) = cpu_seconds();
    let database_before = database_cpu_seconds(url);
    let started = Instant::now();
    let handles: Vec<_> = (0..workers)
        .map(|_| {
            let url = url.clone();
            std::thread::spawn(move || worker(&url))
        })
        .collect();
    let mut claimed: Vec<i64> = Vec::with_capacity(events);
    let mut settled: Vec<i64> = Vec::with_capacity(events);
    let mut spent = Spent::default();
    for h in handles {
        let (c, s, w) = h
            .join()
            .map_err(|_| anyhow::anyhow!("a worker panicked"))??;
        claimed.extend(c);
        settled.extend(s);
        spent += w;
    }
    let secs = started.elapsed().as_secs_f64();
    let (own_after, busy_after) = cpu_seconds();
    let database_cpu = database_cpu_seconds(url)
        .zip(database_before)
        .map(|(after, before)| after - before);
    let counters: Vec<(String, f64)> = database_counters(url)
        .into_iter()
        .zip(counters_before)
        .map(|((name, after), (_, before))| (name, after - before))
        .collect();
    // Exactly once: no event claimed twice (the lease, 60 s, outlasts the run), and every
    // event settled once.
    let (claims, settles) = (claimed.len(), settled.len());
    claimed.sort_unstable();
    claimed.dedup();
    settled.sort_unstable();
    settled.dedup();
    if claimed.len() != claims || settled.len() != settles || settles != events {
        bail!(
            "{claims} claims of {} events, {settles} settles of {}; {events} queued",
            claimed.len(),
            settled.len()
        );
    }
    Ok(Drained {
        secs,
        own_cpu: own_after - own_before,
        busy_cpu: busy_after - busy_before,
        database_cpu,
        counters,
        spent,
    })
}

/// What one drain measured.
struct Drained {
    secs: f64,
    /// This process's CPU seconds (the workers').
    own_cpu: f64,
    /// The machine's busy CPU seconds.
    busy_cpu: f64,
    /// The database server's CPU seconds ([`database_cpu_seconds`]).
    database_cpu: Option<f64>,
    /// The database's counters' increase ([`database_counters`]).
    counters: Vec<(String, f64)>,
    /// The workers' time, all together.
    spent: Spent,
}

fn run_on(database: &str, run: &Run) -> Result<()> {
    let (events, runs, counts) = (run.events, run.runs, &run.counts);
    let url = DatabaseUrl::parse(database, std::path::Path::new("."))?;
    if url.sqlite_path().is_some() {
        bail!("--claims-database must be a postgres:// or mysql:// URL");
    }
    println!(
        "\n## Outbox claims on {url}: {events} events, 4 per user, {runs} runs each, emptied by {:?} (load average {})\n",
        run.emptying,
        load_average()
    );
    println!(
        "| workers | events/s, median | lowest – highest | workers' CPU µs/event | database's CPU µs/event | machine's CPU µs/event | events a claim | a claim, ms | a settle, ms | empty claims | load average after |"
    );
    println!("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
    let mut counters_per_count = Vec::new();
    for &workers in counts.iter() {
        let mut rates = Vec::with_capacity(runs);
        let (mut own, mut busy) = (0.0, 0.0);
        let mut database = Some(0.0);
        let mut spent = Spent::default();
        let mut counters: Vec<(String, f64)> = Vec::new();
        for _ in 0..runs {
            let drained = drain(&url, run, workers)?;
            rates.push(events as f64 / drained.secs);
            own += drained.own_cpu;
            busy += drained.busy_cpu;
            database = database.zip(drained.database_cpu).map(|(sum, d)| sum + d);
            spent += drained.spent;
            if counters.is_empty() {
                counters = drained.counters;
            } else {
                for ((_, sum), (_, v)) in counters.iter_mut().zip(drained.counters) {
                    *sum += v;
                }
            }
        }
        rates.sort_by(f64::total_cmp);
        let median = if runs % 2 == 1 {
            rates[runs / 2]
        } else {
            (rates[runs / 2 - 1] + rates[runs / 2]) / 2.0
        };
        let per_event = |cpu: f64| cpu * 1e6 / (events * runs) as f64;
        println!(
            "| {workers} | {median:.0} | {:.0} – {:.0} | {:.0} | {} | {:.0} | {:.1} | {:.2} | {:.2} | {:.1}% | {} |",
            rates[0],
            rates[runs - 1],
            per_event(own),
            database.map_or("–".to_string(), |d| format!("{:.0}", per_event(d))),
            per_event(busy),
            // Events per claim that found any.
            (events * runs) as f64 / (spent.claims - spent.empty_claims).max(1) as f64,
            spent.claiming * 1e3 / spent.claims.max(1) as f64,
            // Every claim but the empty ones is followed by one settle.
            spent.settling * 1e3 / (spent.claims - spent.empty_claims).max(1) as f64,
            spent.empty_claims as f64 * 100.0 / spent.claims.max(1) as f64,
            load_average()
        );
        counters_per_count.push((workers, counters));
    }
    // The database's work per event, from its own counters.
    if let Some((_, first)) = counters_per_count.first()
        && !first.is_empty()
    {
        let names: Vec<&str> = first.iter().map(|(n, _)| n.as_str()).collect();
        println!("\nThe database's counters per event:\n");
        println!("| workers | {} |", names.join(" | "));
        println!("| ---: |{}", " ---: |".repeat(names.len()));
        for (workers, counters) in &counters_per_count {
            let cells: Vec<String> = counters
                .iter()
                .map(|(_, v)| format!("{:.2}", v / (events * runs) as f64))
                .collect();
            println!("| {workers} | {} |", cells.join(" | "));
        }
    }
    Ok(())
}
