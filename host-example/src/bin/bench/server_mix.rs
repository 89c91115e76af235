//! Phase 2, the server mix, ours against a peer: `POST /Users`, `GET /Users/{id}` and a
//! filtered `GET /Users`, at 1 and at 8 connections, on our `serve` and on scim2-server in
//! alternating rounds; then against the loopback floor (a server that only answers), and
//! reads of a user with 1,000 groups stored.

use std::net::TcpListener;

use anyhow::{Result, bail};
use host_example::Runtime;
use serde_json::{Value, json};

use crate::client::{created_id, expect};
use crate::figures::{Figures, grouped};
use crate::runner::{PhaseFigure, phase};
use crate::servers::{SyncTarget, start_peer, start_target};

/// Measures phase 2 and prints it, adding issue 13's rows for it to `figures`. The peer
/// runs only `with_peer` (and when it is installed).
pub fn run(
    runtime: &Runtime,
    requests: usize,
    rounds: usize,
    with_peer: bool,
    figures: &mut Figures,
) -> Result<()> {
    println!(
        "\n== server role: {requests} requests per phase, at {CONNECTIONS:?} connections, {rounds} rounds (ours, then the peer, each round; the median of the rounds) =="
    );
    let (ours, peer) = bench_servers(runtime, requests, rounds, with_peer)?;
    println!(
        "{:<30} {:>5} {:>10} {:>9} {:>10} {:>9} {:>10}",
        "phase", "conns", "ours req/s", "ours p99", "peer req/s", "peer p99", "ours/peer"
    );
    for (c, connections) in CONNECTIONS.iter().enumerate() {
        for (i, phase) in PHASES.iter().enumerate() {
            let o = ours[c][i];
            match peer.as_ref().map(|p| p[c][i]) {
                Some(p) => println!(
                    "{phase:<30} {connections:>5} {:>10.0} {:>6.2} ms {:>10.0} {:>6.2} ms {:>9.2}x",
                    o.per_second,
                    o.p99_ms,
                    p.per_second,
                    p.p99_ms,
                    o.per_second / p.per_second
                ),
                None => println!(
                    "{phase:<30} {connections:>5} {:>10.0} {:>6.2} ms {:>10} {:>9} {:>10}",
                    o.per_second, o.p99_ms, "-", "-", "-"
                ),
            }
        }
    }

    // What any server could reach with this client on this machine: one that parses
    // nothing and stores nothing. A ratio to scim2-server cannot exceed floor / peer.
    let floor = bench_floor(requests)?;
    println!(
        "\n{:<30} {:>5} {:>10} {:>9} {:>14}",
        "the loopback floor: phase", "conns", "req/s", "p99", "ours of floor"
    );
    for (c, connections) in CONNECTIONS.iter().enumerate() {
        for (i, phase) in PHASES.iter().enumerate() {
            let f = floor[c][i];
            println!(
                "{phase:<30} {connections:>5} {:>10.0} {:>6.2} ms {:>13.0}%",
                f.per_second,
                f.p99_ms,
                100.0 * ours[c][i].per_second / f.per_second
            );
        }
    }

    server_figures(&ours, peer.as_deref(), &floor, rounds, figures);

    let (none, with_groups) = bench_groups(runtime, requests)?;
    println!(
        "\nGET /Users/{{id}} at 1 connection, ours: {:.0}/s (p99 {:.2} ms) with no groups; \
         {:.0}/s (p99 {:.2} ms) with {GROUPS} groups of {GROUP_SIZE} members stored, each \
         user in {GROUPS_PER_USER} (each read computes the user's groups)",
        none.per_second, none.p99_ms, with_groups.per_second, with_groups.p99_ms
    );
    figures.push(
        format!(
            "`serve` GET by id at 1 connection, {} groups of {GROUP_SIZE} members stored, each user in {GROUPS_PER_USER}",
            grouped(GROUPS as u64)
        ),
        format!(
            "{}/s, p99 {:.2} ms ({}/s with no groups, in the same phase)",
            grouped(with_groups.per_second as u64),
            with_groups.p99_ms,
            grouped(none.per_second as u64)
        ),
        "",
        None,
    );
    Ok(())
}

