//! Values and rows as the three databases hand them, in one shape.

use anyhow::bail;
use postgres::types::{IsNull, ToSql, Type, to_sql_checked};

/// A parameter or a column's value. Booleans are stored as integers 0/1.
#[derive(Debug, Clone, PartialEq)]
pub enum SqlValue {
    /// SQL NULL.
    Null,
    /// An integer (any integer column).
    Int(i64),
    /// Text.
    Text(String),
}

impl From<i64> for SqlValue {
    fn from(v: i64) -> Self {
        SqlValue::Int(v)
    }
}
impl From<u32> for SqlValue {
    fn from(v: u32) -> Self {
        SqlValue::Int(i64::from(v))
    }
}
impl From<bool> for SqlValue {
    fn from(v: bool) -> Self {
        SqlValue::Int(i64::from(v))
    }
}
impl From<&str> for SqlValue {
    fn from(v: &str) -> Self {
        SqlValue::Text(v.to_string())
    }
}
impl From<String> for SqlValue {
    fn from(v: String) -> Self {
        SqlValue::Text(v)
    }
}
impl From<&String> for SqlValue {
    fn from(v: &String) -> Self {
        SqlValue::Text(v.clone())
    }
}
impl<T: Into<SqlValue>> From<Option<T>> for SqlValue {
    fn from(v: Option<T>) -> Self {
        v.map_or(SqlValue::Null, Into::into)
    }
}

impl rusqlite::ToSql for SqlValue {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        use rusqlite::types::{ToSqlOutput, ValueRef};
        Ok(match self {
            SqlValue::Null => ToSqlOutput::Borrowed(ValueRef::Null),
            SqlValue::Int(i) => ToSqlOutput::Borrowed(ValueRef::Integer(*i)),
            SqlValue::Text(s) => ToSqlOutput::Borrowed(ValueRef::Text(s.as_bytes())),
        })
    }
}

/// One row: its columns in the query's order.
#[derive(Debug, Clone, PartialEq)]
pub struct Row(pub Vec<SqlValue>);

impl Row {
    fn at(&self, i: usize) -> anyhow::Result<&SqlValue> {
        match self.0.get(i) {
            Some(v) => Ok(v),
            None => bail!("the row has no column {i}"),
        }
    }

    /// Column `i` as an integer; an error when it is null or text.
    pub fn int(&self, i: usize) -> anyhow::Result<i64> {
        match self.at(i)? {
            SqlValue::Int(v) => Ok(*v),
            // MariaDB hands some computed integers back as decimal text.
            SqlValue::Text(t) => match t.parse() {
                Ok(v) => Ok(v),
                Err(_) => bail!("column {i} is not an integer"),
            },
            SqlValue::Null => bail!("column {i} is null"),
        }
    }

    /// Column `i` as an integer, or `None` when null.
    pub fn opt_int(&self, i: usize) -> anyhow::Result<Option<i64>> {
        match self.at(i)? {
            SqlValue::Null => Ok(None),
            _ => self.int(i).map(Some),
        }
    }

    /// Column `i` as text; an error when it is null. An integer is written out.
    pub fn text(&self, i: usize) -> anyhow::Result<String> {
        match self.at(i)? {
            SqlValue::Text(t) => Ok(t.clone()),
            SqlValue::Int(v) => Ok(v.to_string()),
            SqlValue::Null => bail!("column {i} is null"),
        }
    }

    /// Column `i` as text, or `None` when null.
    pub fn opt_text(&self, i: usize) -> anyhow::Result<Option<String>> {
        match self.at(i)? {
            SqlValue::Null => Ok(None),
            _ => self.text(i).map(Some),
        }
    }

    /// Column `i` as a boolean (non-zero is true).
    pub fn bool(&self, i: usize) -> anyhow::Result<bool> {
        Ok(self.int(i)? != 0)
    }
}

pub(super) fn from_sqlite(v: rusqlite::types::ValueRef<'_>) -> SqlValue {
    use rusqlite::types::ValueRef;
    match v {
        ValueRef::Null => SqlValue::Null,
        ValueRef::Integer(i) => SqlValue::Int(i),
        // Stored reals are not written by this host; keep them readable as text.
        ValueRef::Real(f) => SqlValue::Text(f.to_string()),
        ValueRef::Text(t) | ValueRef::Blob(t) => {
            SqlValue::Text(String::from_utf8_lossy(t).into_owned())
        }
    }
}

