// SCIM filters (RFC 7644 §3.4.2.2) for the directory: a port of the component's own parser
// (src/scim/filter/parse.rs, src/scim/attr.rs), evaluator (src/scim/filter/eval.rs) and
// selection (src/server/select.rs), so the Node directory decides what a filter, a sort and a
// page mean exactly as the guest and the other hosts do. test/filter.test.js runs the Rust
// crate's own test vectors against it.

/** How deeply `(`, `not (` and `[` may nest. */
export const MAX_DEPTH = 64;
/** How many comparisons one filter may hold. */
export const MAX_TERMS = 256;

const CORE_SCHEMA_PREFIX = 'urn:ietf:params:scim:schemas:core:';
const OPS = ['eq', 'ne', 'co', 'sw', 'ew', 'gt', 'ge', 'lt', 'le'];

/**
 * @typedef {{urn: string|null, attr: string, subAttr: string|null}} AttrName
 * @typedef {{type: 'compare', path: AttrName, op: string, value: string|number|boolean|null}
 *   | {type: 'present', path: AttrName}
 *   | {type: 'and'|'or', left: Filter, right: Filter}
 *   | {type: 'not', inner: Filter}
 *   | {type: 'valuePath', path: AttrName, filter: Filter}} Filter
 */

/** A filter that could not be parsed (the server answers 400 `invalidFilter`). */
export class FilterError extends Error {
  /** @param {number} position @param {string} message */
  constructor(position, message) {
    super(`invalid filter at position ${position}: ${message}`);
    this.name = 'FilterError';
    this.position = position;
    this.detail = message;
  }
}

const asciiLower = (s) => s.replace(/[A-Z]/g, (c) => c.toLowerCase());
/** SCIM compares attribute names ASCII case-insensitively. */
export const nameEq = (a, b) => a.length === b.length && asciiLower(a) === asciiLower(b);
const isCoreUrn = (urn) => urn.length >= CORE_SCHEMA_PREFIX.length && nameEq(urn.slice(0, CORE_SCHEMA_PREFIX.length), CORE_SCHEMA_PREFIX);
const isDelim = (c) => /\s/.test(c) || c === '(' || c === ')' || c === '[' || c === ']' || c === '"';
const describe = (rest) => (rest.length === 0 ? 'end of input' : `'${String.fromCodePoint(rest.codePointAt(0))}'`);

/** The value of attribute `name` in `obj`: an exact key first, else the first case-insensitive one. */
export function getCi(obj, name) {
  if (obj === null || typeof obj !== 'object' || Array.isArray(obj)) return undefined;
  if (Object.prototype.hasOwnProperty.call(obj, name)) return obj[name];
  for (const k of Object.keys(obj)) {
    if (nameEq(k, name)) return obj[k];
  }
  return undefined;
}

function scanAttrName(s) {
  if (s.length >= 4 && nameEq(s.slice(0, 4), '$ref')) return 4;
  if (!/^[A-Za-z]/.test(s)) return null;
  const m = /^[A-Za-z0-9_-]*/.exec(s);
  return m[0].length;
}

const isVersionSegment = (seg) => /^[0-9][0-9.]*$/.test(seg);

