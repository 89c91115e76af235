//! The SCIM filter grammar (RFC 7644 §3.4.2.2): parsing, canonical printing, escaping for
//! building filters, and evaluation against a resource's JSON.
//!
//! Keywords and operators are case-insensitive; `not` binds tighter than `and`, which binds
//! tighter than `or`, and both binary operators associate to the left. `not` must be
//! followed by a parenthesised filter, as the RFC's ABNF requires.
//!
//! The parser never panics and bounds its work: nesting of `(`, `not` and `[` is limited to
//! [`MAX_DEPTH`] levels and a filter to [`MAX_TERMS`] comparisons, so hostile input cannot
//! exhaust the stack either while parsing or later while evaluating or printing the tree.

use std::cmp::Ordering;
use std::fmt;

use serde_json::{Map, Value};

use crate::scim::attr::{self, AttrName, Parsed, PathError, describe};

/// How deeply `(`, `not (` and `[` may nest.
pub const MAX_DEPTH: usize = 64;

/// How many comparisons (and `pr` tests) one filter may hold. The `and`/`or` chains they
/// form are as deep as they are long, so this also bounds the depth of the tree.
pub const MAX_TERMS: usize = 256;

/// A comparison operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CompareOp {
    /// `eq`: equal.
    Eq,
    /// `ne`: not equal.
    Ne,
    /// `co`: contains.
    Co,
    /// `sw`: starts with.
    Sw,
    /// `ew`: ends with.
    Ew,
    /// `gt`: greater than.
    Gt,
    /// `ge`: greater than or equal.
    Ge,
    /// `lt`: less than.
    Lt,
    /// `le`: less than or equal.
    Le,
}

impl CompareOp {
    /// The operator as written in a filter, lowercase.
    pub fn as_str(self) -> &'static str {
        match self {
            CompareOp::Eq => "eq",
            CompareOp::Ne => "ne",
            CompareOp::Co => "co",
            CompareOp::Sw => "sw",
            CompareOp::Ew => "ew",
            CompareOp::Gt => "gt",
            CompareOp::Ge => "ge",
            CompareOp::Lt => "lt",
            CompareOp::Le => "le",
        }
    }

    /// Parses an operator, case-insensitively.
    pub fn from_keyword(s: &str) -> Option<CompareOp> {
        const ALL: [CompareOp; 9] = [
            CompareOp::Eq,
            CompareOp::Ne,
            CompareOp::Co,
            CompareOp::Sw,
            CompareOp::Ew,
            CompareOp::Gt,
            CompareOp::Ge,
            CompareOp::Lt,
            CompareOp::Le,
        ];
        ALL.into_iter()
            .find(|op| op.as_str().eq_ignore_ascii_case(s))
    }
}

impl fmt::Display for CompareOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A parsed SCIM filter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Filter {
    /// `path op value`, such as `userName eq "bjensen"`.
    Compare {
        /// The attribute compared.
        path: AttrName,
        /// The operator.
        op: CompareOp,
        /// The literal: a string, number, boolean or null.
        value: Value,
    },
    /// `path pr`: the attribute has a value.
    Present(AttrName),
    /// Both hold.
    And(Box<Filter>, Box<Filter>),
    /// Either holds.
    Or(Box<Filter>, Box<Filter>),
    /// `not (...)`: the inner filter does not hold.
    Not(Box<Filter>),
    /// `attr[filter]`: some value of the multi-valued attribute matches the inner filter,
    /// whose attribute names are relative to that value.
    ValuePath {
        /// The multi-valued attribute; it has no sub-attribute.
        path: AttrName,
        /// The filter applied to each value.
        filter: Box<Filter>,
    },
}

/// Why a filter could not be parsed. The server role answers it with `scimType`
/// `invalidFilter`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FilterError {
    /// The byte offset in the input where the problem was found.
    pub position: usize,
    /// What was expected and what was found.
    pub message: String,
}

impl FilterError {
    fn new(position: usize, message: impl Into<String>) -> Self {
        FilterError {
            position,
            message: message.into(),
        }
    }

    /// The SCIM `scimType` for this error.
    pub fn scim_type(&self) -> &'static str {
        "invalidFilter"
    }
}

impl From<PathError> for FilterError {
    fn from(e: PathError) -> Self {
        FilterError::new(e.position, e.message)
    }
}

impl fmt::Display for FilterError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invalid filter at position {}: {}",
            self.position, self.message
        )
    }
}

impl std::error::Error for FilterError {}

/// Parses a complete filter.
pub fn parse(input: &str) -> Result<Filter, FilterError> {
    let mut p = Parser::new(input, 0, 0);
    let f = p.parse_or()?;
    p.skip_ws();
    if p.pos < input.len() {
        let rest = p.rest();
        let msg = if rest.starts_with(')') {
            "unexpected ')' with no matching '('".to_string()
        } else {
            format!(
                "expected 'and', 'or' or end of filter, found {}",
                describe(rest)
            )
        };
        return Err(FilterError::new(p.pos, msg));
    }
    Ok(f)
}

