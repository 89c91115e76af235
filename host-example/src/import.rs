//! Loading users from files: CSV with a header row, or JSON Lines. Each record becomes a
//! [`UserRecord`]; a record that cannot be read is an error naming its row or line, kept
//! in place so the caller decides (the store's import rolls back on the first one).
//!
//! Columns and keys: `name` (required), `mail`, `id`, `status` or `active` (`0`, `false`,
//! `blocked` and `no` block the user), and any other as a field. In CSV, `roles` holds
//! roles separated by `|`; in JSON Lines it is an array.

use std::io::{BufRead, Read};
use std::path::Path;

use anyhow::{Context, bail};
use serde_json::{Map, Value};

use crate::store::UserRecord;

/// One record read from a file: the user, or why that row or line is unusable.
pub type ReadUser = anyhow::Result<UserRecord>;

/// Reads the users in `path`: CSV when it ends in `.csv`, JSON Lines otherwise (`.jsonl`,
/// `.ndjson`). The outer error is about the file as a whole.
pub fn read_users(path: &Path) -> anyhow::Result<Vec<ReadUser>> {
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or_default()
        .to_ascii_lowercase();
    let file = std::fs::File::open(path).with_context(|| format!("reading {}", path.display()))?;
    if ext == "csv" {
        read_csv(file)
    } else {
        read_json_lines(std::io::BufReader::new(file))
    }
}

/// Reads CSV with a header row. Errors name the row, counting the header as row 1.
pub fn read_csv(reader: impl Read) -> anyhow::Result<Vec<ReadUser>> {
    let mut reader = csv::Reader::from_reader(reader);
    let headers = reader.headers()?.clone();
    let mut out = Vec::new();
    for (i, row) in reader.records().enumerate() {
        out.push(row.map_err(anyhow::Error::from).and_then(|row| {
            let mut obj = Map::new();
            for (h, v) in headers.iter().zip(row.iter()) {
                let value = if h == "roles" {
                    Value::Array(
                        v.split('|')
                            .filter(|s| !s.is_empty())
                            .map(|s| Value::String(s.to_string()))
                            .collect(),
                    )
                } else {
                    Value::String(v.to_string())
                };
                obj.insert(h.to_string(), value);
            }
            record_from_object(obj).with_context(|| format!("row {}", i + 2))
        }));
    }
    Ok(out)
}

/// Reads JSON Lines: one object per line; blank lines are skipped. Errors name the line.
pub fn read_json_lines(reader: impl BufRead) -> anyhow::Result<Vec<ReadUser>> {
    let mut out = Vec::new();
    for (i, line) in reader.lines().enumerate() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        out.push(
            serde_json::from_str::<Value>(&line)
                .map_err(anyhow::Error::from)
                .and_then(|v| match v {
                    Value::Object(o) => record_from_object(o),
                    _ => bail!("not a JSON object"),
                })
                .with_context(|| format!("line {}", i + 1)),
        );
    }
    Ok(out)
}

