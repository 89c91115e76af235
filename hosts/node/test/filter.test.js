// The filter engine against the component crate's own test vectors
// (src/scim/filter/eval.rs, parse.rs, src/server/select.rs).
import assert from 'node:assert/strict';
import { test } from 'node:test';

import { FilterError, matches, parseFilter, select, MAX_DEPTH, MAX_TERMS } from '../src/filter.js';

const user = {
  schemas: ['urn:ietf:params:scim:schemas:core:2.0:User', 'urn:ietf:params:scim:schemas:extension:enterprise:2.0:User'],
  id: '2819c223-7f76-453a-919d-413861904646',
  externalId: 'BJensen',
  userName: 'bjensen@example.com',
  name: { familyName: "O'Malley", givenName: 'Barbara' },
  title: 'Tour Guide',
  userType: 'Employee',
  active: true,
  emails: [{ value: 'bjensen@example.com', type: 'work', primary: true }, { value: 'babs@jensen.org', type: 'home' }],
  ims: [{ value: 'someaimhandle', type: 'aim' }],
  groups: [],
  loginCount: 7,
  meta: { resourceType: 'User', lastModified: '2011-05-13T04:42:34Z', version: 'W/"3694e05e9dff591"' },
  'urn:ietf:params:scim:schemas:extension:enterprise:2.0:User': {
    employeeNumber: '701984', department: 'Sales', manager: { value: '26118915-6090-4610-87e4-49d8ca9f808d' },
  },
};

const YES = [
  'userName eq "BJENSEN@example.com"', 'USERNAME eq "bjensen@example.com"', 'name.familyName co "o\'malley"', 'userName sw "bj"',
  'urn:ietf:params:scim:schemas:core:2.0:User:userName sw "B"', 'title pr', 'meta.lastModified gt "2011-05-13T04:42:33Z"',
  'meta.lastModified ge "2011-05-13T04:42:34Z"', 'meta.lastModified lt "2012-01-01T00:00:00Z"', 'meta.lastModified le "2011-05-13T04:42:34Z"',
  'title pr and userType eq "Employee"', 'title pr or userType eq "Intern"',
  'schemas eq "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"',
  'userType eq "Employee" and (emails co "example.com" or emails.value co "example.org")',
  'userType eq "Employee" and (emails.type eq "work")', 'userType eq "Employee" and emails[type eq "work" and value co "@example.com"]',
  'emails[type eq "work" and value co "@example.com"] or ims[type eq "xmpp" and value co "@foo.com"]', 'emails eq "babs@jensen.org"',
  'emails[type eq "home"]', 'emails[primary eq true and type eq "WORK"]',
  'urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department eq "sales"',
  'urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager.value pr',
  'urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager eq "26118915-6090-4610-87e4-49d8ca9f808d"',
  'id eq "2819c223-7f76-453a-919d-413861904646"', 'externalId eq "BJensen"', 'active eq true', 'active ne false',
  'loginCount gt 6 and loginCount le 7.0 and loginCount eq 7', 'nickName eq null', 'nickName ne "x"', 'not (nickName pr)', 'name pr',
  'userName ew ".COM"', 'ims.value eq "SomeAimHandle"', 'meta.version eq "W/\\"3694e05e9dff591\\""',
];
const NO = [
  'userType ne "Employee" and not (emails co "example.com" or emails.value co "example.org")', 'externalId eq "bjensen"',
  'id eq "2819C223-7F76-453A-919D-413861904646"', 'meta.version eq "w/\\"3694e05e9dff591\\""', 'groups pr', 'nickName pr',
  'emails[type eq "home" and primary eq true]', 'urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:employeeNumber eq "1"',
  'urn:example:params:scim:schemas:extension:acme:2.0:User:department eq "Sales"', 'department eq "Sales"', 'active gt false',
  'active eq "true"', 'loginCount co 7', 'loginCount gt "6"', 'title eq null', 'userName gt "c"', 'name eq "Barbara"',
];

test('the component crate\'s evaluation vectors match', () => {
  for (const f of YES) assert.equal(matches(parseFilter(f), user), true, `expected a match: ${f}`);
  for (const f of NO) assert.equal(matches(parseFilter(f), user), false, `expected no match: ${f}`);
  assert.equal(matches(parseFilter('title pr'), 'x'), false);
});