/// Parses the filter inside a PATCH path's brackets, starting at byte `start` of `input`
/// and stopping before the first unmatched `]` (or the end). Returns the filter and the
/// byte offset where it stopped; the caller checks for the `]`.
pub(crate) fn parse_value_filter(
    input: &str,
    start: usize,
) -> Result<(Filter, usize), FilterError> {
    let mut p = Parser::new(input, start, 1);
    let f = p.parse_or()?;
    p.skip_ws();
    Ok((f, p.pos))
}

impl Filter {
    /// Parses a complete filter; the same as [`parse`].
    pub fn parse(input: &str) -> Result<Filter, FilterError> {
        parse(input)
    }

    /// `path eq value` for a string value.
    pub fn equals(path: AttrName, value: impl Into<String>) -> Filter {
        Filter::Compare {
            path,
            op: CompareOp::Eq,
            value: Value::String(value.into()),
        }
    }

    /// Both `self` and `other`.
    pub fn and(self, other: Filter) -> Filter {
        Filter::And(Box::new(self), Box::new(other))
    }

    /// Either `self` or `other`.
    pub fn or(self, other: Filter) -> Filter {
        Filter::Or(Box::new(self), Box::new(other))
    }
}

/// A correctly escaped JSON string literal for `value`, for building filters such as
/// `userName eq "<value>"`: quotes, backslashes and control characters are escaped.
pub fn quote(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('"');
    for c in value.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{08}' => out.push_str("\\b"),
            '\u{0c}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 => {
                out.push_str(&format!("\\u{:04x}", c as u32));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// The filter `<path> eq "<value>"`, with the value escaped by [`quote`].
pub fn eq_filter(path: &str, value: &str) -> String {
    format!("{path} eq {}", quote(value))
}

// ---------------------------------------------------------------------------------------
// Parsing
// ---------------------------------------------------------------------------------------

struct Parser<'a> {
    s: &'a str,
    pos: usize,
    depth: usize,
    terms: usize,
}

/// Characters that end a bare word (attribute path, operator, keyword, number).
fn is_delim(c: char) -> bool {
    c.is_whitespace() || matches!(c, '(' | ')' | '[' | ']' | '"')
}

impl<'a> Parser<'a> {
    fn new(s: &'a str, pos: usize, depth: usize) -> Self {
        Parser {
            s,
            pos,
            depth,
            terms: 0,
        }
    }

