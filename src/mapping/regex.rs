//! A small backtracking regular-expression engine for the `regex_replace` transform.
//!
//! The component must stay small, so instead of the `regex` crate this is a compact
//! backtracking matcher over the subset mapping rules need: literals, `.`, classes
//! (`[a-z]`, `[^…]`), `\d \w \s` and their negations, the anchors `^ $`, capturing and
//! non-capturing groups with `|`, and the quantifiers `* + ? {m} {m,} {m,n}` (greedy, or lazy
//! with a trailing `?`). Matching works on `char`s, so non-ASCII text is never split.
//!
//! Why not `regex-lite` (linear-time, made for small binaries): measured side by side
//! (issue 25, both built with `[profile.component]` then `wasm-opt -Oz` as host-example's
//! build script does), the shipped component is 675,106 bytes with this engine and 715,769
//! with regex-lite, 40,663 bytes more, over the 30 KB the issue allowed. Without any engine
//! it is 663,379: this one costs 11,727 bytes, regex-lite 52,390.
//!
//! Backtracking can take exponential time on hostile patterns such as `(a*)*b`, so every
//! search runs on a step budget and reports [`BudgetExceeded`] instead of hanging the host.
//! The backtracking stack is explicit rather than recursive, because the component's stack
//! is small and a field value can be long.

/// How many VM steps one [`Regex::replace_all`] call may take. Sized so that ordinary
/// patterns over field-length text never come near it, while a catastrophic one gives up
/// within milliseconds.
pub(crate) const STEP_BUDGET: u64 = 200_000;

/// The largest compiled program; counted repetitions are expanded, so `(x{1000}){1000}`
/// must be refused while it is being compiled rather than exhaust memory.
const MAX_INSTRUCTIONS: usize = 10_000;

/// The largest count allowed in `{m,n}`.
const MAX_REPEAT: u32 = 1_000;

/// How deeply groups may nest. The parser, the compiler and the syntax tree's drop all
/// recurse once per level, and the component's stack is small: without a bound a pattern of
/// a few thousand `(` in the policy overflows it and traps `open`. Real patterns nest a
/// handful of levels.
pub(crate) const MAX_NESTING: usize = 32;

/// How many syntax-tree nodes the compiler may visit. A repetition of something that emits
/// no instruction (`(?:){1000}`) costs no program space, so nesting a few of them would
/// otherwise spin for 1000^n visits while `MAX_INSTRUCTIONS` never trips.
const MAX_COMPILE_VISITS: usize = 100_000;

/// A search gave up because it used up its step budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct BudgetExceeded;