/// Issue 13's rows for the server role: ours against scim2-server (when it ran) and the
/// loopback floor, at each connection count.
fn server_figures(
    ours: &[[PhaseFigure; 3]],
    peer: Option<&[[PhaseFigure; 3]]>,
    floor: &[[PhaseFigure; 3]],
    rounds: usize,
    figures: &mut Figures,
) {
    let of_rounds = format!("median of {rounds} rounds");
    // What one phase measured at each connection count, and whether its ratio to the peer
    // (and its p99, when `max_p99_ms` is given) met the goal everywhere.
    let describe = |phase: usize, max_p99_ms: Option<f64>| -> (String, Option<bool>) {
        let mut parts = Vec::new();
        let mut met = peer.map(|_| true);
        for (c, connections) in CONNECTIONS.iter().enumerate() {
            let o = ours[c][phase];
            let unit = if *connections == 1 {
                "connection"
            } else {
                "connections"
            };
            match peer {
                Some(p) => {
                    let p = p[c][phase];
                    let ratio = o.per_second / p.per_second;
                    parts.push(format!(
                        "{connections} {unit}: {} vs {}/s, {ratio:.1}×, p99 {:.2} ms",
                        grouped(o.per_second as u64),
                        grouped(p.per_second as u64),
                        o.p99_ms
                    ));
                    let p99_ok = max_p99_ms.is_none_or(|max| o.p99_ms <= max);
                    met = met.map(|m| m && ratio >= 10.0 && p99_ok);
                }
                None => parts.push(format!(
                    "{connections} {unit}: {}/s, p99 {:.2} ms (scim2-server skipped)",
                    grouped(o.per_second as u64),
                    o.p99_ms
                )),
            }
        }
        (parts.join("; "), met)
    };
    let (post, post_met) = describe(0, Some(5.0));
    figures.push(
        format!("`serve` POST /Users, ours ÷ scim2-server ({of_rounds})"),
        post,
        "≥ 10×, p99 ≤ 5 ms",
        post_met,
    );
    let (get, get_met) = describe(1, None);
    let (filtered, filtered_met) = describe(2, None);
    figures.push(
        format!("`serve` GET by id, ours ÷ scim2-server ({of_rounds})"),
        get,
        "keep ≥ 10×",
        get_met,
    );
    figures.push(
        format!("`serve` filtered GET (`userName eq`), ours ÷ scim2-server ({of_rounds})"),
        filtered,
        "keep ≥ 10×",
        filtered_met,
    );
    let floor_text = CONNECTIONS
        .iter()
        .enumerate()
        .map(|(c, connections)| {
            format!(
                "{connections}: {} POST, {} GET by id, {} filtered /s",
                grouped(floor[c][0].per_second as u64),
                grouped(floor[c][1].per_second as u64),
                grouped(floor[c][2].per_second as u64)
            )
        })
        .collect::<Vec<_>>()
        .join("; ");
    figures.push(
        "the loopback floor (a server that only answers, same client), by connections",
        floor_text,
        "the ceiling of every ratio above",
        None,
    );
}

const PHASES: [&str; 3] = [
    "POST /Users",
    "GET /Users/{id}",
    "GET /Users?filter=userName eq",
];

/// The client counts the server mix runs at.
const CONNECTIONS: [usize; 2] = [1, 8];