    fn rest(&self) -> &'a str {
        self.s.get(self.pos..).unwrap_or("")
    }

    fn peek(&self) -> Option<char> {
        self.rest().chars().next()
    }

    fn skip_ws(&mut self) {
        let rest = self.rest();
        let trimmed = rest.trim_start();
        self.pos += rest.len() - trimmed.len();
    }

    /// The bare word at the current position (possibly empty), without consuming it.
    fn word(&self) -> &'a str {
        let rest = self.rest();
        let end = rest.find(is_delim).unwrap_or(rest.len());
        &rest[..end]
    }

    /// Consumes `kw` (case-insensitively) after optional whitespace if it is a whole word.
    /// Leaves the position untouched otherwise.
    fn eat_keyword(&mut self, kw: &str) -> bool {
        let save = self.pos;
        self.skip_ws();
        // The RFC puts a space before a keyword; also accept one right after ')', ']' or
        // a closing quote, where no ambiguity is possible.
        let separated = self.pos > save
            || self.s[..save]
                .chars()
                .next_back()
                .is_some_and(|c| matches!(c, ')' | ']' | '"'));
        if separated && self.word().eq_ignore_ascii_case(kw) {
            self.pos += kw.len();
            return true;
        }
        self.pos = save;
        false
    }

    fn enter(&mut self) -> Result<(), FilterError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(FilterError::new(
                self.pos,
                format!("filter nests deeper than {MAX_DEPTH} levels"),
            ));
        }
        Ok(())
    }

    fn parse_or(&mut self) -> Result<Filter, FilterError> {
        let mut left = self.parse_and()?;
        while self.eat_keyword("or") {
            let right = self.parse_and()?;
            left = Filter::Or(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn parse_and(&mut self) -> Result<Filter, FilterError> {
        let mut left = self.parse_unary()?;
        while self.eat_keyword("and") {
            let right = self.parse_unary()?;
            left = Filter::And(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn expect_close(&mut self, close: char, opened_at: usize) -> Result<(), FilterError> {
        self.skip_ws();
        if self.peek() == Some(close) {
            self.pos += 1;
            return Ok(());
        }
        let open = if close == ')' { '(' } else { '[' };
        Err(FilterError::new(
            self.pos,
            format!(
                "expected '{close}' to close the '{open}' at position {opened_at}, found {}",
                describe(self.rest())
            ),
        ))
    }

    fn parse_group(&mut self) -> Result<Filter, FilterError> {
        // The caller has checked that the current character is '('.
        let opened_at = self.pos;
        self.pos += 1;
        self.enter()?;
        let inner = self.parse_or()?;
        self.expect_close(')', opened_at)?;
        self.depth -= 1;
        Ok(inner)
    }

    fn parse_unary(&mut self) -> Result<Filter, FilterError> {
        self.skip_ws();
        if self.peek() == Some('(') {
            return self.parse_group();
        }
        let word = self.word();
        if word.eq_ignore_ascii_case("not") {
            let not_at = self.pos;
            self.pos += word.len();
            self.skip_ws();
            if self.peek() != Some('(') {
                return Err(FilterError::new(
                    self.pos,
                    format!(
                        "expected '(' after 'not' at position {not_at} (the RFC requires parentheses), found {}",
                        describe(self.rest())
                    ),
                ));
            }
            self.enter()?;
            let inner = self.parse_group()?;
            self.depth -= 1;
            return Ok(Filter::Not(Box::new(inner)));
        }
        self.parse_atom()
    }

    fn parse_atom(&mut self) -> Result<Filter, FilterError> {
        let start = self.pos;
        let word = self.word();
        if word.is_empty() {
            return Err(FilterError::new(
                start,
                format!(
                    "expected an attribute path, '(' or 'not', found {}",
                    describe(self.rest())
                ),
            ));
        }
        self.terms += 1;
        if self.terms > MAX_TERMS {
            return Err(FilterError::new(
                start,
                format!("filter has more than {MAX_TERMS} comparisons"),
            ));
        }
        let path = match attr::parse_name_token(word, start)? {
            Parsed::Name(n) => n,
            Parsed::SchemaOnly(_) => {
                return Err(FilterError::new(
                    start + word.len(),
                    "expected ':' and an attribute name after the schema URN",
                ));
            }
        };
        self.pos += word.len();
        if self.peek() == Some('[') {
            if path.sub_attr.is_some() {
                return Err(FilterError::new(
                    self.pos,
                    "a value filter '[...]' must follow the attribute name, not a sub-attribute",
                ));
            }
            let opened_at = self.pos;
            self.pos += 1;
            self.enter()?;
            let inner = self.parse_or()?;
            self.expect_close(']', opened_at)?;
            self.depth -= 1;
            return Ok(Filter::ValuePath {
                path,
                filter: Box::new(inner),
            });
        }
        let after_path = self.pos;
        self.skip_ws();
        let op_word = self.word();
        if self.pos == after_path || op_word.is_empty() {
            return Err(FilterError::new(
                self.pos,
                format!(
                    "expected an operator (eq, ne, co, sw, ew, gt, ge, lt, le, pr) after '{word}', found {}",
                    describe(self.rest())
                ),
            ));
        }
        if op_word.eq_ignore_ascii_case("pr") {
            self.pos += op_word.len();
            return Ok(Filter::Present(path));
        }
        let Some(op) = CompareOp::from_keyword(op_word) else {
            return Err(FilterError::new(
                self.pos,
                format!(
                    "expected an operator (eq, ne, co, sw, ew, gt, ge, lt, le, pr), found '{op_word}'"
                ),
            ));
        };
        self.pos += op_word.len();
        let after_op = self.pos;
        self.skip_ws();
        if (self.pos == after_op && self.peek() != Some('"')) || self.pos >= self.s.len() {
            return Err(FilterError::new(
                self.pos,
                format!(
                    "expected a value after '{op_word}' (a quoted string, number, true, false or null), found {}",
                    describe(self.rest())
                ),
            ));
        }
        let value = self.parse_value()?;
        Ok(Filter::Compare { path, op, value })
    }

    fn parse_value(&mut self) -> Result<Value, FilterError> {
        let start = self.pos;
        if self.peek() == Some('"') {
            let bytes = self.s.as_bytes();
            let mut i = start + 1;
            while i < bytes.len() {
                match bytes[i] {
                    b'\\' => i += 2,
                    b'"' => break,
                    _ => i += 1,
                }
            }
            if i >= bytes.len() {
                return Err(FilterError::new(
                    start,
                    "unterminated string: expected a closing '\"'",
                ));
            }
            let literal = &self.s[start..=i];
            let value: String = serde_json::from_str(literal)
                .map_err(|e| FilterError::new(start, format!("invalid string literal: {e}")))?;
            self.pos = i + 1;
            return Ok(Value::String(value));
        }
        let word = self.word();
        let value = if word.eq_ignore_ascii_case("true") {
            Value::Bool(true)
        } else if word.eq_ignore_ascii_case("false") {
            Value::Bool(false)
        } else if word.eq_ignore_ascii_case("null") {
            Value::Null
        } else {
            match parse_number(word) {
                Some(n) => Value::Number(n),
                _ => {
                    return Err(FilterError::new(
                        start,
                        format!(
                            "expected a value (a quoted string, number, true, false or null), found {}",
                            if word.is_empty() {
                                describe(self.rest())
                            } else {
                                format!("'{word}'")
                            }
                        ),
                    ));
                }
            }
        };
        self.pos += word.len();
        Ok(value)
    }
}

/// Parses a JSON number. serde_json checks the grammar; fractions are re-read with the
/// standard library, whose conversion is correctly rounded, so printing and re-parsing a
/// float gives back the same float.
fn parse_number(word: &str) -> Option<serde_json::Number> {
    let n = serde_json::from_str::<serde_json::Number>(word).ok()?;
    if n.is_f64() {
        return word
            .parse::<f64>()
            .ok()
            .and_then(serde_json::Number::from_f64);
    }
    Some(n)
}

// ---------------------------------------------------------------------------------------
// Printing
// ---------------------------------------------------------------------------------------

fn write_value(f: &mut fmt::Formatter<'_>, v: &Value) -> fmt::Result {
    match v {
        Value::String(s) => f.write_str(&quote(s)),
        other => match serde_json::to_string(other) {
            Ok(s) => f.write_str(&s),
            Err(_) => Err(fmt::Error),
        },
    }
}

fn write_child(f: &mut fmt::Formatter<'_>, child: &Filter, parens: bool) -> fmt::Result {
    if parens {
        write!(f, "({child})")
    } else {
        write!(f, "{child}")
    }
}

/// Prints the canonical form: lowercase keywords, single spaces, string values escaped,
/// and parentheses exactly where precedence and left associativity need them, so that
/// `parse(&f.to_string()) == Ok(f)`.
impl fmt::Display for Filter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Filter::Compare { path, op, value } => {
                write!(f, "{path} {op} ")?;
                write_value(f, value)
            }
            Filter::Present(path) => write!(f, "{path} pr"),
            Filter::And(l, r) => {
                write_child(f, l, matches!(**l, Filter::Or(..)))?;
                f.write_str(" and ")?;
                write_child(f, r, matches!(**r, Filter::Or(..) | Filter::And(..)))
            }
            Filter::Or(l, r) => {
                write_child(f, l, false)?;
                f.write_str(" or ")?;
                write_child(f, r, matches!(**r, Filter::Or(..)))
            }
            Filter::Not(inner) => write!(f, "not ({inner})"),
            Filter::ValuePath { path, filter } => write!(f, "{path}[{filter}]"),
        }
    }
}

// ---------------------------------------------------------------------------------------
// Evaluation
// ---------------------------------------------------------------------------------------

/// Whether `resource` matches `filter`, with SCIM semantics:
///
/// - Attribute names are compared case-insensitively.
/// - String comparisons are case-insensitive, except for the `caseExact` attributes `id`,
///   `externalId` and `meta.version` (a practical rule that avoids needing the schema).
/// - A multi-valued attribute matches if any of its values matches. Comparing a complex
///   value directly (`emails eq "x"`) compares its `value` sub-attribute.
/// - `pr` holds for a value that is not null, not an empty string, not an empty array and
///   not an empty object.
/// - `ne` is the negation of `eq`, so it holds when the attribute has no value.
///   `eq null` holds when the attribute has no value, `ne null` when it has one.
/// - `co`, `sw`, `ew` apply to strings only. `gt`, `ge`, `lt`, `le` compare strings
///   lexicographically (ISO 8601 dateTimes therefore order correctly) and numbers
///   numerically; booleans support only `eq` and `ne`. Mismatched types never match.
/// - A name qualified with a core schema URN resolves at the top level; one qualified with
///   any other URN resolves inside the extension object keyed by that URN.
pub fn matches(filter: &Filter, resource: &Value) -> bool {
    match filter {
        Filter::And(l, r) => matches(l, resource) && matches(r, resource),
        Filter::Or(l, r) => matches(l, resource) || matches(r, resource),
        Filter::Not(inner) => !matches(inner, resource),
        Filter::Present(path) => candidates(path, resource).into_iter().any(is_present),
        Filter::Compare { path, op, value } => compare(path, *op, value, resource),
        Filter::ValuePath { path, filter } => {
            let Some(v) = resolve_attr(path, resource) else {
                return false;
            };
            let elements: Vec<&Value> = match v {
                Value::Array(items) => items.iter().collect(),
                other => vec![other],
            };
            let elements = match &path.sub_attr {
                None => elements,
                Some(sub) => elements
                    .into_iter()
                    .filter_map(|e| e.as_object().and_then(|o| attr::get_ci(o, sub)))
                    .collect(),
            };
            elements.into_iter().any(|e| matches(filter, e))
        }
    }
}

/// The object that holds attributes qualified with `urn`, within `resource`.
fn container<'a>(
    urn: Option<&str>,
    resource: &'a Map<String, Value>,
) -> Option<&'a Map<String, Value>> {
    match urn {
        None => Some(resource),
        Some(u) => match attr::get_ci(resource, u) {
            Some(Value::Object(ext)) => Some(ext),
            _ if attr::is_core_urn(u) => Some(resource),
            _ => None,
        },
    }
}