/** `[URN ":"] ATTRNAME ["." subAttr]`, or `{schemaOnly}` for a bare schema URN. */
function parseNameToken(s, base) {
  if (s.length === 0) throw new FilterError(base, 'expected an attribute name, found end of input');
  let urn = null;
  let rest = s;
  let restAt = 0;
  if (s.length >= 4 && nameEq(s.slice(0, 4), 'urn:')) {
    let at = 0;
    for (const seg of s.split(':')) {
      if (seg.length === 0) {
        throw new FilterError(base + at, `expected a URN segment or attribute name after ':', found ${describe(s.slice(at))}`);
      }
      at += seg.length + 1;
    }
    const lastColon = s.lastIndexOf(':');
    urn = s.slice(0, lastColon);
    const last = s.slice(lastColon + 1);
    const beforeLast = urn.slice(urn.lastIndexOf(':') + 1);
    if (isVersionSegment(beforeLast) && !last.includes('.')) {
      return { schemaOnly: s };
    }
    rest = last;
    restAt = lastColon + 1;
  }
  const attrLen = scanAttrName(rest);
  if (attrLen === null) {
    throw new FilterError(base + restAt, `expected an attribute name starting with a letter, found ${describe(rest)}`);
  }
  const attr = rest.slice(0, attrLen);
  const after = rest.slice(attrLen);
  const afterAt = restAt + attrLen;
  let subAttr = null;
  if (after.length > 0) {
    if (!after.startsWith('.')) {
      throw new FilterError(base + afterAt, `expected '.', '[' or end of attribute path, found ${describe(after)}`);
    }
    const sub = after.slice(1);
    const subLen = scanAttrName(sub);
    if (subLen === null) {
      throw new FilterError(base + afterAt + 1, `expected a sub-attribute name after '.', found ${describe(sub)}`);
    }
    if (subLen !== sub.length) {
      throw new FilterError(base + afterAt + 1 + subLen, `expected end of attribute path, found ${describe(sub.slice(subLen))}`);
    }
    subAttr = sub;
  }
  return { name: { urn, attr, subAttr } };
}

/** Parses an attribute path such as `name.familyName` (for `sortBy`). */
export function parseAttrName(s) {
  const t = parseNameToken(s, 0);
  if (t.schemaOnly !== undefined) throw new FilterError(s.length, "expected ':' and an attribute name after the schema URN");
  return t.name;
}

const JSON_NUMBER = /^-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?$/;

class Parser {
  constructor(s) {
    this.s = s;
    this.pos = 0;
    this.depth = 0;
    this.terms = 0;
  }

  rest() {
    return this.s.slice(this.pos);
  }

  peek() {
    return this.pos < this.s.length ? this.s[this.pos] : undefined;
  }

  skipWs() {
    while (this.pos < this.s.length && /\s/.test(this.s[this.pos])) this.pos++;
  }

  word() {
    let end = this.pos;
    while (end < this.s.length && !isDelim(this.s[end])) end++;
    return this.s.slice(this.pos, end);
  }

  eatKeyword(kw) {
    const save = this.pos;
    this.skipWs();
    const prev = save > 0 ? this.s[save - 1] : '';
    const separated = this.pos > save || prev === ')' || prev === ']' || prev === '"';
    if (separated && nameEq(this.word(), kw)) {
      this.pos += kw.length;
      return true;
    }
    this.pos = save;
    return false;
  }

  enter() {
    this.depth++;
    if (this.depth > MAX_DEPTH) throw new FilterError(this.pos, `filter nests deeper than ${MAX_DEPTH} levels`);
  }

  parseOr() {
    let left = this.parseAnd();
    while (this.eatKeyword('or')) left = { type: 'or', left, right: this.parseAnd() };
    return left;
  }

  parseAnd() {
    let left = this.parseUnary();
    while (this.eatKeyword('and')) left = { type: 'and', left, right: this.parseUnary() };
    return left;
  }

  expectClose(close, openedAt) {
    this.skipWs();
    if (this.peek() === close) {
      this.pos++;
      return;
    }
    const open = close === ')' ? '(' : '[';
    throw new FilterError(this.pos, `expected '${close}' to close the '${open}' at position ${openedAt}, found ${describe(this.rest())}`);
  }

  parseGroup() {
    const openedAt = this.pos;
    this.pos++;
    this.enter();
    const inner = this.parseOr();
    this.expectClose(')', openedAt);
    this.depth--;
    return inner;
  }

  parseUnary() {
    this.skipWs();
    if (this.peek() === '(') return this.parseGroup();
    const word = this.word();
    if (nameEq(word, 'not')) {
      const notAt = this.pos;
      this.pos += word.length;
      this.skipWs();
      if (this.peek() !== '(') {
        throw new FilterError(this.pos, `expected '(' after 'not' at position ${notAt} (the RFC requires parentheses), found ${describe(this.rest())}`);
      }
      this.enter();
      const inner = this.parseGroup();
      this.depth--;
      return { type: 'not', inner };
    }
    return this.parseAtom();
  }