fn record_from_object(mut obj: Map<String, Value>) -> anyhow::Result<UserRecord> {
    let text = |v: Option<Value>| match v {
        Some(Value::String(s)) => Some(s),
        Some(Value::Number(n)) => Some(n.to_string()),
        _ => None,
    };
    let name = text(obj.remove("name"))
        .filter(|s| !s.is_empty())
        .context("`name` is missing")?;
    let mail = text(obj.remove("mail")).unwrap_or_default();
    let id = text(obj.remove("id")).unwrap_or_default();
    let status = obj.remove("status").or_else(|| obj.remove("active"));
    let active = match status {
        None => true,
        Some(Value::Bool(b)) => b,
        Some(Value::Number(n)) => n.as_f64() != Some(0.0),
        Some(Value::String(s)) => !matches!(
            s.to_ascii_lowercase().as_str(),
            "0" | "false" | "blocked" | "no"
        ),
        Some(_) => true,
    };
    Ok(UserRecord {
        id,
        name,
        mail,
        fields: obj,
        active,
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn error_of(result: &ReadUser) -> String {
        format!("{:#}", result.as_ref().expect_err("an error"))
    }

    #[test]
    fn csv_with_a_header_row() {
        let text = "name,mail,status,roles,field_first_name\n\
                    alice,alice@example.com,active,editor|member,Alice\n\
                    bob,bob@example.com,blocked,,Bob\n";
        let users: Vec<UserRecord> = read_csv(text.as_bytes())
            .expect("the CSV reads")
            .into_iter()
            .collect::<anyhow::Result<_>>()
            .expect("every row reads");
        assert_eq!(users.len(), 2);
        assert_eq!(users[0].name, "alice");
        assert_eq!(users[0].mail, "alice@example.com");
        assert!(users[0].active);
        assert_eq!(users[0].fields["roles"], json!(["editor", "member"]));
        assert_eq!(users[0].fields["field_first_name"], json!("Alice"));
        assert!(users[0].id.is_empty());
        assert!(!users[1].active, "blocked");
        assert_eq!(users[1].fields["roles"], json!([]));
    }

    #[test]
    fn json_lines() {
        let text = r#"{"name": "alice", "mail": "alice@example.com", "roles": ["editor"]}

{"name": "bob", "id": 7, "active": false}
"#;
        let users: Vec<UserRecord> = read_json_lines(text.as_bytes())
            .expect("the file reads")
            .into_iter()
            .collect::<anyhow::Result<_>>()
            .expect("every line reads");
        assert_eq!(users.len(), 2, "the blank line is skipped");
        assert_eq!(users[0].fields["roles"], json!(["editor"]));
        assert!(users[0].active);
        assert_eq!(users[1].id, "7");
        assert_eq!(users[1].mail, "");
        assert!(!users[1].active);
    }

    #[test]
    fn bad_csv_rows_name_their_row() {
        let text =
            "name,mail\nalice,a@example.com\n,nobody@example.com\ncarol,c@example.com,extra\n";
        let rows = read_csv(text.as_bytes()).expect("the header reads");
        assert_eq!(rows.len(), 3);
        assert!(rows[0].is_ok());
        assert_eq!(error_of(&rows[1]), "row 3: `name` is missing");
        let uneven = error_of(&rows[2]);
        assert!(uneven.contains("line: 4"), "{uneven}");
    }

    #[test]
    fn bad_json_lines_name_their_line() {
        let text = "{\"name\": \"alice\"}\n[1, 2]\n{\"mail\": \"x@example.com\"}\n{not json\n";
        let rows = read_json_lines(text.as_bytes()).expect("the file reads");
        assert_eq!(rows.len(), 4);
        assert!(rows[0].is_ok());
        assert_eq!(error_of(&rows[1]), "line 2: not a JSON object");
        assert_eq!(error_of(&rows[2]), "line 3: `name` is missing");
        assert!(
            error_of(&rows[3]).starts_with("line 4: "),
            "{}",
            error_of(&rows[3])
        );
    }

    #[test]
    fn read_users_picks_the_format_by_extension() {
        let dir = std::env::temp_dir().join(format!("scim-import-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let csv = dir.join("users.CSV");
        std::fs::write(&csv, "name\nalice\n").expect("write");
        let jsonl = dir.join("users.jsonl");
        std::fs::write(&jsonl, "{\"name\": \"bob\"}\n").expect("write");
        let name = |path: &Path| {
            let rows = read_users(path).expect("reads");
            rows.into_iter().next().expect("one").expect("ok").name
        };
        assert_eq!(name(&csv), "alice");
        assert_eq!(name(&jsonl), "bob");
        let missing = read_users(&dir.join("none.csv")).expect_err("no file");
        assert!(format!("{missing:#}").contains("none.csv"), "{missing:#}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
