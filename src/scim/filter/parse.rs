//! Reading a SCIM filter (RFC 7644 §3.4.2.2): the recursive-descent parser behind
//! [`parse`] and the value filters inside PATCH paths. Both roles use it. Its depth and
//! term limits ([`MAX_DEPTH`], [`MAX_TERMS`]) keep hostile input from exhausting the stack.

use serde_json::Value;

use crate::scim::attr::{self, Parsed, describe};

use super::{CompareOp, Filter, FilterError, MAX_DEPTH, MAX_TERMS};

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

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::scim::attr::AttrName;
    use crate::scim::filter::matches;
    use crate::scim::filter::parse_valid as f;

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

    /// Property tests; proptest is a native-only dev-dependency.
    #[cfg(not(target_arch = "wasm32"))]
    mod props {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            #[test]
            fn never_panics(s in "[a-z\\[\\]()\" .:\\\\]{0,40}|\\PC{0,40}") {
                if let Ok(parsed) = parse(&s) {
                    prop_assert_eq!(parse(&parsed.to_string()), Ok(parsed));
                }
            }
        }
    }
}