  parseAtom() {
    const start = this.pos;
    const word = this.word();
    if (word.length === 0) {
      throw new FilterError(start, `expected an attribute path, '(' or 'not', found ${describe(this.rest())}`);
    }
    this.terms++;
    if (this.terms > MAX_TERMS) throw new FilterError(start, `filter has more than ${MAX_TERMS} comparisons`);
    const token = parseNameToken(word, start);
    if (token.schemaOnly !== undefined) {
      throw new FilterError(start + word.length, "expected ':' and an attribute name after the schema URN");
    }
    const path = token.name;
    this.pos += word.length;
    if (this.peek() === '[') {
      if (path.subAttr !== null) {
        throw new FilterError(this.pos, "a value filter '[...]' must follow the attribute name, not a sub-attribute");
      }
      const openedAt = this.pos;
      this.pos++;
      this.enter();
      const inner = this.parseOr();
      this.expectClose(']', openedAt);
      this.depth--;
      return { type: 'valuePath', path, filter: inner };
    }
    const afterPath = this.pos;
    this.skipWs();
    const opWord = this.word();
    if (this.pos === afterPath || opWord.length === 0) {
      throw new FilterError(this.pos, `expected an operator (eq, ne, co, sw, ew, gt, ge, lt, le, pr) after '${word}', found ${describe(this.rest())}`);
    }
    if (nameEq(opWord, 'pr')) {
      this.pos += opWord.length;
      return { type: 'present', path };
    }
    const op = OPS.find((o) => nameEq(o, opWord));
    if (op === undefined) {
      throw new FilterError(this.pos, `expected an operator (eq, ne, co, sw, ew, gt, ge, lt, le, pr), found '${opWord}'`);
    }
    this.pos += opWord.length;
    const afterOp = this.pos;
    this.skipWs();
    if ((this.pos === afterOp && this.peek() !== '"') || this.pos >= this.s.length) {
      throw new FilterError(this.pos, `expected a value after '${opWord}' (a quoted string, number, true, false or null), found ${describe(this.rest())}`);
    }
    return { type: 'compare', path, op, value: this.parseValue() };
  }

  parseValue() {
    const start = this.pos;
    if (this.peek() === '"') {
      let i = start + 1;
      while (i < this.s.length) {
        if (this.s[i] === '\\') i += 2;
        else if (this.s[i] === '"') break;
        else i++;
      }
      if (i >= this.s.length) throw new FilterError(start, 'unterminated string: expected a closing \'"\'');
      const literal = this.s.slice(start, i + 1);
      let value;
      try {
        value = JSON.parse(literal);
      } catch (e) {
        throw new FilterError(start, `invalid string literal: ${e.message}`);
      }
      this.pos = i + 1;
      return value;
    }
    const word = this.word();
    let value;
    if (nameEq(word, 'true')) value = true;
    else if (nameEq(word, 'false')) value = false;
    else if (nameEq(word, 'null')) value = null;
    else if (JSON_NUMBER.test(word) && Number.isFinite(Number(word))) value = Number(word);
    else {
      throw new FilterError(start, `expected a value (a quoted string, number, true, false or null), found ${word.length === 0 ? describe(this.rest()) : `'${word}'`}`);
    }
    this.pos += word.length;
    return value;
  }
}

/**
 * Parses a complete filter.
 * @param {string} input
 * @returns {Filter}
 * @throws {FilterError}
 */
export function parseFilter(input) {
  if (typeof input !== 'string') throw new TypeError('a filter is a string');
  const p = new Parser(input);
  const f = p.parseOr();
  p.skipWs();
  if (p.pos < input.length) {
    const rest = p.rest();
    throw new FilterError(p.pos, rest.startsWith(')') ? "unexpected ')' with no matching '('" : `expected 'and', 'or' or end of filter, found ${describe(rest)}`);
  }
  return f;
}

