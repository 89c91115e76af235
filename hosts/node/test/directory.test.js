// The SQLite directory, with the component's own filter engine (WIT `selection.select`) on
// an instance of its own deciding every filter, sort and page beyond the SQL fast paths.
import assert from 'node:assert/strict';
import path from 'node:path';
import { before, test } from 'node:test';

import { DirectoryError, GuestTrap, Runtime, Selector } from '../src/index.js';
import { SqliteDirectory } from '../src/sqlite.js';
import { tempDir } from './helpers.js';

let runtime;
before(async () => {
  runtime = await Runtime.load();
});

test('the SQLite directory: uniqueness, versions, filters, sort, pages, memberships', async () => {
  const d = SqliteDirectory.open(path.join(tempDir('units-dir'), 'd.db'), runtime);
  try {
    const cms = (name) => ({ id: '', fields: { name, mail: `${name}@x.example`, field_first_name: 'F' }, active: true });
    const a = d.create('user', JSON.stringify({ userName: 'Ann', externalId: 'e1', name: { familyName: 'Zed' } }), cms('Ann'));
    const b = d.create('user', JSON.stringify({ userName: 'bob', externalId: 'e2', name: { familyName: 'Young' } }), cms('bob'));
    d.create('user', JSON.stringify({ userName: 'cy' }), null);
    assert.equal(a.version, 'W/"1"');
    assert.throws(() => d.create('user', JSON.stringify({ userName: 'ANN' }), null), (e) => e instanceof DirectoryError && e.case === 'conflict');
    assert.throws(() => d.create('user', JSON.stringify({ userName: 'other' }), cms('BOB')), (e) => e.case === 'conflict' && /CMS user/.test(e.message));
    assert.equal((await d.query('user', { filter: null, startIndex: 1, count: 10, sortBy: null, sortDescending: false })).totalResults, 3, 'the failed writes left nothing');
    const page = (q) => d.query('user', { filter: null, startIndex: 1, count: 10, sortBy: null, sortDescending: false, ...q });
    assert.deepEqual((await page({ filter: 'userName eq "ANN"' })).resources.map((r) => r.id), [a.id]);
    assert.deepEqual((await page({ filter: 'externalId eq "E1"' })).resources, [], 'externalId is case-exact');
    assert.deepEqual((await page({ filter: 'name.familyName pr', sortBy: 'name.familyName' })).resources.map((r) => r.id), [b.id, a.id]);
    assert.deepEqual((await page({ sortBy: 'userName', sortDescending: true, startIndex: 2, count: 1 })).resources.map((r) => r.id), [b.id]);
    assert.equal((await page({ filter: `meta.version eq "W/\\"1\\"" and id eq "${a.id}"` })).totalResults, 1);
    assert.equal((await page({ count: 0 })).resources.length, 0);
    await assert.rejects(() => page({ filter: 'userName eq' }), (e) => e.case === 'invalid-filter');
    const replaced = d.replace('user', a.id, JSON.stringify({ userName: 'ann', active: false }), { ...cms('ann'), active: false }, 'W/"1"');
    assert.equal(replaced.version, 'W/"2"');
    assert.equal(d.cmsUser(a.id).active, false);
    assert.throws(() => d.replace('user', a.id, '{}', null, 'W/"1"'), (e) => e.case === 'version-mismatch');
    assert.throws(() => d.replace('user', 'nope', '{}', null, null), (e) => e.case === 'not-found');
    assert.throws(() => d.create('user', '[1]', null), (e) => e.case === 'other');
    const g = d.create('group', JSON.stringify({ displayName: 'Staff', members: [{ value: a.id }, { value: b.id }] }), null);
    assert.equal(d.delete('user', a.id), true);
    assert.equal(d.delete('user', a.id), false);
    assert.equal(d.cmsUser(a.id), null);
    const group = JSON.parse(d.get('group', g.id).json);
    assert.deepEqual(group.members, [{ value: b.id }]);
    assert.equal(d.get('group', g.id).version, 'W/"2"');
  } finally {
    d.close();
  }
});