/// Ours and scim2-server (when `with_peer` and it is installed), each started once, then
/// measured in `rounds` rounds: each round runs every phase at every connection count on
/// ours, then on the peer, so that both meet the machine's neighbours alike. Each figure is
/// the median of its rounds (a phase's rate, and its p99, apart).
fn bench_servers(
    runtime: &Runtime,
    m: usize,
    rounds: usize,
    with_peer: bool,
) -> Result<(PhaseTable, Option<PhaseTable>)> {
    let Some((ours_server, ours_base, ours_token)) = start_target(runtime, SyncTarget::Ours)?
    else {
        bail!("our own server cannot be missing");
    };
    println!("ours: {ours_base} (a temporary SQLite file)");
    let peer = if with_peer {
        start_peer()?
    } else {
        println!("scim2-server: skipped (--skip-peer)");
        None
    };
    if let Some((process, base, _)) = &peer {
        println!("peer: scim2-server at {base} (pid {})", process.0.id());
    }
    let at_each_count = |base: &str, token: &str, round: usize, label: &str| {
        CONNECTIONS
            .iter()
            .map(|&c| run_phases(base, token, m, c, round, label))
            .collect::<Result<Vec<_>>>()
    };
    let mut ours_rounds = Vec::new();
    let mut peer_rounds = Vec::new();
    for round in 0..rounds {
        ours_rounds.push(at_each_count(&ours_base, &ours_token, round, "ours")?);
        if let Some((_, base, token)) = &peer {
            peer_rounds.push(at_each_count(base, token, round, "peer")?);
        }
    }
    drop(ours_server);
    let peer_figures = peer.map(|_| median_of_rounds(&peer_rounds));
    Ok((median_of_rounds(&ours_rounds), peer_figures))
}

/// A server's figures: per connection count ([`CONNECTIONS`]), per phase ([`PHASES`]).
type PhaseTable = Vec<[PhaseFigure; 3]>;

/// Each phase's median rate and median p99 over the rounds, per connection count.
fn median_of_rounds(rounds: &[PhaseTable]) -> PhaseTable {
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v.get(v.len() / 2).copied().unwrap_or(0.0)
    };
    (0..CONNECTIONS.len())
        .map(|c| {
            std::array::from_fn(|phase| PhaseFigure {
                per_second: median(rounds.iter().map(|r| r[c][phase].per_second).collect()),
                p99_ms: median(rounds.iter().map(|r| r[c][phase].p99_ms).collect()),
            })
        })
        .collect()
}

/// The three phases against a server that only answers: it reads each request's head and
/// body and writes a fixed JSON answer (201 with an id for a POST, 200 with one result for
/// a GET), a thread per connection. What is left of a request's time is the client, the
/// loopback and the scheduler, which every server measured here pays too.
fn bench_floor(m: usize) -> Result<Vec<[PhaseFigure; 3]>> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let base = format!("http://{}/scim/v2", listener.local_addr()?);
    // The accepting thread lives until the process ends; each connection's thread ends when
    // its client hangs up, at the end of each phase.
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            std::thread::spawn(move || answer_fixed(stream));
        }
    });
    CONNECTIONS
        .iter()
        .map(|&c| run_phases(&base, "floor", m, c, 0, "floor"))
        .collect()
}

/// Groups stored for [`bench_groups`], the members of each, and the groups each user is
/// in (which sets how many users there are).
const GROUPS: usize = 1_000;
const GROUP_SIZE: usize = 20;
const GROUPS_PER_USER: usize = 10;

/// `GET /Users/{id}` on a fresh serve of ours, at 1 connection, before and after
/// [`GROUPS`] groups are stored: every read of a user computes its `groups`, which must
/// not cost a pass over every group.
fn bench_groups(runtime: &Runtime, m: usize) -> Result<(PhaseFigure, PhaseFigure)> {
    let Some((server, base, token)) = start_target(runtime, SyncTarget::Ours)? else {
        bail!("our own server cannot be missing");
    };
    let users_url = format!("{base}/Users");
    let users = GROUPS * GROUP_SIZE / GROUPS_PER_USER;
    let (_, ids) = phase(&token, users, 8, |client, i| {
        let body = json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
            "userName": format!("member-{i}"),
        });
        let (status, text) = client.post(&users_url, &body.to_string())?;
        created_id(status, &text, "POST /Users")
    })?;
    let read = |ids: &[String]| {
        phase(&token, m, 1, |client, i| {
            let url = format!("{users_url}/{}", ids[i % ids.len()]);
            let (status, text) = client.get(&url)?;
            expect(status, 200, &text, "GET /Users/{id}").map(drop)
        })
        .map(|(figure, _)| figure)
    };
    let none = read(&ids)?;
    let groups_url = format!("{base}/Groups");
    phase(&token, GROUPS, 8, |client, g| {
        let members: Vec<Value> = (0..GROUP_SIZE)
            .map(|k| json!({"value": ids[(g * GROUP_SIZE + k) % ids.len()]}))
            .collect();
        let body = json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"],
            "displayName": format!("group-{g}"),
            "members": members,
        });
        let (status, text) = client.post(&groups_url, &body.to_string())?;
        expect(status, 201, &text, "POST /Groups").map(drop)
    })?;
    let with_groups = read(&ids)?;
    drop(server);
    Ok((none, with_groups))
}