// ---- evaluation (eval.rs) ----

const isObject = (v) => v !== null && typeof v === 'object' && !Array.isArray(v);

function container(urn, resource) {
  if (urn === null) return resource;
  const ext = getCi(resource, urn);
  if (isObject(ext)) return ext;
  return isCoreUrn(urn) ? resource : undefined;
}

function resolveAttr(path, resource) {
  if (!isObject(resource)) return undefined;
  const obj = container(path.urn, resource);
  return obj === undefined ? undefined : getCi(obj, path.attr);
}

function candidates(path, resource) {
  const v = resolveAttr(path, resource);
  if (v === undefined) return [];
  const out = [];
  const push = (x) => (Array.isArray(x) ? out.push(...x) : out.push(x));
  if (path.subAttr === null) {
    push(v);
  } else {
    for (const parent of Array.isArray(v) ? v : [v]) {
      const sv = isObject(parent) ? getCi(parent, path.subAttr) : undefined;
      if (sv !== undefined) push(sv);
    }
  }
  return out;
}

function isPresent(v) {
  if (v === null || v === undefined) return false;
  if (typeof v === 'string') return v.length > 0;
  if (Array.isArray(v)) return v.length > 0;
  if (typeof v === 'object') return Object.values(v).some(isPresent);
  return true;
}

function isCaseExact(path) {
  if (path.urn !== null && !isCoreUrn(path.urn)) return false;
  if (path.subAttr === null) return nameEq(path.attr, 'id') || nameEq(path.attr, 'externalId');
  return nameEq(path.attr, 'meta') && nameEq(path.subAttr, 'version');
}

/** Compares strings by Unicode code point (as Rust compares UTF-8 bytes). */
export function compareCodePoints(a, b) {
  if (a === b) return 0;
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) {
    let x = a.charCodeAt(i);
    let y = b.charCodeAt(i);
    if (x !== y) {
      // Surrogates (astral code points) sort after U+E000..U+FFFF in code point order.
      if (x >= 0xd800 && x <= 0xdfff) x += 0x2000; else if (x >= 0xe000) x -= 0x800;
      if (y >= 0xd800 && y <= 0xdfff) y += 0x2000; else if (y >= 0xe000) y -= 0x800;
      return x < y ? -1 : 1;
    }
  }
  return a.length === b.length ? 0 : a.length < b.length ? -1 : 1;
}

function ordered(op, ord) {
  switch (op) {
    case 'eq': return ord === 0;
    case 'ne': return ord !== 0;
    case 'gt': return ord > 0;
    case 'ge': return ord >= 0;
    case 'lt': return ord < 0;
    case 'le': return ord <= 0;
    default: return false;
  }
}

function compareOne(actual, op, expected, caseExact) {
  if (typeof actual === 'string' && typeof expected === 'string') {
    const a = caseExact ? actual : actual.toLowerCase();
    const e = caseExact ? expected : expected.toLowerCase();
    if (op === 'co') return a.includes(e);
    if (op === 'sw') return a.startsWith(e);
    if (op === 'ew') return a.endsWith(e);
    return ordered(op, compareCodePoints(a, e));
  }
  if (typeof actual === 'number' && typeof expected === 'number') {
    if (op === 'co' || op === 'sw' || op === 'ew') return false;
    return ordered(op, actual === expected ? 0 : actual < expected ? -1 : 1);
  }
  if (typeof actual === 'boolean' && typeof expected === 'boolean') {
    if (op === 'eq') return actual === expected;
    if (op === 'ne') return actual !== expected;
    return false;
  }
  return false;
}

function compareAny(cands, op, value, caseExact) {
  if (value === null) {
    return op === 'eq' && !cands.some(isPresent);
  }
  return cands.some((c) => compareOne(c, op, value, caseExact));
}

