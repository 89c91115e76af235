//! The SCIM filter grammar (RFC 7644 §3.4.2.2), which both roles use: the server parses and
//! evaluates the filters of list requests, the client builds the filters it searches with.
//!
//! This file holds the filter's types; `parse` reads a filter, `print` writes the canonical
//! form (and escapes values for building filters), and `eval` matches a filter against a
//! resource's JSON. The attribute names a filter compares come from [`crate::scim::attr`].
//!
//! Keywords and operators are case-insensitive; `not` binds tighter than `and`, which binds
//! tighter than `or`, and both binary operators associate to the left. `not` must be
//! followed by a parenthesised filter, as the RFC's ABNF requires.
//!
//! The parser never panics and bounds its work: nesting of `(`, `not` and `[` is limited to
//! [`MAX_DEPTH`] levels and a filter to [`MAX_TERMS`] comparisons, so hostile input cannot
//! exhaust the stack either while parsing or later while evaluating or printing the tree.

use std::fmt;

use serde_json::Value;

use crate::scim::attr::{AttrName, PathError};

mod eval;
mod parse;
mod print;

pub use eval::matches;
pub use parse::parse;
pub(crate) use parse::parse_value_filter;
pub use print::{eq_filter, quote};

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

/// Parses a filter that a test knows to be valid; a parse error fails the test.
#[cfg(test)]
fn parse_valid(s: &str) -> Filter {
    match parse(s) {
        Ok(f) => f,
        Err(e) => panic!("{s}: {e}"),
    }
}