/// The value of the attribute (not the sub-attribute) that `path` names.
fn resolve_attr<'a>(path: &AttrName, resource: &'a Value) -> Option<&'a Value> {
    let obj = container(path.urn.as_deref(), resource.as_object()?)?;
    attr::get_ci(obj, &path.attr)
}

/// The scalar or complex values that `path` reaches, flattening multi-valued attributes.
fn candidates<'a>(path: &AttrName, resource: &'a Value) -> Vec<&'a Value> {
    let Some(v) = resolve_attr(path, resource) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    let mut push = |v: &'a Value| match v {
        Value::Array(items) => out.extend(items.iter()),
        other => out.push(other),
    };
    match &path.sub_attr {
        None => push(v),
        Some(sub) => {
            let parents: Vec<&Value> = match v {
                Value::Array(items) => items.iter().collect(),
                other => vec![other],
            };
            for parent in parents {
                if let Some(sv) = parent.as_object().and_then(|o| attr::get_ci(o, sub)) {
                    push(sv);
                }
            }
        }
    }
    out
}

fn is_present(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => !a.is_empty(),
        Value::Object(o) => o.values().any(is_present),
        Value::Bool(_) | Value::Number(_) => true,
    }
}

/// True for the attributes compared case-sensitively (`caseExact`).
fn is_case_exact(path: &AttrName) -> bool {
    if !path.is_top_level() {
        return false;
    }
    match &path.sub_attr {
        None => attr::name_eq(&path.attr, "id") || attr::name_eq(&path.attr, "externalId"),
        Some(sub) => attr::name_eq(&path.attr, "meta") && attr::name_eq(sub, "version"),
    }
}

