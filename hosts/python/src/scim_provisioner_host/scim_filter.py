"""SCIM filters (RFC 7644 §3.4.2.2) for the sqlite3 directory: a parser, an evaluator and the
select (filter, sort, page) — a line-by-line port of the component's own Rust code
(``src/scim/attr.rs``, ``src/scim/filter/{parse,eval}.rs``, ``src/server/select.rs``), so the
Python directory and the guest agree on what a filter means. The PHP host calls that Rust code
through its native bridge; a pure-Python host has no native code, hence this port and its
tests (``tests/test_scim_filter.py``, the Rust tests' cases).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any, Optional, Sequence, Union

MAX_DEPTH = 64
MAX_TERMS = 256
CORE_SCHEMA_PREFIX = "urn:ietf:params:scim:schemas:core:"
OPS = ("eq", "ne", "co", "sw", "ew", "gt", "ge", "lt", "le")


class FilterError(ValueError):
    def __init__(self, position: int, message: str) -> None:
        super().__init__(f"invalid filter at position {position}: {message}")
        self.position = position
        self.message = message


@dataclass(frozen=True)
class AttrName:
    urn: Optional[str]
    attr: str
    sub_attr: Optional[str] = None

    def is_top_level(self) -> bool:
        return self.urn is None or is_core_urn(self.urn)


@dataclass(frozen=True)
class Compare:
    path: AttrName
    op: str
    value: Any


@dataclass(frozen=True)
class Present:
    path: AttrName


@dataclass(frozen=True)
class And:
    left: "Filter"
    right: "Filter"


@dataclass(frozen=True)
class Or:
    left: "Filter"
    right: "Filter"


@dataclass(frozen=True)
class Not:
    inner: "Filter"


@dataclass(frozen=True)
class ValuePath:
    path: AttrName
    filter: "Filter"


Filter = Union[Compare, Present, And, Or, Not, ValuePath]


def name_eq(a: str, b: str) -> bool:
    return a.lower() == b.lower() if a.isascii() and b.isascii() else _ascii_lower(a) == _ascii_lower(b)


def _ascii_lower(s: str) -> str:
    return "".join(c.lower() if c.isascii() else c for c in s)


def is_core_urn(urn: str) -> bool:
    return len(urn) >= len(CORE_SCHEMA_PREFIX) and name_eq(urn[: len(CORE_SCHEMA_PREFIX)], CORE_SCHEMA_PREFIX)


def get_ci(obj: dict, name: str) -> Any:
    """The value of attribute `name` in obj: an exact key first, else the first case-insensitive one."""
    if name in obj:
        return obj[name]
    for k, v in obj.items():
        if name_eq(k, name):
            return v
    return _MISSING


class _Missing:
    pass


_MISSING: Any = _Missing()


def _describe(rest: str) -> str:
    return "end of input" if not rest else f"'{rest[0]}'"


def _is_alpha(c: str) -> bool:
    return c.isascii() and c.isalpha()


def _is_alnum(c: str) -> bool:
    return c.isascii() and c.isalnum()


def scan_attr_name(s: str) -> Optional[int]:
    if len(s) >= 4 and s[:4].lower() == "$ref":
        return 4
    if not s or not _is_alpha(s[0]):
        return None
    i = 0
    while i < len(s) and (_is_alnum(s[i]) or s[i] in "-_"):
        i += 1
    return i


def _is_version_segment(seg: str) -> bool:
    return bool(seg) and seg[0].isascii() and seg[0].isdigit() and all(c.isascii() and (c.isdigit() or c == ".") for c in seg)


def parse_name_token(s: str, base: int = 0) -> Union[AttrName, str]:
    """An AttrName, or the bare schema URN (a str) when the token is only a URN."""
    if not s:
        raise FilterError(base, "expected an attribute name, found end of input")
    urn: Optional[str] = None
    rest, rest_at = s, 0
    if len(s) >= 4 and s[:4].lower() == "urn:":
        at = 0
        for seg in s.split(":"):
            if not seg:
                raise FilterError(base + at, f"expected a URN segment or attribute name after ':', found {_describe(s[at:])}")
            at += len(seg) + 1
        last_colon = s.rfind(":")
        urn = s[:last_colon]
        last = s[last_colon + 1:]
        before_last = urn.rsplit(":", 1)[-1]
        if _is_version_segment(before_last) and "." not in last:
            for i, c in enumerate(s):
                if c.isspace() or c in '()[]"':
                    raise FilterError(base + i, f"unexpected {_describe(s[i:])} in a schema URN")
            return s
        rest, rest_at = last, last_colon + 1
    n = scan_attr_name(rest)
    if n is None:
        raise FilterError(base + rest_at, f"expected an attribute name starting with a letter, found {_describe(rest)}")
    attr, after, after_at = rest[:n], rest[n:], rest_at + n
    sub: Optional[str] = None
    if after:
        if not after.startswith("."):
            raise FilterError(base + after_at, f"expected '.', '[' or end of attribute path, found {_describe(after)}")
        sub_s = after[1:]
        m = scan_attr_name(sub_s)
        if m is None:
            raise FilterError(base + after_at + 1, f"expected a sub-attribute name after '.', found {_describe(sub_s)}")
        if m != len(sub_s):
            raise FilterError(base + after_at + 1 + m, f"expected end of attribute path, found {_describe(sub_s[m:])}")
        sub = sub_s
    return AttrName(urn, attr, sub)


def parse_attr_name(s: str) -> AttrName:
    p = parse_name_token(s, 0)
    if isinstance(p, str):
        raise FilterError(len(s), "expected ':' and an attribute name after the schema URN")
    return p


def _is_delim(c: str) -> bool:
    return c.isspace() or c in '()[]"'


class _Parser:
    def __init__(self, s: str) -> None:
        self.s = s
        self.pos = 0
        self.depth = 0
        self.terms = 0

    def rest(self) -> str:
        return self.s[self.pos:]

    def peek(self) -> Optional[str]:
        return self.s[self.pos] if self.pos < len(self.s) else None

    def skip_ws(self) -> None:
        while self.pos < len(self.s) and self.s[self.pos].isspace():
            self.pos += 1

    def word(self) -> str:
        i = self.pos
        while i < len(self.s) and not _is_delim(self.s[i]):
            i += 1
        return self.s[self.pos:i]

    def eat_keyword(self, kw: str) -> bool:
        save = self.pos
        self.skip_ws()
        separated = self.pos > save or (save > 0 and self.s[save - 1] in ')]"')
        if separated and self.word().lower() == kw:
            self.pos += len(kw)
            return True
        self.pos = save
        return False

    def enter(self) -> None:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise FilterError(self.pos, f"filter nests deeper than {MAX_DEPTH} levels")

    def parse_or(self) -> Filter:
        left = self.parse_and()
        while self.eat_keyword("or"):
            left = Or(left, self.parse_and())
        return left

    def parse_and(self) -> Filter:
        left = self.parse_unary()
        while self.eat_keyword("and"):
            left = And(left, self.parse_unary())
        return left

    def expect_close(self, close: str, opened_at: int) -> None:
        self.skip_ws()
        if self.peek() == close:
            self.pos += 1
            return
        opener = "(" if close == ")" else "["
        raise FilterError(self.pos, f"expected '{close}' to close the '{opener}' at position {opened_at}, found {_describe(self.rest())}")

    def parse_group(self) -> Filter:
        opened_at = self.pos
        self.pos += 1
        self.enter()
        inner = self.parse_or()
        self.expect_close(")", opened_at)
        self.depth -= 1
        return inner

    def parse_unary(self) -> Filter:
        self.skip_ws()
        if self.peek() == "(":
            return self.parse_group()
        word = self.word()
        if word.lower() == "not":
            not_at = self.pos
            self.pos += len(word)
            self.skip_ws()
            if self.peek() != "(":
                raise FilterError(self.pos, f"expected '(' after 'not' at position {not_at} (the RFC requires parentheses), found {_describe(self.rest())}")
            self.enter()
            inner = self.parse_group()
            self.depth -= 1
            return Not(inner)
        return self.parse_atom()

    def parse_atom(self) -> Filter:
        start = self.pos
        word = self.word()
        if not word:
            raise FilterError(start, f"expected an attribute path, '(' or 'not', found {_describe(self.rest())}")
        self.terms += 1
        if self.terms > MAX_TERMS:
            raise FilterError(start, f"filter has more than {MAX_TERMS} comparisons")
        path = parse_name_token(word, start)
        if isinstance(path, str):
            raise FilterError(start + len(word), "expected ':' and an attribute name after the schema URN")
        self.pos += len(word)
        if self.peek() == "[":
            if path.sub_attr is not None:
                raise FilterError(self.pos, "a value filter '[...]' must follow the attribute name, not a sub-attribute")
            opened_at = self.pos
            self.pos += 1
            self.enter()
            inner = self.parse_or()
            self.expect_close("]", opened_at)
            self.depth -= 1
            return ValuePath(path, inner)
        after_path = self.pos
        self.skip_ws()
        op_word = self.word()
        if self.pos == after_path or not op_word:
            raise FilterError(self.pos, f"expected an operator (eq, ne, co, sw, ew, gt, ge, lt, le, pr) after '{word}', found {_describe(self.rest())}")
        if op_word.lower() == "pr":
            self.pos += len(op_word)
            return Present(path)
        op = op_word.lower()
        if op not in OPS:
            raise FilterError(self.pos, f"expected an operator (eq, ne, co, sw, ew, gt, ge, lt, le, pr), found '{op_word}'")
        self.pos += len(op_word)
        after_op = self.pos
        self.skip_ws()
        if (self.pos == after_op and self.peek() != '"') or self.pos >= len(self.s):
            raise FilterError(self.pos, f"expected a value after '{op_word}' (a quoted string, number, true, false or null), found {_describe(self.rest())}")
        return Compare(path, op, self.parse_value())

    def parse_value(self) -> Any:
        start = self.pos
        if self.peek() == '"':
            i = start + 1
            while i < len(self.s):
                c = self.s[i]
                if c == "\\":
                    i += 2
                elif c == '"':
                    break
                else:
                    i += 1
            if i >= len(self.s):
                raise FilterError(start, "unterminated string: expected a closing '\"'")
            try:
                value = json.loads(self.s[start:i + 1])
            except ValueError as e:
                raise FilterError(start, f"invalid string literal: {e}") from None
            self.pos = i + 1
            return value
        word = self.word()
        lw = word.lower()
        if lw == "true":
            value: Any = True
        elif lw == "false":
            value = False
        elif lw == "null":
            value = None
        else:
            value = _parse_number(word)
            if value is None:
                found = _describe(self.rest()) if not word else f"'{word}'"
                raise FilterError(start, f"expected a value (a quoted string, number, true, false or null), found {found}")
        self.pos += len(word)
        return value


def _parse_number(word: str) -> Optional[Union[int, float]]:
    import re
    if not re.fullmatch(r"-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?", word):
        return None
    if re.fullmatch(r"-?(0|[1-9][0-9]*)", word):
        n = int(word)
        if -(2 ** 63) <= n < 2 ** 64:
            return n
    f = float(word)
    return f if math.isfinite(f) else None


def parse(text: str) -> Filter:
    """Parses a complete filter; raises FilterError."""
    p = _Parser(text)
    f = p.parse_or()
    p.skip_ws()
    if p.pos < len(text):
        rest = p.rest()
        msg = "unexpected ')' with no matching '('" if rest.startswith(")") else \
            f"expected 'and', 'or' or end of filter, found {_describe(rest)}"
        raise FilterError(p.pos, msg)
    return f


# -- evaluation (eval.rs) -----------------------------------------------------------

def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def matches(f: Filter, resource: Any) -> bool:
    if isinstance(f, And):
        return matches(f.left, resource) and matches(f.right, resource)
    if isinstance(f, Or):
        return matches(f.left, resource) or matches(f.right, resource)
    if isinstance(f, Not):
        return not matches(f.inner, resource)
    if isinstance(f, Present):
        return any(_is_present(c) for c in _candidates(f.path, resource))
    if isinstance(f, Compare):
        return _compare(f.path, f.op, f.value, resource)
    v = _resolve_attr(f.path, resource)
    if v is _MISSING:
        return False
    elements = list(v) if isinstance(v, list) else [v]
    if f.path.sub_attr is not None:
        elements = [x for x in (get_ci(e, f.path.sub_attr) if isinstance(e, dict) else _MISSING for e in elements)
                    if x is not _MISSING]
    return any(matches(f.filter, e) for e in elements)


def _container(urn: Optional[str], resource: dict) -> Optional[dict]:
    if urn is None:
        return resource
    ext = get_ci(resource, urn)
    if isinstance(ext, dict):
        return ext
    return resource if is_core_urn(urn) else None


def _resolve_attr(path: AttrName, resource: Any) -> Any:
    if not isinstance(resource, dict):
        return _MISSING
    obj = _container(path.urn, resource)
    if obj is None:
        return _MISSING
    return get_ci(obj, path.attr)


def _candidates(path: AttrName, resource: Any) -> list:
    v = _resolve_attr(path, resource)
    if v is _MISSING:
        return []
    out: list = []

    def push(x: Any) -> None:
        if isinstance(x, list):
            out.extend(x)
        else:
            out.append(x)

    if path.sub_attr is None:
        push(v)
    else:
        for parent in (v if isinstance(v, list) else [v]):
            if isinstance(parent, dict):
                sv = get_ci(parent, path.sub_attr)
                if sv is not _MISSING:
                    push(sv)
    return out


def _is_present(v: Any) -> bool:
    if v is None:
        return False
    if isinstance(v, str):
        return v != ""
    if isinstance(v, list):
        return len(v) > 0
    if isinstance(v, dict):
        return any(_is_present(x) for x in v.values())
    return True


def _is_case_exact(path: AttrName) -> bool:
    if not path.is_top_level():
        return False
    if path.sub_attr is None:
        return name_eq(path.attr, "id") or name_eq(path.attr, "externalId")
    return name_eq(path.attr, "meta") and name_eq(path.sub_attr, "version")


def _compare(path: AttrName, op: str, value: Any, resource: Any) -> bool:
    cands = []
    for c in _candidates(path, resource):
        if isinstance(c, dict):
            x = get_ci(c, "value")
            if x is not _MISSING:
                cands.append(x)
        else:
            cands.append(c)
    exact = _is_case_exact(path)
    if op == "ne":
        return not _compare_any(cands, "eq", value, exact)
    return _compare_any(cands, op, value, exact)


def _compare_any(cands: list, op: str, value: Any, exact: bool) -> bool:
    if value is None:
        return op == "eq" and not any(_is_present(c) for c in cands)
    return any(_compare_one(c, op, value, exact) for c in cands)


def _ordered(op: str, ord_: int) -> bool:
    return {"eq": ord_ == 0, "ne": ord_ != 0, "gt": ord_ > 0, "ge": ord_ >= 0, "lt": ord_ < 0,
            "le": ord_ <= 0}.get(op, False)


def _rust_lower(s: str) -> str:
    return s.lower()


def _str_cmp(a: str, b: str) -> int:
    # Rust compares strings by UTF-8 bytes; Python by code points: the same order.
    return (a > b) - (a < b)


def _compare_one(actual: Any, op: str, expected: Any, exact: bool) -> bool:
    if isinstance(actual, str) and isinstance(expected, str):
        a, e = (actual, expected) if exact else (_rust_lower(actual), _rust_lower(expected))
        if op == "co":
            return e in a
        if op == "sw":
            return a.startswith(e)
        if op == "ew":
            return a.endswith(e)
        return _ordered(op, _str_cmp(a, e))
    if _is_number(actual) and _is_number(expected):
        if isinstance(actual, float) or isinstance(expected, float):
            x, y = float(actual), float(expected)
            if math.isnan(x) or math.isnan(y):
                return False
        else:
            x, y = actual, expected
        return _ordered(op, (x > y) - (x < y))
    if isinstance(actual, bool) and isinstance(expected, bool):
        return {"eq": actual == expected, "ne": actual != expected}.get(op, False)
    return False


# -- select (select.rs) ----------------------------------------------------------------

def _pick(v: Any) -> Any:
    if isinstance(v, list):
        for i in v:
            if isinstance(i, dict) and get_ci(i, "primary") is True:
                return i
        return v[0] if v else _MISSING
    if v is None:
        return _MISSING
    return v


def _sort_key(p: AttrName, view: Any) -> Optional[tuple]:
    if not isinstance(view, dict):
        return None
    holder: Any = view
    if p.urn is not None and not is_core_urn(p.urn):
        holder = get_ci(view, p.urn)
        if not isinstance(holder, dict):
            return None
    v = get_ci(holder, p.attr)
    if v is _MISSING:
        return None
    v = _pick(v)
    if v is _MISSING:
        return None
    if p.sub_attr is not None:
        if not isinstance(v, dict):
            return None
        v = get_ci(v, p.sub_attr)
        if v is _MISSING:
            return None
        v = _pick(v)
        if v is _MISSING:
            return None
    elif isinstance(v, dict):
        v = get_ci(v, "value")
        if v is _MISSING:
            return None
    if isinstance(v, bool):
        return (0, v)
    if _is_number(v):
        return (1, float(v))
    if isinstance(v, str):
        return (2, v.lower())
    return None


def select(views: Sequence[Any], filter: Optional[Filter], start_index: int = 1, count: int = 0xFFFFFFFF,
           sort_by: Optional[str] = None, sort_descending: bool = False) -> tuple[int, list[int]]:
    """(total results, indices of the requested page): filters, sorts (stable; missing values
    last ascending, first descending) and pages `views` as the component does."""
    path = parse_attr_name(sort_by) if sort_by is not None else None
    hits = [(None if path is None else _sort_key(path, v), i) for i, v in enumerate(views)
            if filter is None or matches(filter, v)]
    if path is not None:
        import functools

        def cmp(a: tuple, b: tuple) -> int:
            x, y = a[0], b[0]
            if x is not None and y is not None:
                o = (x > y) - (x < y) if x[0] == y[0] else (x[0] > y[0]) - (x[0] < y[0])
            elif x is not None:
                o = -1
            elif y is not None:
                o = 1
            else:
                o = 0
            return -o if sort_descending else o

        hits.sort(key=functools.cmp_to_key(cmp))
    skip = max(start_index, 1) - 1
    return len(hits), [i for _, i in hits[skip:skip + count]]