/// A parameter for PostgreSQL that takes the type the server inferred for its placeholder:
/// an integer goes into `BIGINT`, `INTEGER`, `SMALLINT` or `BOOLEAN` alike, text into any
/// text type, so statements need no casts.
#[derive(Debug)]
pub(super) struct PgParam(SqlValue);

impl ToSql for PgParam {
    fn to_sql(
        &self,
        ty: &Type,
        out: &mut bytes::BytesMut,
    ) -> Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        match &self.0 {
            SqlValue::Null => Ok(IsNull::Yes),
            SqlValue::Int(v) => match *ty {
                Type::INT8 => v.to_sql(ty, out),
                Type::INT4 => i32::try_from(*v)?.to_sql(ty, out),
                Type::INT2 => i16::try_from(*v)?.to_sql(ty, out),
                Type::BOOL => (*v != 0).to_sql(ty, out),
                _ => v.to_string().as_str().to_sql(ty, out),
            },
            SqlValue::Text(s) => match *ty {
                Type::INT8 => s.parse::<i64>()?.to_sql(ty, out),
                _ => s.as_str().to_sql(ty, out),
            },
        }
    }

    fn accepts(_: &Type) -> bool {
        true
    }

    to_sql_checked!();
}

pub(super) fn pg_params(params: &[SqlValue]) -> Vec<PgParam> {
    params.iter().cloned().map(PgParam).collect()
}

pub(super) fn pg_refs(params: &[PgParam]) -> Vec<&(dyn ToSql + Sync)> {
    params.iter().map(|p| p as &(dyn ToSql + Sync)).collect()
}

pub(super) fn from_pg_row(row: &postgres::Row) -> anyhow::Result<Row> {
    let mut values = Vec::with_capacity(row.len());
    for (i, column) in row.columns().iter().enumerate() {
        let ty = column.type_();
        let v = match *ty {
            Type::INT8 => row.try_get::<_, Option<i64>>(i)?.map(SqlValue::Int),
            Type::INT4 => row
                .try_get::<_, Option<i32>>(i)?
                .map(|v| SqlValue::Int(v.into())),
            Type::INT2 => row
                .try_get::<_, Option<i16>>(i)?
                .map(|v| SqlValue::Int(v.into())),
            Type::BOOL => row
                .try_get::<_, Option<bool>>(i)?
                .map(|v| SqlValue::Int(v.into())),
            Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::NAME => {
                row.try_get::<_, Option<String>>(i)?.map(SqlValue::Text)
            }
            _ => bail!(
                "column {} has type {ty}, which this host does not read",
                column.name()
            ),
        };
        values.push(v.unwrap_or(SqlValue::Null));
    }
    Ok(Row(values))
}

pub(super) fn my_params(params: &[SqlValue]) -> mysql::Params {
    if params.is_empty() {
        return mysql::Params::Empty;
    }
    mysql::Params::Positional(
        params
            .iter()
            .map(|p| match p {
                SqlValue::Null => mysql::Value::NULL,
                SqlValue::Int(i) => mysql::Value::Int(*i),
                SqlValue::Text(s) => mysql::Value::Bytes(s.as_bytes().to_vec()),
            })
            .collect(),
    )
}

pub(super) fn from_my_row(row: mysql::Row) -> anyhow::Result<Row> {
    let values = row.unwrap();
    let mut out = Vec::with_capacity(values.len());
    for v in values {
        out.push(match v {
            mysql::Value::NULL => SqlValue::Null,
            mysql::Value::Int(i) => SqlValue::Int(i),
            mysql::Value::UInt(u) => SqlValue::Int(i64::try_from(u)?),
            mysql::Value::Bytes(b) => SqlValue::Text(String::from_utf8(b)?),
            mysql::Value::Float(f) => SqlValue::Text(f.to_string()),
            mysql::Value::Double(f) => SqlValue::Text(f.to_string()),
            other => bail!("a column of a type this host does not read: {other:?}"),
        });
    }
    Ok(Row(out))
}