function compare(path, op, value, resource) {
  const cands = [];
  for (const c of candidates(path, resource)) {
    if (isObject(c)) {
      const v = getCi(c, 'value');
      if (v !== undefined) cands.push(v);
    } else {
      cands.push(c);
    }
  }
  if (op === 'ne') return !compareAny(cands, 'eq', value, isCaseExact(path));
  return compareAny(cands, op, value, isCaseExact(path));
}

/**
 * Whether `resource` (a SCIM JSON object) matches `filter`, with the component's rules.
 * @param {Filter} filter
 * @param {unknown} resource
 * @returns {boolean}
 */
export function matches(filter, resource) {
  switch (filter.type) {
    case 'and': return matches(filter.left, resource) && matches(filter.right, resource);
    case 'or': return matches(filter.left, resource) || matches(filter.right, resource);
    case 'not': return !matches(filter.inner, resource);
    case 'present': return candidates(filter.path, resource).some(isPresent);
    case 'compare': return compare(filter.path, filter.op, filter.value, resource);
    case 'valuePath': {
      const v = resolveAttr(filter.path, resource);
      if (v === undefined) return false;
      const elements = Array.isArray(v) ? v : [v];
      return elements.some((e) => matches(filter.filter, e));
    }
    default: throw new TypeError(`unknown filter node ${filter.type}`);
  }
}

// ---- selection (select.rs) ----

function pick(v) {
  if (Array.isArray(v)) {
    return v.find((i) => isObject(i) && getCi(i, 'primary') === true) ?? v[0];
  }
  return v === null ? undefined : v;
}

function sortKey(p, view) {
  if (!isObject(view)) return undefined;
  let holder = view;
  if (p.urn !== null && !isCoreUrn(p.urn)) {
    holder = getCi(view, p.urn);
    if (!isObject(holder)) return undefined;
  }
  let v = getCi(holder, p.attr);
  if (v === undefined) return undefined;
  v = pick(v);
  if (v === undefined) return undefined;
  if (p.subAttr !== null) {
    if (!isObject(v)) return undefined;
    const s = getCi(v, p.subAttr);
    if (s === undefined) return undefined;
    v = pick(s);
  } else if (isObject(v)) {
    v = getCi(v, 'value');
  }
  if (typeof v === 'string') return { rank: 2, v: v.toLowerCase() };
  if (typeof v === 'number') return { rank: 1, v };
  if (typeof v === 'boolean') return { rank: 0, v };
  return undefined;
}

function cmpKeys(a, b) {
  if (a.rank !== b.rank) return a.rank - b.rank;
  if (a.rank === 2) return compareCodePoints(a.v, b.v);
  if (a.v === b.v) return 0;
  return a.v < b.v ? -1 : 1;
}

/**
 * Filters, sorts and pages resources as a directory query asks.
 * @param {unknown[]} views SCIM JSON objects with their `id` and `meta`
 * @param {{filter?: Filter|null, sortBy?: string|null, sortDescending?: boolean, startIndex?: number, count?: number}} q
 * @returns {{totalResults: number, indices: number[]}}
 */
export function select(views, q) {
  const sortBy = q.sortBy ? parseAttrName(q.sortBy) : null;
  const hits = [];
  views.forEach((view, i) => {
    if (!q.filter || matches(q.filter, view)) hits.push({ key: sortBy ? sortKey(sortBy, view) : undefined, i });
  });
  if (sortBy) {
    const dir = q.sortDescending ? -1 : 1;
    hits.sort((a, b) => {
      let ord;
      if (a.key !== undefined && b.key !== undefined) ord = cmpKeys(a.key, b.key);
      else if (a.key !== undefined) ord = -1;
      else if (b.key !== undefined) ord = 1;
      else ord = 0;
      return ord * dir;
    });
  }
  const skip = Math.max(1, q.startIndex ?? 1) - 1;
  const count = q.count ?? hits.length;
  return { totalResults: hits.length, indices: hits.slice(skip, skip + count).map((h) => h.i) };
}