fn compare(path: &AttrName, op: CompareOp, value: &Value, resource: &Value) -> bool {
    let cands: Vec<&Value> = candidates(path, resource)
        .into_iter()
        .filter_map(|c| match c {
            // A complex value compared directly stands for its `value` sub-attribute.
            Value::Object(o) => attr::get_ci(o, "value"),
            other => Some(other),
        })
        .collect();
    match op {
        CompareOp::Ne => !compare_any(&cands, CompareOp::Eq, value, is_case_exact(path)),
        _ => compare_any(&cands, op, value, is_case_exact(path)),
    }
}

fn compare_any(cands: &[&Value], op: CompareOp, value: &Value, case_exact: bool) -> bool {
    if value.is_null() {
        // `eq null` asks whether the attribute is unassigned.
        let present = cands.iter().any(|c| is_present(c));
        return op == CompareOp::Eq && !present;
    }
    cands.iter().any(|c| compare_one(c, op, value, case_exact))
}

fn ordered(op: CompareOp, ord: Ordering) -> bool {
    match op {
        CompareOp::Eq => ord == Ordering::Equal,
        CompareOp::Ne => ord != Ordering::Equal,
        CompareOp::Gt => ord == Ordering::Greater,
        CompareOp::Ge => ord != Ordering::Less,
        CompareOp::Lt => ord == Ordering::Less,
        CompareOp::Le => ord != Ordering::Greater,
        CompareOp::Co | CompareOp::Sw | CompareOp::Ew => false,
    }
}