test('precedence, literals and lenient spacing parse as the component parses them', () => {
  const f = parseFilter('a pr or b pr and c pr');
  assert.equal(f.type, 'or');
  assert.equal(f.right.type, 'and');
  const g = parseFilter('a pr AND b pr Or c pr');
  assert.equal(g.type, 'or');
  assert.equal(g.left.type, 'and');
  assert.equal(parseFilter('NOT (a PR)').type, 'not');
  for (const [s, v] of [['x eq 42', 42], ['x eq -1.5e3', -1500], ['x eq true', true], ['x eq False', false], ['x eq null', null], ['x eq "a\\"b\\\\c\\u00e9\\n"', 'a"b\\cé\n']]) {
    assert.deepEqual(parseFilter(s).value, v, s);
  }
  const m = parseFilter('urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager.value eq "1"');
  assert.deepEqual(m.path, { urn: 'urn:ietf:params:scim:schemas:extension:enterprise:2.0:User', attr: 'manager', subAttr: 'value' });
  assert.doesNotThrow(() => parseFilter('(a eq "1")or(b eq"2")'));
});

test('malformed filters are errors that say what is wrong', () => {
  const cases = [
    ['userName eq', 'expected a value'], ['userName zz "x"', 'expected an operator'], ['(userName eq "a"', "expected ')'"],
    ['userName eq "unterminated', 'unterminated string'], ['not userName eq "a"', "expected '(' after 'not'"], ['', 'expected an attribute path'],
    ['userName', 'expected an operator'], ['userName eq "a")', "unexpected ')'"], ['userName eq "a" xor b pr', "expected 'and', 'or'"],
    ['userName eq bjensen', 'expected a value'], ['emails[type eq "work"', "expected ']'"], ['1abc eq "x"', 'starting with a letter'],
    ['x eq "bad \\q escape"', 'invalid string literal'], ['x eq 1e999', 'expected a value'],
  ];
  for (const [s, msg] of cases) {
    assert.throws(() => parseFilter(s), (e) => e instanceof FilterError && e.message.includes(msg), `${JSON.stringify(s)} should fail with ${msg}`);
  }
  assert.throws(() => parseFilter('(userName eq "a"'), (e) => e.position === 16);
});

test('hostile nesting and length are refused, the limits themselves are fine', () => {
  assert.throws(() => parseFilter(`${'('.repeat(10000)}a pr${')'.repeat(10000)}`), /deeper/);
  assert.throws(() => parseFilter(`${'not ('.repeat(10000)}a pr${')'.repeat(10000)}`), FilterError);
  assert.throws(() => parseFilter(`${'a['.repeat(10000)}a pr${']'.repeat(10000)}`), FilterError);
  assert.throws(() => parseFilter(Array(MAX_TERMS + 1).fill('a pr').join(' or ')), /comparisons/);
  assert.doesNotThrow(() => parseFilter(`${'('.repeat(MAX_DEPTH)}a pr${')'.repeat(MAX_DEPTH)}`));
  const chain = Array(MAX_TERMS).fill('userName eq "zz"').join(' and ');
  assert.equal(matches(parseFilter(chain), { userName: 'zz' }), true);
});

test('select: numbers sort as numbers, the primary value wins, missing values sort last', () => {
  const views = [
    { id: 'a', n: 10, emails: [{ value: 'z@x' }, { value: 'b@x', primary: true }] },
    { id: 'b', n: 9, emails: [{ value: 'a@x' }] },
    { id: 'c', emails: [{ value: 'c@x', primary: true }] },
  ];
  assert.deepEqual(select(views, { sortBy: 'n', startIndex: 1, count: 10 }).indices, [1, 0, 2]);
  assert.deepEqual(select(views, { sortBy: 'emails', startIndex: 1, count: 10 }).indices, [1, 0, 2]);
  assert.deepEqual(select(views, { sortBy: 'n', sortDescending: true, startIndex: 1, count: 10 }).indices, [2, 0, 1]);
});

test('select: filters and pages; count 0 asks only for the total', () => {
  const views = Array.from({ length: 10 }, (_, i) => ({ id: String(i), userName: `u${i}`, active: i % 2 === 0 }));
  assert.deepEqual(select(views, { filter: parseFilter('active eq true'), startIndex: 2, count: 2 }), { totalResults: 5, indices: [2, 4] });
  assert.deepEqual(select(views, { startIndex: 1, count: 0 }), { totalResults: 10, indices: [] });
});
