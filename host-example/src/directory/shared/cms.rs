//! The CMS users beside the SCIM users, on PostgreSQL and MariaDB as on SQLite: a User an
//! identity provider writes through `serve` is also kept as a normal CMS user, in the
//! store's `users` table of the same database (its id is the SCIM id), in the same
//! transaction as the SCIM resource, so the two never disagree. As on SQLite these writes
//! are not queued for outbound provisioning (they came from the identity provider).
//!
//! The CMS record is the component's reverse-mapped view of the resource (the `cms`
//! argument of the directory's create and replace), built by the same
//! [`cms_record`](super::super::backend::cms_record) as the SQLite directory's. A password
//! never reaches it: the mapping refuses `password` as a target, and the resource's
//! password is kept only as its argon2id hash in `scim_resources.password_hash`.
//!
//! The directory's ids are UUIDs, so the store's numeric-id high-water mark
//! (`meta.last_user_id`, which the SQLite mirror raises for numeric ids) never moves here.

use serde_json::Value;

use super::engine::{Conn, Failure, TxError};
use crate::directory::backend::cms_record;
use crate::types::{CmsUser, DirectoryError};

/// Writes (inserts or updates) the CMS user of the SCIM User `id` inside the write's
/// transaction; nothing without a CMS view or a login name. A login name another CMS user
/// holds (user names are unique without regard to case) is a conflict, and the whole
/// write rolls back.
pub(super) fn mirror(
    conn: &mut Conn,
    id: &str,
    json: &str,
    cms: Option<&CmsUser>,
) -> Result<(), TxError> {
    let Some(record) = cms_record(id, json, cms) else {
        return Ok(());
    };
    let fields = Value::Object(record.fields).to_string();
    let exists = !conn
        .rows("SELECT 1 FROM users WHERE id = ? FOR UPDATE", &[id.into()])?
        .is_empty();
    let written = if exists {
        conn.exec(
            "UPDATE users SET name = ?, mail = ?, fields = ?, active = ? WHERE id = ?",
            &[
                record.name.as_str().into(),
                record.mail.as_str().into(),
                fields.into(),
                record.active.into(),
                id.into(),
            ],
        )
    } else {
        conn.exec(
            "INSERT INTO users (id, name, mail, fields, active) VALUES (?, ?, ?, ?, ?)",
            &[
                id.into(),
                record.name.as_str().into(),
                record.mail.as_str().into(),
                fields.into(),
                record.active.into(),
            ],
        )
    };
    match written {
        Ok(_) => Ok(()),
        Err(Failure::Unique) => Err(TxError::Directory(DirectoryError::Conflict(format!(
            "the CMS already has a user named {:?}",
            record.name
        )))),
        Err(f) => Err(TxError::Sql(f)),
    }
}

/// Deletes the CMS user of a deleted SCIM User, inside the delete's transaction.
pub(super) fn remove(conn: &mut Conn, id: &str) -> Result<(), Failure> {
    conn.exec("DELETE FROM users WHERE id = ?", &[id.into()])?;
    Ok(())
}