fn compare_one(actual: &Value, op: CompareOp, expected: &Value, case_exact: bool) -> bool {
    match (actual, expected) {
        (Value::String(a), Value::String(e)) => {
            let (a, e) = if case_exact {
                (a.clone(), e.clone())
            } else {
                (a.to_lowercase(), e.to_lowercase())
            };
            match op {
                CompareOp::Co => a.contains(&e),
                CompareOp::Sw => a.starts_with(&e),
                CompareOp::Ew => a.ends_with(&e),
                _ => ordered(op, a.cmp(&e)),
            }
        }
        (Value::Number(a), Value::Number(e)) => {
            let ord = match (a.as_i64(), e.as_i64()) {
                (Some(x), Some(y)) => Some(x.cmp(&y)),
                _ => match (a.as_f64(), e.as_f64()) {
                    (Some(x), Some(y)) => x.partial_cmp(&y),
                    _ => None,
                },
            };
            ord.is_some_and(|o| ordered(op, o))
        }
        (Value::Bool(a), Value::Bool(e)) => match op {
            CompareOp::Eq => a == e,
            CompareOp::Ne => a != e,
            _ => false,
        },
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn f(s: &str) -> Filter {
        match parse(s) {
            Ok(f) => f,
            Err(e) => panic!("{s}: {e}"),
        }
    }

    const RFC_EXAMPLES: [&str; 17] = [
        r#"userName eq "bjensen""#,
        r#"name.familyName co "O'Malley""#,
        r#"userName sw "J""#,
        r#"urn:ietf:params:scim:schemas:core:2.0:User:userName sw "J""#,
        r#"title pr"#,
        r#"meta.lastModified gt "2011-05-13T04:42:34Z""#,
        r#"meta.lastModified ge "2011-05-13T04:42:34Z""#,
        r#"meta.lastModified lt "2011-05-13T04:42:34Z""#,
        r#"meta.lastModified le "2011-05-13T04:42:34Z""#,
        r#"title pr and userType eq "Employee""#,
        r#"title pr or userType eq "Intern""#,
        r#"schemas eq "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User""#,
        r#"userType eq "Employee" and (emails co "example.com" or emails.value co "example.org")"#,
        r#"userType ne "Employee" and not (emails co "example.com" or emails.value co "example.org")"#,
        r#"userType eq "Employee" and (emails.type eq "work")"#,
        r#"userType eq "Employee" and emails[type eq "work" and value co "@example.com"]"#,
        r#"emails[type eq "work" and value co "@example.com"] or ims[type eq "xmpp" and value co "@foo.com"]"#,
    ];

    #[test]
    fn rfc_examples_parse_and_round_trip() {
        for s in RFC_EXAMPLES {
            let parsed = f(s);
            let printed = parsed.to_string();
            assert_eq!(f(&printed), parsed, "{s} -> {printed}");
        }
        // Canonical printing keeps the input where it is already canonical.
        assert_eq!(f(RFC_EXAMPLES[13]).to_string(), RFC_EXAMPLES[13]);
        assert_eq!(f(RFC_EXAMPLES[16]).to_string(), RFC_EXAMPLES[16]);
        assert_eq!(
            f(RFC_EXAMPLES[14]).to_string(),
            r#"userType eq "Employee" and emails.type eq "work""#
        );
    }

    #[test]
    fn ast_shape_and_precedence() {
        let a = AttrName::simple;
        assert_eq!(
            f(r#"a pr or b pr and c pr"#),
            Filter::Present(a("a")).or(Filter::Present(a("b")).and(Filter::Present(a("c"))))
        );
        assert_eq!(
            f(r#"a pr AND b pr Or c pr"#),
            Filter::Present(a("a"))
                .and(Filter::Present(a("b")))
                .or(Filter::Present(a("c")))
        );
        assert_eq!(
            f(r#"a pr and (b pr or c pr)"#).to_string(),
            "a pr and (b pr or c pr)"
        );
        assert_eq!(
            f(r#"a pr and (b pr and c pr)"#).to_string(),
            "a pr and (b pr and c pr)"
        );
        assert_eq!(
            f(r#"(a pr and b pr) and c pr"#).to_string(),
            "a pr and b pr and c pr"
        );
        assert_eq!(
            f(r#"NOT (a PR)"#),
            Filter::Not(Box::new(Filter::Present(a("a"))))
        );
        assert_eq!(f(r#"userName EQ "x""#), Filter::equals(a("userName"), "x"));
        let Filter::Compare { path, .. } =
            f(r#"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager.value eq "1""#)
        else {
            panic!("not a comparison");
        };
        assert_eq!(path.attr, "manager");
        assert_eq!(path.sub_attr.as_deref(), Some("value"));
        // Literals.
        for (s, v) in [
            ("x eq 42", json!(42)),
            ("x eq -1.5e3", json!(-1500.0)),
            ("x eq true", json!(true)),
            ("x eq False", json!(false)),
            ("x eq null", Value::Null),
            (r#"x eq "a\"b\\c\u00e9\n""#, json!("a\"b\\cé\n")),
        ] {
            let Filter::Compare { value, .. } = f(s) else {
                panic!("{s}");
            };
            assert_eq!(value, v, "{s}");
        }
        // Lenient spacing around parentheses and quotes.
        assert!(parse(r#"(a eq "1")or(b eq"2")"#).is_ok());
    }

    #[test]
    fn malformed_filters_are_errors() {
        let cases: [(&str, &str); 14] = [
            ("userName eq", "expected a value"),
            (r#"userName zz "x""#, "expected an operator"),
            (r#"(userName eq "a""#, "expected ')'"),
            (r#"userName eq "unterminated"#, "unterminated string"),
            (r#"not userName eq "a""#, "expected '(' after 'not'"),
            ("", "expected an attribute path"),
            ("userName", "expected an operator"),
            (r#"userName eq "a")"#, "unexpected ')'"),
            (r#"userName eq "a" xor b pr"#, "expected 'and', 'or'"),
            ("userName eq bjensen", "expected a value"),
            (r#"emails[type eq "work""#, "expected ']'"),
            (r#"1abc eq "x""#, "starting with a letter"),
            (r#"x eq "bad \q escape""#, "invalid string literal"),
            ("x eq 1e999", "expected a value"),
        ];
        for (s, msg) in cases {
            match parse(s) {
                Ok(v) => panic!("{s:?} parsed as {v:?}"),
                Err(e) => assert!(e.message.contains(msg), "{s:?}: {e}"),
            }
        }
        let e = parse(r#"(userName eq "a""#).err();
        assert_eq!(e.map(|e| e.position), Some(16));
        assert_eq!(
            parse("a b").err().map(|e| e.scim_type()),
            Some("invalidFilter")
        );
    }

    #[test]
    fn hostile_nesting_is_rejected() {
        let deep = format!("{}a pr{}", "(".repeat(10_000), ")".repeat(10_000));
        assert!(parse(&deep).is_err_and(|e| e.message.contains("deeper")));
        let nots = format!("{}a pr{}", "not (".repeat(10_000), ")".repeat(10_000));
        assert!(parse(&nots).is_err());
        let brackets = format!("{}a pr{}", "a[".repeat(10_000), "]".repeat(10_000));
        assert!(parse(&brackets).is_err());
        let unclosed = "(".repeat(100_000);
        assert!(parse(&unclosed).is_err());
        let ok = format!("{}a pr{}", "(".repeat(MAX_DEPTH), ")".repeat(MAX_DEPTH));
        assert!(parse(&ok).is_ok());
        let many = vec!["a pr"; MAX_TERMS + 1].join(" or ");
        assert!(parse(&many).is_err_and(|e| e.message.contains("comparisons")));
    }

    /// Parses, prints, evaluates, clones, compares and drops a chain of MAX_TERMS terms,
    /// which is a tree MAX_TERMS deep; true if every step worked.
    fn longest_chain() -> bool {
        let chain = vec![r#"userName eq "zz""#; MAX_TERMS].join(" and ");
        let Ok(parsed) = parse(&chain) else {
            return false;
        };
        let printed = parsed.to_string();
        let matched = matches(&parsed, &json!({"userName": "zz"}));
        let copy = parsed.clone();
        let same = copy == parsed;
        drop(parsed);
        printed == chain && matched && same
    }

    #[test]
    fn longest_chain_fits_a_small_stack() {
        // Natively, run on a 512 KiB stack even in an unoptimised build; under wasm the
        // runtime's own stack is the constraint.
        #[cfg(not(target_arch = "wasm32"))]
        {
            let handle = std::thread::Builder::new()
                .stack_size(512 * 1024)
                .spawn(longest_chain);
            let result = handle.ok().and_then(|h| h.join().ok());
            assert_eq!(result, Some(true));
        }
        #[cfg(target_arch = "wasm32")]
        assert!(longest_chain());
    }

    #[test]
    fn quoting_round_trips() {
        let nasty = "a \"quoted\" \\ back\\slash\n\t\u{1} é";
        let built = eq_filter("userName", nasty);
        let Filter::Compare { value, .. } = f(&built) else {
            panic!("{built}");
        };
        assert_eq!(value, json!(nasty));
        assert_eq!(quote(r#"a"b\c"#), r#""a\"b\\c""#);
        assert_eq!(quote("\u{1f}"), r#""\u001f""#);
        assert_eq!(eq_filter("userName", "bjensen"), r#"userName eq "bjensen""#);
    }

    fn user() -> Value {
        json!({
            "schemas": [
                "urn:ietf:params:scim:schemas:core:2.0:User",
                "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
            ],
            "id": "2819c223-7f76-453a-919d-413861904646",
            "externalId": "BJensen",
            "userName": "bjensen@example.com",
            "name": {"familyName": "O'Malley", "givenName": "Barbara"},
            "title": "Tour Guide",
            "userType": "Employee",
            "active": true,
            "emails": [
                {"value": "bjensen@example.com", "type": "work", "primary": true},
                {"value": "babs@jensen.org", "type": "home"}
            ],
            "ims": [{"value": "someaimhandle", "type": "aim"}],
            "groups": [],
            "loginCount": 7,
            "meta": {
                "resourceType": "User",
                "lastModified": "2011-05-13T04:42:34Z",
                "version": "W/\"3694e05e9dff591\""
            },
            "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {
                "employeeNumber": "701984",
                "department": "Sales",
                "manager": {"value": "26118915-6090-4610-87e4-49d8ca9f808d"}
            }
        })
    }

    #[test]
    fn evaluation() {
        let u = user();
        let yes = [
            r#"userName eq "BJENSEN@example.com""#,
            r#"USERNAME eq "bjensen@example.com""#,
            r#"name.familyName co "o'malley""#,
            r#"userName sw "bj""#,
            r#"urn:ietf:params:scim:schemas:core:2.0:User:userName sw "B""#,
            r#"title pr"#,
            r#"meta.lastModified gt "2011-05-13T04:42:33Z""#,
            r#"meta.lastModified ge "2011-05-13T04:42:34Z""#,
            r#"meta.lastModified lt "2012-01-01T00:00:00Z""#,
            r#"meta.lastModified le "2011-05-13T04:42:34Z""#,
            r#"title pr and userType eq "Employee""#,
            r#"title pr or userType eq "Intern""#,
            r#"schemas eq "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User""#,
            r#"userType eq "Employee" and (emails co "example.com" or emails.value co "example.org")"#,
            r#"userType eq "Employee" and (emails.type eq "work")"#,
            r#"userType eq "Employee" and emails[type eq "work" and value co "@example.com"]"#,
            r#"emails[type eq "work" and value co "@example.com"] or ims[type eq "xmpp" and value co "@foo.com"]"#,
            r#"emails eq "babs@jensen.org""#,
            r#"emails[type eq "home"]"#,
            r#"emails[primary eq true and type eq "WORK"]"#,
            r#"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department eq "sales""#,
            r#"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager.value pr"#,
            r#"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager eq "26118915-6090-4610-87e4-49d8ca9f808d""#,
            r#"id eq "2819c223-7f76-453a-919d-413861904646""#,
            r#"externalId eq "BJensen""#,
            r#"active eq true"#,
            r#"active ne false"#,
            r#"loginCount gt 6 and loginCount le 7.0 and loginCount eq 7"#,
            r#"nickName eq null"#,
            r#"nickName ne "x""#,
            r#"not (nickName pr)"#,
            r#"name pr"#,
            r#"userName ew ".COM""#,
            r#"ims.value eq "SomeAimHandle""#,
        ];
        for s in yes {
            assert!(matches(&f(s), &u), "expected a match: {s}");
        }
        let no = [
            r#"userType ne "Employee" and not (emails co "example.com" or emails.value co "example.org")"#,
            r#"externalId eq "bjensen""#,
            r#"id eq "2819C223-7F76-453A-919D-413861904646""#,
            r#"meta.version eq "w/\"3694e05e9dff591\"""#,
            r#"groups pr"#,
            r#"nickName pr"#,
            r#"emails[type eq "home" and primary eq true]"#,
            r#"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:employeeNumber eq "1""#,
            r#"urn:example:params:scim:schemas:extension:acme:2.0:User:department eq "Sales""#,
            r#"department eq "Sales""#,
            r#"active gt false"#,
            r#"active eq "true""#,
            r#"loginCount co 7"#,
            r#"loginCount gt "6""#,
            r#"title eq null"#,
            r#"userName gt "c""#,
            r#"name eq "Barbara""#,
        ];
        for s in no {
            assert!(!matches(&f(s), &u), "expected no match: {s}");
        }
        assert!(matches(
            &f(r#"meta.version eq "W/\"3694e05e9dff591\"""#),
            &u
        ));
        // Anything that is not an object matches nothing.
        assert!(!matches(&f("title pr"), &json!("x")));
    }

    /// Property tests; proptest is a native-only dev-dependency.
    #[cfg(not(target_arch = "wasm32"))]
    mod props {
        use super::*;
        use proptest::prelude::*;

        fn attr_name() -> impl Strategy<Value = AttrName> {
            let name = "[a-zA-Z][a-zA-Z0-9_-]{0,5}"
                .prop_filter("keyword", |s| !s.eq_ignore_ascii_case("not"));
            (
                prop::option::of(prop::sample::select(vec![
                    "urn:ietf:params:scim:schemas:core:2.0:User".to_string(),
                    "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User".to_string(),
                    "urn:acme:ext".to_string(),
                ])),
                name.clone(),
                prop::option::of(name),
            )
                .prop_map(|(urn, attr, sub_attr)| AttrName {
                    urn,
                    attr,
                    sub_attr,
                })
        }

        fn literal() -> impl Strategy<Value = Value> {
            prop_oneof![
                ".*".prop_map(Value::String),
                any::<i64>().prop_map(Value::from),
                any::<f64>()
                    .prop_filter("finite", |x| x.is_finite())
                    .prop_map(Value::from),
                any::<bool>().prop_map(Value::Bool),
                Just(Value::Null),
            ]
        }

        fn op() -> impl Strategy<Value = CompareOp> {
            prop::sample::select(vec![
                CompareOp::Eq,
                CompareOp::Ne,
                CompareOp::Co,
                CompareOp::Sw,
                CompareOp::Ew,
                CompareOp::Gt,
                CompareOp::Ge,
                CompareOp::Lt,
                CompareOp::Le,
            ])
        }

        fn filter_tree() -> impl Strategy<Value = Filter> {
            let leaf = prop_oneof![
                (attr_name(), op(), literal()).prop_map(|(path, op, value)| Filter::Compare {
                    path,
                    op,
                    value
                }),
                attr_name().prop_map(Filter::Present),
            ];
            leaf.prop_recursive(5, 32, 2, |inner| {
                prop_oneof![
                    (inner.clone(), inner.clone()).prop_map(|(a, b)| a.and(b)),
                    (inner.clone(), inner.clone()).prop_map(|(a, b)| a.or(b)),
                    inner.clone().prop_map(|a| Filter::Not(Box::new(a))),
                    (attr_name(), inner).prop_map(|(mut path, filter)| {
                        path.sub_attr = None;
                        Filter::ValuePath {
                            path,
                            filter: Box::new(filter),
                        }
                    }),
                ]
            })
        }

        proptest! {
            #[test]
            fn display_round_trips(filter in filter_tree()) {
                let printed = filter.to_string();
                prop_assert_eq!(parse(&printed), Ok(filter), "{}", printed);
            }

            #[test]
            fn never_panics(s in "[a-z\\[\\]()\" .:\\\\]{0,40}|\\PC{0,40}") {
                if let Ok(parsed) = parse(&s) {
                    prop_assert_eq!(parse(&parsed.to_string()), Ok(parsed));
                }
            }

            #[test]
            fn quote_round_trips(s in ".*") {
                let built = eq_filter("userName", &s);
                let parsed = parse(&built);
                let ok = matches!(parsed, Ok(Filter::Compare { value: Value::String(ref v), .. }) if *v == s);
                prop_assert!(ok, "{}", built);
            }
        }
    }
}