/// A compiled pattern.
#[derive(Debug, Clone)]
pub(crate) struct Regex {
    program: Vec<Inst>,
    classes: Vec<Class>,
    /// Capture groups, not counting the whole match.
    groups: usize,
    /// Capture slots (two per group, the whole match included) followed by loop marks.
    slots: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Inst {
    Char(char),
    /// Any character but a newline.
    Any,
    Class(usize),
    /// Try the first target, and on failure the second.
    Split(usize, usize),
    Jmp(usize),
    /// Record the position in a capture slot.
    Save(usize),
    /// Record the position at the start of a loop iteration that could match empty.
    Mark(usize),
    /// Leave the loop (jump to the second target) when the iteration since the matching
    /// `Mark` consumed nothing; this is what keeps `(a?)*` from looping forever on an empty
    /// match. The empty iteration itself stands, as in Perl: failing it instead would
    /// backtrack into a longer one, so `(?:b*?)*` would take `b`. The `regex` crate can end
    /// such a match elsewhere (`(?:\s|1*?)+` on "\n1": Perl and this engine match "\n", the
    /// `regex` crate and JavaScript "\n1"); the differential test below skips that case.
    Progress(usize, usize),
    Start,
    End,
    Match,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Perl {
    Digit,
    Word,
    Space,
}

impl Perl {
    fn matches(self, c: char) -> bool {
        match self {
            Perl::Digit => c.is_ascii_digit(),
            Perl::Word => c.is_ascii_alphanumeric() || c == '_',
            Perl::Space => c.is_whitespace(),
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Class {
    negated: bool,
    ranges: Vec<(char, char)>,
    /// Shorthand classes inside brackets, with their own negation (`[\D]`).
    perls: Vec<(Perl, bool)>,
}

impl Class {
    fn perl(perl: Perl, negated: bool) -> Class {
        Class {
            negated: false,
            ranges: Vec::new(),
            perls: vec![(perl, negated)],
        }
    }

    fn matches(&self, c: char) -> bool {
        let hit = self.ranges.iter().any(|&(lo, hi)| lo <= c && c <= hi)
            || self.perls.iter().any(|&(p, neg)| p.matches(c) != neg);
        hit != self.negated
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Node {
    Empty,
    Char(char),
    Any,
    Class(Class),
    Start,
    End,
    /// A group; `Some(n)` captures as group `n`.
    Group(Box<Node>, Option<usize>),
    Concat(Vec<Node>),
    Alt(Vec<Node>),
    Repeat {
        node: Box<Node>,
        min: u32,
        max: Option<u32>,
        greedy: bool,
    },
}

impl Node {
    /// Whether the node can match without consuming input.
    fn nullable(&self) -> bool {
        match self {
            Node::Empty | Node::Start | Node::End => true,
            Node::Char(_) | Node::Any | Node::Class(_) => false,
            Node::Group(n, _) => n.nullable(),
            Node::Concat(ns) => ns.iter().all(Node::nullable),
            Node::Alt(ns) => ns.iter().any(Node::nullable),
            Node::Repeat { node, min, .. } => *min == 0 || node.nullable(),
        }
    }
}

struct Parser {
    chars: Vec<char>,
    pos: usize,
    groups: usize,
    /// How many groups enclose the current position.
    depth: usize,
}

impl Parser {
    fn error(&self, message: &str) -> String {
        format!("{message} at position {}", self.pos)
    }

    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }

    fn eat(&mut self, c: char) -> bool {
        if self.peek() == Some(c) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn alternation(&mut self) -> Result<Node, String> {
        let mut alts = vec![self.concat()?];
        while self.eat('|') {
            alts.push(self.concat()?);
        }
        Ok(if alts.len() == 1 {
            alts.pop().unwrap_or(Node::Empty) // ok: len is 1
        } else {
            Node::Alt(alts)
        })
    }

    fn concat(&mut self) -> Result<Node, String> {
        let mut items = Vec::new();
        while let Some(c) = self.peek() {
            if c == '|' || c == ')' {
                break;
            }
            let atom = self.atom()?;
            items.push(self.quantified(atom)?);
        }
        Ok(match items.len() {
            0 => Node::Empty,
            1 => items.pop().unwrap_or(Node::Empty), // ok: len is 1
            _ => Node::Concat(items),
        })
    }

    fn atom(&mut self) -> Result<Node, String> {
        let Some(c) = self.peek() else {
            return Err(self.error("unexpected end of pattern"));
        };
        self.pos += 1;
        match c {
            '(' => {
                if self.depth >= MAX_NESTING {
                    return Err(self.error(&format!("groups nested deeper than {MAX_NESTING}")));
                }
                let capture = if self.eat('?') {
                    if !self.eat(':') {
                        return Err(self.error("only (?: …) groups are supported"));
                    }
                    None
                } else {
                    self.groups += 1;
                    Some(self.groups)
                };
                self.depth += 1;
                let inner = self.alternation();
                self.depth -= 1;
                let inner = inner?;
                if !self.eat(')') {
                    return Err(self.error("unclosed group"));
                }
                Ok(Node::Group(Box::new(inner), capture))
            }
            ')' => Err(self.error("unbalanced ')'")),
            '[' => self.class(),
            '.' => Ok(Node::Any),
            '^' => Ok(Node::Start),
            '$' => Ok(Node::End),
            '*' | '+' | '?' => Err(self.error("nothing to repeat")),
            '{' if self.peek().is_some_and(|d| d.is_ascii_digit()) => {
                Err(self.error("nothing to repeat"))
            }
            '\\' => match self.escape()? {
                Escaped::Char(c) => Ok(Node::Char(c)),
                Escaped::Perl(p, neg) => Ok(Node::Class(Class::perl(p, neg))),
            },
            c => Ok(Node::Char(c)),
        }
    }

    fn escape(&mut self) -> Result<Escaped, String> {
        let Some(c) = self.peek() else {
            return Err(self.error("trailing backslash"));
        };
        self.pos += 1;
        Ok(match c {
            'd' => Escaped::Perl(Perl::Digit, false),
            'D' => Escaped::Perl(Perl::Digit, true),
            'w' => Escaped::Perl(Perl::Word, false),
            'W' => Escaped::Perl(Perl::Word, true),
            's' => Escaped::Perl(Perl::Space, false),
            'S' => Escaped::Perl(Perl::Space, true),
            'n' => Escaped::Char('\n'),
            't' => Escaped::Char('\t'),
            'r' => Escaped::Char('\r'),
            c if c.is_alphanumeric() => {
                self.pos -= 1;
                return Err(self.error(&format!("unsupported escape \\{c}")));
            }
            c => Escaped::Char(c),
        })
    }

    fn class(&mut self) -> Result<Node, String> {
        let mut class = Class {
            negated: self.eat('^'),
            ..Class::default()
        };
        let mut first = true;
        loop {
            let Some(c) = self.peek() else {
                return Err(self.error("unclosed character class"));
            };
            if c == ']' && !first {
                self.pos += 1;
                break;
            }
            first = false;
            let lo = self.class_char()?;
            let lo = match lo {
                Escaped::Perl(p, neg) => {
                    class.perls.push((p, neg));
                    continue;
                }
                Escaped::Char(c) => c,
            };
            let is_range =
                self.peek() == Some('-') && self.chars.get(self.pos + 1).is_some_and(|&n| n != ']');
            if !is_range {
                class.ranges.push((lo, lo));
                continue;
            }
            self.pos += 1;
            let hi = match self.class_char()? {
                Escaped::Char(c) => c,
                Escaped::Perl(..) => return Err(self.error("a range cannot end in a class")),
            };
            if hi < lo {
                return Err(self.error("range out of order"));
            }
            class.ranges.push((lo, hi));
        }
        Ok(Node::Class(class))
    }

    fn class_char(&mut self) -> Result<Escaped, String> {
        let Some(c) = self.peek() else {
            return Err(self.error("unclosed character class"));
        };
        self.pos += 1;
        if c == '\\' {
            self.escape()
        } else {
            Ok(Escaped::Char(c))
        }
    }

    fn quantified(&mut self, atom: Node) -> Result<Node, String> {
        let (min, max) = match self.peek() {
            Some('*') => (0, None),
            Some('+') => (1, None),
            Some('?') => (0, Some(1)),
            Some('{')
                if self
                    .chars
                    .get(self.pos + 1)
                    .is_some_and(char::is_ascii_digit) =>
            {
                self.pos += 1;
                let bounds = self.bounds()?;
                // `bounds` consumed through `}`; step back so the shared `+= 1` below lands
                // on the character after it.
                self.pos -= 1;
                bounds
            }
            _ => return Ok(atom),
        };
        self.pos += 1;
        if matches!(atom, Node::Start | Node::End) {
            return Err(self.error("an anchor cannot be repeated"));
        }
        let greedy = !self.eat('?');
        if matches!(self.peek(), Some('*' | '+' | '?')) {
            return Err(self.error("nothing to repeat"));
        }
        Ok(Node::Repeat {
            node: Box::new(atom),
            min,
            max,
            greedy,
        })
    }

    fn bounds(&mut self) -> Result<(u32, Option<u32>), String> {
        let min = self.number()?;
        let max = if self.eat(',') {
            if self.peek() == Some('}') {
                None
            } else {
                Some(self.number()?)
            }
        } else {
            Some(min)
        };
        if !self.eat('}') {
            return Err(self.error("malformed repetition {m,n}"));
        }
        if max.is_some_and(|m| m < min) {
            return Err(self.error("repetition {m,n} with n < m"));
        }
        Ok((min, max))
    }

    fn number(&mut self) -> Result<u32, String> {
        let start = self.pos;
        while self.peek().is_some_and(|c| c.is_ascii_digit()) {
            self.pos += 1;
        }
        let digits: String = self
            .chars
            .get(start..self.pos)
            .unwrap_or_default()
            .iter()
            .collect();
        match digits.parse::<u32>() {
            Ok(n) if n <= MAX_REPEAT => Ok(n),
            Ok(_) => Err(self.error(&format!("repetition count above {MAX_REPEAT}"))),
            Err(_) => Err(self.error("expected a number")),
        }
    }
}

enum Escaped {
    Char(char),
    Perl(Perl, bool),
}

struct Compiler {
    program: Vec<Inst>,
    classes: Vec<Class>,
    next_slot: usize,
    /// Syntax-tree nodes visited so far, against `MAX_COMPILE_VISITS`.
    visits: usize,
}

impl Compiler {
    fn push(&mut self, inst: Inst) -> Result<usize, String> {
        if self.program.len() >= MAX_INSTRUCTIONS {
            return Err("pattern too large once repetitions are expanded".to_owned());
        }
        self.program.push(inst);
        Ok(self.program.len() - 1)
    }

    fn patch_split(&mut self, at: usize, first: usize, second: usize) {
        if let Some(inst) = self.program.get_mut(at) {
            *inst = Inst::Split(first, second);
        }
    }

    fn patch_jmp(&mut self, at: usize, to: usize) {
        if let Some(inst) = self.program.get_mut(at) {
            *inst = Inst::Jmp(to);
        }
    }

    fn emit(&mut self, node: &Node) -> Result<(), String> {
        self.visits += 1;
        if self.visits > MAX_COMPILE_VISITS {
            return Err("pattern too large once repetitions are expanded".to_owned());
        }
        match node {
            Node::Empty => {}
            Node::Char(c) => {
                self.push(Inst::Char(*c))?;
            }
            Node::Any => {
                self.push(Inst::Any)?;
            }
            Node::Class(class) => {
                self.classes.push(class.clone());
                self.push(Inst::Class(self.classes.len() - 1))?;
            }
            Node::Start => {
                self.push(Inst::Start)?;
            }
            Node::End => {
                self.push(Inst::End)?;
            }
            Node::Group(inner, capture) => {
                if let Some(n) = capture {
                    self.push(Inst::Save(2 * n))?;
                }
                self.emit(inner)?;
                if let Some(n) = capture {
                    self.push(Inst::Save(2 * n + 1))?;
                }
            }
            Node::Concat(items) => {
                for item in items {
                    self.emit(item)?;
                }
            }
            Node::Alt(alts) => {
                let mut jumps = Vec::new();
                for (i, alt) in alts.iter().enumerate() {
                    if i + 1 == alts.len() {
                        self.emit(alt)?;
                    } else {
                        let split = self.push(Inst::Match)?;
                        self.emit(alt)?;
                        jumps.push(self.push(Inst::Match)?);
                        let next = self.program.len();
                        self.patch_split(split, split + 1, next);
                    }
                }
                let end = self.program.len();
                for j in jumps {
                    self.patch_jmp(j, end);
                }
            }
            Node::Repeat {
                node,
                min,
                max,
                greedy,
            } => {
                for _ in 0..*min {
                    self.emit(node)?;
                }
                match max {
                    None => self.star(node, *greedy)?,
                    Some(max) => {
                        let mut splits = Vec::new();
                        for _ in *min..*max {
                            splits.push(self.push(Inst::Match)?);
                            self.emit(node)?;
                        }
                        let end = self.program.len();
                        for s in splits {
                            if *greedy {
                                self.patch_split(s, s + 1, end);
                            } else {
                                self.patch_split(s, end, s + 1);
                            }
                        }
                    }
                }
            }
        }
        Ok(())
    }

    fn star(&mut self, node: &Node, greedy: bool) -> Result<(), String> {
        let split = self.push(Inst::Match)?;
        let mark = node.nullable().then(|| {
            self.next_slot += 1;
            self.next_slot - 1
        });
        if let Some(m) = mark {
            self.push(Inst::Mark(m))?;
        }
        self.emit(node)?;
        let progress = match mark {
            Some(m) => Some((self.push(Inst::Progress(m, 0))?, m)),
            None => None,
        };
        self.push(Inst::Jmp(split))?;
        let out = self.program.len();
        if let Some((at, m)) = progress
            && let Some(inst) = self.program.get_mut(at)
        {
            *inst = Inst::Progress(m, out);
        }
        if greedy {
            self.patch_split(split, split + 1, out);
        } else {
            self.patch_split(split, out, split + 1);
        }
        Ok(())
    }
}

enum Job {
    Run { pc: usize, pos: usize },
    Restore { slot: usize, old: Option<usize> },
}

impl Regex {
    /// Compiles a pattern; the error says what is wrong and where.
    pub(crate) fn new(pattern: &str) -> Result<Regex, String> {
        let mut parser = Parser {
            chars: pattern.chars().collect(),
            pos: 0,
            groups: 0,
            depth: 0,
        };
        let ast = parser.alternation()?;
        if parser.pos < parser.chars.len() {
            return Err(parser.error("unbalanced ')'"));
        }
        let groups = parser.groups;
        let mut compiler = Compiler {
            program: Vec::new(),
            classes: Vec::new(),
            next_slot: 2 * (groups + 1),
            visits: 0,
        };
        compiler.push(Inst::Save(0))?;
        compiler.emit(&ast)?;
        compiler.push(Inst::Save(1))?;
        compiler.push(Inst::Match)?;
        Ok(Regex {
            program: compiler.program,
            classes: compiler.classes,
            groups,
            slots: compiler.next_slot,
        })
    }

    /// The number of capture groups, not counting the whole match.
    pub(crate) fn group_count(&self) -> usize {
        self.groups
    }

    /// Whether the pattern matches anywhere in `text`.
    #[cfg(test)]
    pub(crate) fn is_match(&self, text: &str) -> Result<bool, BudgetExceeded> {
        let chars: Vec<char> = text.chars().collect();
        let mut budget = STEP_BUDGET;
        let mut slots = vec![None; self.slots];
        let mut stack = Vec::new();
        for start in 0..=chars.len() {
            if self.run(&chars, start, &mut slots, &mut stack, &mut budget)? {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Replaces every non-overlapping match, leftmost first, as Perl and JavaScript's `/g` do.
    pub(crate) fn replace_all(
        &self,
        text: &str,
        replacement: &Replacement,
    ) -> Result<String, BudgetExceeded> {
        let chars: Vec<char> = text.chars().collect();
        let mut budget = STEP_BUDGET;
        let mut slots = vec![None; self.slots];
        let mut stack = Vec::new();
        let mut out = String::with_capacity(text.len());
        let mut copied = 0;
        let mut from = 0;
        while from <= chars.len() {
            let mut found = None;
            for start in from..=chars.len() {
                if self.run(&chars, start, &mut slots, &mut stack, &mut budget)? {
                    found = slots
                        .first()
                        .copied()
                        .flatten()
                        .zip(slots.get(1).copied().flatten());
                    break;
                }
            }
            let Some((begin, end)) = found else { break };
            out.extend(chars.get(copied..begin).unwrap_or_default());
            replacement.expand(&chars, &slots, &mut out);
            copied = end;
            if end == begin {
                // An empty match must not be found again at the same place.
                if let Some(&c) = chars.get(end) {
                    out.push(c);
                }
                copied = end + 1;
                from = end + 1;
            } else {
                from = end;
            }
        }
        out.extend(chars.get(copied..).unwrap_or_default());
        Ok(out)
    }

    fn run(
        &self,
        chars: &[char],
        start: usize,
        slots: &mut [Option<usize>],
        stack: &mut Vec<Job>,
        budget: &mut u64,
    ) -> Result<bool, BudgetExceeded> {
        slots.iter_mut().for_each(|s| *s = None);
        stack.clear();
        stack.push(Job::Run { pc: 0, pos: start });
        while let Some(job) = stack.pop() {
            let (mut pc, mut pos) = match job {
                Job::Restore { slot, old } => {
                    if let Some(s) = slots.get_mut(slot) {
                        *s = old;
                    }
                    continue;
                }
                Job::Run { pc, pos } => (pc, pos),
            };
            loop {
                if *budget == 0 {
                    return Err(BudgetExceeded);
                }
                *budget -= 1;
                let Some(&inst) = self.program.get(pc) else {
                    break;
                };
                let here = chars.get(pos).copied();
                match inst {
                    Inst::Char(c) if here == Some(c) => {
                        pc += 1;
                        pos += 1;
                    }
                    Inst::Any if here.is_some_and(|c| c != '\n') => {
                        pc += 1;
                        pos += 1;
                    }
                    Inst::Class(i)
                        if here
                            .is_some_and(|c| self.classes.get(i).is_some_and(|k| k.matches(c))) =>
                    {
                        pc += 1;
                        pos += 1;
                    }
                    Inst::Char(_) | Inst::Any | Inst::Class(_) => break,
                    Inst::Split(first, second) => {
                        stack.push(Job::Run { pc: second, pos });
                        pc = first;
                    }
                    Inst::Jmp(to) => pc = to,
                    Inst::Save(slot) | Inst::Mark(slot) => {
                        let old = slots.get(slot).copied().flatten();
                        stack.push(Job::Restore { slot, old });
                        if let Some(s) = slots.get_mut(slot) {
                            *s = Some(pos);
                        }
                        pc += 1;
                    }
                    Inst::Progress(slot, exit) => {
                        if slots.get(slot).copied().flatten() == Some(pos) {
                            pc = exit;
                        } else {
                            pc += 1;
                        }
                    }
                    Inst::Start if pos == 0 => pc += 1,
                    Inst::End if pos == chars.len() => pc += 1,
                    Inst::Start | Inst::End => break,
                    Inst::Match => return Ok(true),
                }
            }
        }
        Ok(false)
    }
}

/// A parsed replacement: literal text and `$n` / `${n}` group references (`$0` is the whole
/// match, `$$` a literal dollar; a `$` followed by anything else stays literal).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Replacement {
    parts: Vec<Part>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Text(String),
    Group(usize),
}

impl Replacement {
    /// Parses a replacement string; it cannot fail, since stray `$`s are literal.
    pub(crate) fn parse(text: &str) -> Replacement {
        let chars: Vec<char> = text.chars().collect();
        let mut parts = Vec::new();
        let mut literal = String::new();
        let mut i = 0;
        while let Some(&c) = chars.get(i) {
            i += 1;
            if c != '$' {
                literal.push(c);
                continue;
            }
            let braced = chars.get(i) == Some(&'{');
            let digits_from = if braced { i + 1 } else { i };
            let mut j = digits_from;
            while chars.get(j).is_some_and(char::is_ascii_digit) {
                j += 1;
            }
            let closed = !braced || chars.get(j) == Some(&'}');
            let number: Option<usize> = if j > digits_from && closed {
                chars
                    .get(digits_from..j)
                    .unwrap_or_default()
                    .iter()
                    .collect::<String>()
                    .parse()
                    .ok()
            } else {
                None
            };
            match number {
                Some(n) => {
                    if !literal.is_empty() {
                        parts.push(Part::Text(std::mem::take(&mut literal)));
                    }
                    parts.push(Part::Group(n));
                    i = if braced { j + 1 } else { j };
                }
                None if chars.get(i) == Some(&'$') => {
                    literal.push('$');
                    i += 1;
                }
                None => literal.push('$'),
            }
        }
        if !literal.is_empty() {
            parts.push(Part::Text(literal));
        }
        Replacement { parts }
    }

    /// The highest group the replacement refers to.
    pub(crate) fn max_group(&self) -> usize {
        self.parts
            .iter()
            .map(|p| match p {
                Part::Group(n) => *n,
                Part::Text(_) => 0,
            })
            .max()
            .unwrap_or(0)
    }

    fn expand(&self, chars: &[char], slots: &[Option<usize>], out: &mut String) {
        for part in &self.parts {
            match part {
                Part::Text(t) => out.push_str(t),
                Part::Group(n) => {
                    let begin = slots.get(2 * n).copied().flatten();
                    let end = slots.get(2 * n + 1).copied().flatten();
                    // A group that did not take part in the match expands to nothing.
                    if let (Some(b), Some(e)) = (begin, end)
                        && b <= e
                        && let Some(s) = chars.get(b..e)
                    {
                        out.extend(s);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn replace(pattern: &str, text: &str, with: &str) -> String {
        let re = Regex::new(pattern).unwrap();
        re.replace_all(text, &Replacement::parse(with)).unwrap()
    }

    #[test]
    fn matching_table() {
        let cases: &[(&str, &str, bool)] = &[
            ("abc", "xxabcxx", true),
            ("abc", "ab", false),
            ("^abc$", "abc", true),
            ("^abc$", "abcd", false),
            ("^$", "", true),
            ("a.c", "abc", true),
            ("a.c", "a\nc", false),
            ("[a-c]+$", "xxcab", true),
            ("^[^0-9]+$", "abc", true),
            ("^[^0-9]+$", "ab1", false),
            ("^\\d{3}$", "123", true),
            ("^\\d{3}$", "12", false),
            ("^\\d{2,3}$", "1234", false),
            ("^\\d{2,}$", "12345", true),
            ("^\\w+@\\w+\\.com$", "a_1@b.com", true),
            ("^\\s*x\\s*$", " \t x  ", true),
            ("^\\S+$", "a b", false),
            ("^\\D\\W$", "a-", true),
            ("^(cat|dog)s?$", "dogs", true),
            ("^(cat|dog)s?$", "cow", false),
            ("^(?:ab)+$", "ababab", true),
            ("^(?:ab)+$", "ababa", false),
            ("^[\\d-]+$", "12-34", true),
            ("^[-a]+$", "-a-", true),
            ("^[]a]+$", "]a", true),
            ("^a{0}b$", "b", true),
            ("^é+$", "ééé", true),
            ("^(a?)*$", "aaa", true),
            ("^(a*)*b$", "aab", true),
            ("x{", "x{", true),
            ("^\\.$", ".", true),
            ("^\\.$", "a", false),
        ];
        for (pattern, text, expected) in cases {
            let re = Regex::new(pattern).unwrap();
            assert_eq!(
                re.is_match(text).unwrap(),
                *expected,
                "{pattern} on {text:?}"
            );
        }
    }

    #[test]
    fn syntax_errors() {
        for pattern in [
            "(a", "a)", "[a-", "[z-a]", "*a", "a**", "\\", "\\b", "a{3,2}", "a{2", "(?=a)", "^*",
            "a{5000}",
        ] {
            assert!(Regex::new(pattern).is_err(), "{pattern} should not compile");
        }
    }

    #[test]
    fn oversized_programs_are_refused() {
        let err = Regex::new("(a{1000}){1000}").unwrap_err();
        assert!(err.contains("too large"), "{err}");
        // Repeating what emits nothing costs no program space, only compile time.
        let err = Regex::new("(?:(?:(?:(?:){1000}){1000}){1000}){1000}").unwrap_err();
        assert!(err.contains("too large"), "{err}");
    }

    #[test]
    fn deep_nesting_is_refused_not_a_stack_overflow() {
        let at_limit = format!("{}a{}", "(".repeat(MAX_NESTING), ")".repeat(MAX_NESTING));
        assert!(Regex::new(&at_limit).unwrap().is_match("a").unwrap());
        for deep in [MAX_NESTING + 1, 100_000] {
            let pattern = format!("{}a{}", "(?:".repeat(deep), ")".repeat(deep));
            let err = Regex::new(&pattern).unwrap_err();
            assert!(err.contains("nested deeper than 32"), "{err}");
            // Unclosed groups are refused the same way, before the parser dives.
            let err = Regex::new(&"(".repeat(deep)).unwrap_err();
            assert!(err.contains("nested deeper"), "{err}");
        }
    }

    #[test]
    fn replacement_table() {
        let cases: &[(&str, &str, &str, &str)] = &[
            ("^B-(\\d+)$", "B-0042", "$1", "0042"),
            ("^B-(\\d+)$", "X-0042", "$1", "X-0042"),
            ("(\\w+)@(\\w+)", "ann@example", "$2/$1", "example/ann"),
            ("a", "banana", "o", "bonono"),
            ("a*", "baab", "-", "-b--b-"),
            ("(x)?y", "y", "[$1]", "[]"),
            ("(a)", "a", "${1}1", "a1"),
            ("(a)", "a", "$$1", "$1"),
            ("(a)", "a", "$x", "$x"),
            ("b", "abc", "$0$0", "abbc"),
            ("(a+?)", "aaa", "<$1>", "<a><a><a>"),
            ("^\\s+|\\s+$", "  hi  ", "", "hi"),
            // An empty loop iteration ends the loop rather than failing (found by the
            // differential test: the engine used to backtrack into `b` here).
            ("(?:b*?)*", "b", "<$0>", "<>b<>"),
            ("(a?)*", "aa", "<$1>", "<><>"),
        ];
        for (pattern, text, with, expected) in cases {
            assert_eq!(
                replace(pattern, text, with),
                *expected,
                "{pattern} on {text:?}"
            );
        }
    }

    #[test]
    fn replacement_groups() {
        assert_eq!(Replacement::parse("$1-${12}$$3").max_group(), 12);
        assert_eq!(Replacement::parse("plain").max_group(), 0);
    }

    #[test]
    fn hostile_patterns_run_out_of_budget() {
        let re = Regex::new("^(a|aa)*b$").unwrap();
        let text = "a".repeat(60);
        assert_eq!(re.is_match(&text), Err(BudgetExceeded));
        let re = Regex::new("(a*)*c").unwrap();
        assert_eq!(
            re.replace_all(&"a".repeat(40), &Replacement::parse("")),
            Err(BudgetExceeded)
        );
    }

    /// A differential property test against the `regex` crate (a native-only
    /// dev-dependency): generated patterns in the supported subset agree on `is_match` and on
    /// `replace_all`, captures included. The `regex` crate skips an empty match right after
    /// a non-empty one where Perl and JavaScript's `/g` (and this engine) do not, so the
    /// oracle drives `captures_at` through the same iteration instead of calling its own
    /// `replace_all`. Inputs are ASCII, where `\d \w \s` mean the same in both. Where a
    /// repetition's body can match empty, the engines agree on whether there is a match but
    /// not always on where it ends (see [`Inst::Progress`]), so only `is_match` is compared.
    #[cfg(not(target_arch = "wasm32"))]
    mod differential {
        use proptest::prelude::*;

        use super::super::{BudgetExceeded, Regex, Replacement};

        /// A pattern syntax tree, printed for both engines; `groups` counts captures.
        #[derive(Debug, Clone)]
        enum Pat {
            Leaf(&'static str),
            Concat(Vec<Pat>),
            Alt(Vec<Pat>),
            Group(Box<Pat>, bool),
            Repeat(Box<Pat>, &'static str),
        }

        impl Pat {
            fn print(&self, out: &mut String) {
                match self {
                    Pat::Leaf(s) => out.push_str(s),
                    Pat::Concat(items) => items.iter().for_each(|p| p.print(out)),
                    Pat::Alt(alts) => {
                        out.push_str("(?:");
                        for (i, a) in alts.iter().enumerate() {
                            if i > 0 {
                                out.push('|');
                            }
                            a.print(out);
                        }
                        out.push(')');
                    }
                    Pat::Group(inner, capture) => {
                        out.push_str(if *capture { "(" } else { "(?:" });
                        inner.print(out);
                        out.push(')');
                    }
                    Pat::Repeat(inner, quantifier) => {
                        inner.print(out);
                        out.push_str(quantifier);
                    }
                }
            }

            fn nullable(&self) -> bool {
                match self {
                    Pat::Leaf(s) => matches!(*s, "^" | "$"),
                    Pat::Concat(items) => items.iter().all(Pat::nullable),
                    Pat::Alt(items) => items.iter().any(Pat::nullable),
                    Pat::Group(inner, _) => inner.nullable(),
                    Pat::Repeat(inner, q) => {
                        matches!(q.as_bytes().first(), Some(b'*' | b'?'))
                            || q.starts_with("{0")
                            || inner.nullable()
                    }
                }
            }

            /// Whether a repetition's body can match empty.
            fn has_nullable_loop(&self) -> bool {
                match self {
                    Pat::Leaf(_) => false,
                    Pat::Concat(items) | Pat::Alt(items) => {
                        items.iter().any(Pat::has_nullable_loop)
                    }
                    Pat::Group(inner, _) => inner.has_nullable_loop(),
                    Pat::Repeat(inner, _) => inner.nullable() || inner.has_nullable_loop(),
                }
            }

            fn groups(&self) -> usize {
                match self {
                    Pat::Leaf(_) => 0,
                    Pat::Concat(items) | Pat::Alt(items) => items.iter().map(Pat::groups).sum(),
                    Pat::Group(inner, capture) => inner.groups() + usize::from(*capture),
                    Pat::Repeat(inner, _) => inner.groups(),
                }
            }
        }

        const LEAVES: &[&str] = &[
            "a", "b", "1", " ", "_", "\\.", ".", "[a-b]", "[^a]", "[\\d_]", "[-a]", "\\d", "\\w",
            "\\s", "\\D", "\\W", "\\S", "^", "$",
        ];
        /// Repeatable leaves: anchors cannot be repeated here (the `regex` crate allows it).
        const ATOMS: &[&str] = &["a", "b", "1", ".", "[a-b]", "[^a]", "\\d", "\\w", "\\s"];
        const QUANTIFIERS: &[&str] = &[
            "*", "+", "?", "{2}", "{1,}", "{0,2}", "{1,3}", "*?", "+?", "??", "{1,2}?",
        ];

        fn pattern() -> impl Strategy<Value = Pat> {
            let leaf = prop::sample::select(LEAVES).prop_map(Pat::Leaf);
            leaf.prop_recursive(4, 24, 4, |inner| {
                let atom = prop_oneof![
                    prop::sample::select(ATOMS).prop_map(Pat::Leaf),
                    (inner.clone(), any::<bool>()).prop_map(|(p, c)| Pat::Group(Box::new(p), c)),
                ];
                prop_oneof![
                    prop::collection::vec(inner.clone(), 1..4).prop_map(Pat::Concat),
                    prop::collection::vec(inner.clone(), 2..4).prop_map(Pat::Alt),
                    (inner, any::<bool>()).prop_map(|(p, c)| Pat::Group(Box::new(p), c)),
                    (atom, prop::sample::select(QUANTIFIERS))
                        .prop_map(|(p, q)| Pat::Repeat(Box::new(p), q)),
                ]
            })
        }

        /// `replace_all` with JavaScript's `/g` iteration, the `regex` crate as the matcher.
        fn oracle_replace(re: &regex::Regex, text: &str, replacement: &str) -> String {
            let mut out = String::new();
            let (mut copied, mut from) = (0, 0);
            while from <= text.len() {
                let Some(caps) = re.captures_at(text, from) else {
                    break;
                };
                let Some(whole) = caps.get(0) else { break };
                out.push_str(&text[copied..whole.start()]);
                caps.expand(replacement, &mut out);
                if whole.is_empty() {
                    match text[whole.end()..].chars().next() {
                        Some(c) => {
                            out.push(c);
                            copied = whole.end() + c.len_utf8();
                        }
                        None => copied = whole.end(),
                    }
                    from = whole.end() + 1;
                } else {
                    copied = whole.end();
                    from = whole.end();
                }
            }
            out.push_str(text.get(copied..).unwrap_or_default());
            out
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(3000))]
            #[test]
            fn agrees_with_the_regex_crate(
                pat in pattern(),
                text in "[ab1 _.\n-]{0,10}",
            ) {
                let mut source = String::new();
                pat.print(&mut source);
                // Patterns this engine rightly refuses (too large once expanded) are skipped.
                let Ok(ours) = Regex::new(&source) else { return Ok(()) };
                let theirs = regex::Regex::new(&source)
                    .map_err(|e| TestCaseError::fail(format!("{source}: {e}")))?;
                let groups = pat.groups();
                prop_assert_eq!(ours.group_count(), groups, "{}", source);
                let replacement: String = std::iter::once("<${0}".to_owned())
                    .chain((1..=groups).map(|g| format!("|${{{g}}}")))
                    .chain(std::iter::once(">".to_owned()))
                    .collect();
                match ours.is_match(&text) {
                    Err(BudgetExceeded) => return Ok(()),
                    Ok(found) => prop_assert_eq!(found, theirs.is_match(&text), "{} on {:?}", source, text),
                }
                if pat.has_nullable_loop() {
                    return Ok(());
                }
                match ours.replace_all(&text, &Replacement::parse(&replacement)) {
                    Err(BudgetExceeded) => {}
                    Ok(replaced) => prop_assert_eq!(
                        replaced,
                        oracle_replace(&theirs, &text, &replacement),
                        "{} on {:?}", source, text
                    ),
                }
            }
        }
    }
}