test('the directory filters, sorts and pages as the component does', async () => {
  const d = SqliteDirectory.open(path.join(tempDir('dir-select'), 'd.db'), runtime);
  try {
    const ids = {};
    for (const [name, n, emails, ext] of [
      ['zed', 10, [{ value: 'z@x', type: 'home' }, { value: 'b@x', type: 'work', primary: true }], 'E1'],
      ['amy', 9, [{ value: 'a@x', type: 'work' }], null],
      ['Bob', null, [{ value: 'c@x', type: 'home', primary: true }], 'e2'],
    ]) {
      const doc = { userName: name, emails };
      if (n !== null) doc.n = n;
      if (ext !== null) doc.externalId = ext;
      ids[name] = d.create('user', JSON.stringify(doc), null).id;
    }
    const byId = Object.fromEntries(Object.entries(ids).map(([k, v]) => [v, k]));
    const names = async (q) => {
      const page = await d.query('user', { filter: null, startIndex: 1, count: 10, sortBy: null, sortDescending: false, ...q });
      return [page.totalResults, page.resources.map((r) => byId[r.id])];
    };
    assert.deepEqual(await names({ sortBy: 'n' }), [3, ['amy', 'zed', 'Bob']], '9 < 10 as numbers; no value last');
    assert.deepEqual(await names({ sortBy: 'n', sortDescending: true }), [3, ['Bob', 'zed', 'amy']], 'descending: no value first');
    assert.deepEqual(await names({ sortBy: 'emails' }), [3, ['amy', 'zed', 'Bob']], 'a@x < b@x (primary) < c@x');
    assert.deepEqual(await names({ sortBy: 'userName' }), [3, ['amy', 'Bob', 'zed']], 'strings sort case-insensitively');
    assert.deepEqual(await names({ filter: 'emails[type eq "work" and value ew "@x"]', sortBy: 'userName' }), [2, ['amy', 'zed']]);
    assert.deepEqual(await names({ filter: 'n gt 9.5' }), [1, ['zed']], 'numbers compare as numbers');
    assert.deepEqual(await names({ filter: 'externalId eq "e1"' }), [0, []], 'externalId is case-exact (SQL fast path)');
    assert.deepEqual(await names({ filter: 'userName eq "BOB"' }), [1, ['Bob']], 'userName is not (SQL fast path)');
    assert.deepEqual(await names({ filter: 'not (n pr)' }), [1, ['Bob']]);
    assert.deepEqual(await names({ filter: 'userName pr', sortBy: 'userName', startIndex: 2, count: 1 }), [3, ['Bob']], 'a page of the sorted matches');
    assert.deepEqual(await names({ filter: 'userName pr', count: 0 }), [3, []], 'count 0: the total only');
    for (const bad of ['userName eq', 'emails[type eq "work"', `${'('.repeat(70)}a pr${')'.repeat(70)}`]) {
      await assert.rejects(() => names({ filter: bad }), (e) => e instanceof DirectoryError && e.case === 'invalid-filter', bad);
    }
    await assert.rejects(() => names({ sortBy: 'a[b' }), (e) => e instanceof DirectoryError && e.case === 'other');
    assert.equal(d.selector.instancesOpened(), 1, 'one dedicated instance answered every search');
  } finally {
    d.close();
  }
});

const GROUP = 'urn:ietf:params:scim:schemas:core:2.0:Group';
const groupNames = async (d, filter) => (await d.query('group', { filter, startIndex: 1, count: 100, sortBy: 'displayName', sortDescending: false }))
  .resources.map((r) => JSON.parse(r.json).displayName);
const addGroup = (d, name, members) => d.create('group', JSON.stringify({ schemas: [GROUP], displayName: name, members: members.map((value) => ({ value })) }), null).id;
const memberRows = (d) => d.db.prepare('SELECT COUNT(*) AS n FROM scim_group_members').get().n;

test("a user's groups are found through the membership index", async () => {
  const d = SqliteDirectory.open(path.join(tempDir('dir-members'), 'd.db'), runtime);
  try {
    const ann = d.create('user', JSON.stringify({ userName: 'ann', externalId: 'e1' }), null).id;
    const bob = d.create('user', JSON.stringify({ userName: 'bob', externalId: 'e2' }), null).id;
    const both = addGroup(d, 'both', [ann, bob]);
    const onlyBob = addGroup(d, 'only-bob', [bob]);
    addGroup(d, 'empty', []);
    const of = (id) => `members[value eq "${id}"]`;
    assert.deepEqual(await groupNames(d, of(bob)), ['both', 'only-bob']);
    assert.deepEqual(await groupNames(d, of(ann)), ['both']);
    assert.deepEqual(await groupNames(d, `members.value eq "${ann}"`), ['both'], 'the other form');
    assert.deepEqual(await groupNames(d, of(ann.toUpperCase())), ['both'], 'case-insensitive, as the filter engine decides');
    assert.deepEqual(await groupNames(d, of('nobody')), []);
    d.replace('group', both, JSON.stringify({ schemas: [GROUP], displayName: 'both', members: [{ value: ann }] }), null, null);
    assert.deepEqual(await groupNames(d, of(bob)), ['only-bob'], 'a replace moves the index');
    assert.equal(d.delete('group', onlyBob), true);
    assert.deepEqual(await groupNames(d, of(bob)), []);
    assert.equal(d.delete('user', ann), true);
    assert.deepEqual(await groupNames(d, of(ann)), [], 'a deleted user leaves their groups');
    assert.ok(!d.get('group', both).json.includes(ann));
    assert.equal(memberRows(d), 0);
  } finally {
    d.close();
  }
});