/// Serves one kept-alive connection for [`bench_floor`] until the client closes it.
fn answer_fixed(stream: std::net::TcpStream) {
    use std::io::{BufRead, BufReader, Read, Write};
    let _ = stream.set_nodelay(true);
    let Ok(mut writer) = stream.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(stream);
    let mut created = 0u64;
    let mut line = String::new();
    loop {
        line.clear();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let post = line.starts_with("POST ");
        let mut length = 0usize;
        loop {
            line.clear();
            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                return;
            }
            let header = line.trim_end();
            if header.is_empty() {
                break;
            }
            if let Some((name, value)) = header.split_once(':')
                && name.eq_ignore_ascii_case("content-length")
            {
                length = value.trim().parse().unwrap_or(0);
            }
        }
        let mut body = vec![0; length];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        let (status, answer) = if post {
            created += 1;
            ("201 Created", format!(r#"{{"id":"{created}"}}"#))
        } else {
            ("200 OK", r#"{"totalResults":1}"#.to_string())
        };
        let response = format!(
            "HTTP/1.1 {status}\r\nContent-Type: application/scim+json\r\nContent-Length: {}\r\n\r\n{answer}",
            answer.len()
        );
        if writer.write_all(response.as_bytes()).is_err() {
            return;
        }
    }
}

/// The three phases against one server at `connections` clients at once: `m` creates, then
/// `m` reads by id, then `m` filtered reads of those users.
fn run_phases(
    base: &str,
    token: &str,
    m: usize,
    connections: usize,
    round: usize,
    label: &str,
) -> Result<[PhaseFigure; 3]> {
    // Each round writes users of its own, so that a server measured again takes new names.
    let run = format!("{:x}-{connections}-{round}", std::process::id());
    let names: Vec<String> = (0..m).map(|i| format!("bench-{run}-{i:05}")).collect();
    let bodies: Vec<String> = names
        .iter()
        .enumerate()
        .map(|(i, name)| {
            json!({
                "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
                "userName": name,
                "externalId": format!("{run}-{i}"),
                "name": {"givenName": format!("First{i}"), "familyName": format!("Last{i}")},
                "displayName": format!("First{i} Last{i}"),
                "emails": [{"type": "work", "value": format!("{name}@example.org"), "primary": true}],
                "active": true
            })
            .to_string()
        })
        .collect();
    let users_url = format!("{base}/Users");

    let (post, ids) = phase(token, m, connections, |client, i| {
        let (status, text) = client.post(&users_url, &bodies[i])?;
        created_id(status, &text, &format!("{label} POST /Users"))
    })?;
    let (get, _) = phase(token, m, connections, |client, i| {
        let (status, text) = client.get(&format!("{users_url}/{}", ids[i]))?;
        expect(
            status,
            200,
            &text,
            &format!("{label} GET /Users/{}", ids[i]),
        )
        .map(drop)
    })?;
    let (filter, _) = phase(token, m, connections, |client, i| {
        let name = &names[i];
        let url = format!(
            "{users_url}?filter=userName%20eq%20%22{}%22",
            url::form_urlencoded::byte_serialize(name.as_bytes()).collect::<String>()
        );
        let (status, text) = client.get(&url)?;
        let list = expect(status, 200, &text, &format!("{label} filter {name}"))?;
        if list.get("totalResults").and_then(Value::as_u64) != Some(1) {
            bail!("{label}: filter userName eq {name:?} did not find exactly one user");
        }
        Ok(())
    })?;
    Ok([post, get, filter])
}