test('a member lookup is paged from the index and agrees with select', async () => {
  const d = SqliteDirectory.open(path.join(tempDir('dir-members-exact'), 'd.db'), runtime);
  try {
    const ann = d.create('user', JSON.stringify({ userName: 'ann' }), null).id;
    const bob = d.create('user', JSON.stringify({ userName: 'bob' }), null).id;
    for (const name of ['g1', 'g2', 'g3', 'g4', 'g5']) addGroup(d, name, [ann]);
    addGroup(d, "bob's", [bob]);
    // Unsorted, as the component reads a user's groups; the filter engine is not asked.
    let selects = 0;
    const select = d.selector.select.bind(d.selector);
    d.selector.select = (...args) => {
      selects += 1;
      return select(...args);
    };
    const page = async (value, startIndex, count) => {
      const p = await d.query('group', { filter: `members[value eq "${value}"]`, startIndex, count, sortBy: null, sortDescending: false });
      return [p.totalResults, p.resources.map((r) => JSON.parse(r.json).displayName)];
    };
    assert.deepEqual(await page(ann, 1, 100), [5, ['g1', 'g2', 'g3', 'g4', 'g5']]);
    assert.deepEqual(await page(ann, 2, 2), [5, ['g2', 'g3']]);
    assert.deepEqual(await page(ann, 5, 10), [5, ['g5']]);
    assert.deepEqual(await page(ann, 6, 10), [5, []]);
    assert.deepEqual(await page(ann, 1, 0), [5, []], 'count 0: the total only');
    assert.deepEqual(await page('nobody', 1, 10), [0, []]);
    const other = await d.query('group', { filter: `members.value eq "${bob}"`, startIndex: 1, count: 10, sortBy: null, sortDescending: false });
    assert.deepEqual(other.resources.map((r) => JSON.parse(r.json).displayName), ["bob's"], 'the other form');
    assert.equal(selects, 0, 'every exact page was cut from the index');
    // A group holding a case variant of the value: not exact, so select decides, and the
    // unsorted and sorted (always select) queries agree on every lookup.
    const variant = ann.toUpperCase();
    assert.notEqual(variant, ann);
    addGroup(d, 'g0-variant', [variant]);
    for (const value of [ann, variant]) {
      const [total, unsorted] = await page(value, 1, 100);
      const sorted = await groupNames(d, `members[value eq "${value}"]`);
      assert.deepEqual([...unsorted].sort(), sorted, value);
      assert.equal(total, sorted.length, value);
    }
    assert.deepEqual(await page(ann, 1, 100), [6, ['g1', 'g2', 'g3', 'g4', 'g5', 'g0-variant']], 'case-insensitive, as the filter engine decides');
    assert.equal(selects, 5, 'each lookup with the case variant among its candidates went through select');
  } finally {
    d.close();
  }
});

test('a database without the membership index gets one filled from its groups', async () => {
  const file = path.join(tempDir('dir-members-old'), 'd.db');
  const old = SqliteDirectory.open(file, runtime);
  let ann;
  try {
    ann = old.create('user', JSON.stringify({ userName: 'ann', externalId: 'e1' }), null).id;
    addGroup(old, 'staff', [ann]);
    old.db.exec('DROP TABLE scim_group_members');
  } finally {
    old.close();
  }
  const d = SqliteDirectory.open(file, runtime);
  try {
    assert.deepEqual(await groupNames(d, `members[value eq "${ann}"]`), ['staff']);
    assert.deepEqual(await groupNames(d, `members[value eq "${ann.toUpperCase()}"]`), ['staff']);
    assert.equal(memberRows(d), 1);
    // As a database written before `member_value`, its index holding stale rows.
    d.db.exec(`DROP TABLE scim_group_members;
      CREATE TABLE scim_group_members (group_id TEXT NOT NULL, member_key TEXT NOT NULL,
        PRIMARY KEY (group_id, member_key)) WITHOUT ROWID;
      INSERT INTO scim_group_members SELECT id, 'stale' FROM scim_groups;`);
  } finally {
    d.close();
  }
  const rebuilt = SqliteDirectory.open(file, runtime);
  try {
    assert.deepEqual(rebuilt.db.prepare('SELECT member_key, member_value FROM scim_group_members').all(), [{ member_key: ann.toLowerCase(), member_value: ann }]);
    assert.equal(memberRows(rebuilt), 1);
    const page = await rebuilt.query('group', { filter: `members[value eq "${ann}"]`, startIndex: 1, count: 10, sortBy: null, sortDescending: false });
    assert.deepEqual([page.totalResults, page.resources.map((r) => JSON.parse(r.json).displayName)], [1, ['staff']]);
    assert.deepEqual(await groupNames(rebuilt, `members[value eq "${ann}"]`), ['staff']);
  } finally {
    rebuilt.close();
  }
});

test('a Selector works on its own and recovers from a trap on a fresh instance', async () => {
  const small = await Runtime.load({ memoryLimitBytes: 2 * 1024 * 1024 });
  const selector = new Selector(small);
  try {
    const views = Array.from({ length: 10 }, (_, i) => ({ id: String(i), userName: `u${i}`, active: i % 2 === 0 }));
    assert.deepEqual(await selector.select(views, { filter: 'active eq true', startIndex: 2, count: 2 }), { totalResults: 5, indices: [2, 4] });
    await assert.rejects(() => selector.select([`{"x":"${'y'.repeat(4 << 20)}"}`], { filter: 'x pr' }), GuestTrap);
    assert.deepEqual(await selector.select(views, { sortBy: 'userName', count: 0 }), { totalResults: 10, indices: [] });
    assert.equal(selector.instancesOpened(), 2, 'the trapped instance was replaced');
  } finally {
    selector.close();
  }
});
