// A Directory in SQLite through better-sqlite3: the store behind a Node-served SCIM server,
// with the same tables and semantics as the PHP PdoSqliteDirectory.

import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';

import Database from 'better-sqlite3';

import { DirectoryError } from './errors.js';
import { Selector } from './selection.js';

const TABLES = { user: 'scim_users', group: 'scim_groups' };
const now = () => new Date().toISOString().replace(/\.\d{3}Z$/, 'Z');

function table(kind) {
  const t = TABLES[kind];
  if (!t) throw new DirectoryError('other', `unknown resource kind ${kind}`);
  return t;
}

function stored(row) {
  return { id: String(row.id), version: `W/"${row.version}"`, created: row.created, lastModified: row.last_modified, json: row.json };
}

function parse(json) {
  let value;
  try {
    value = JSON.parse(json);
  } catch (e) {
    throw new DirectoryError('other', `the resource is not JSON: ${e.message}`);
  }
  if (value === null || typeof value !== 'object' || Array.isArray(value)) throw new DirectoryError('other', 'the resource is not a JSON object');
  return value;
}

function uniqueKey(kind, value) {
  const v = value[kind === 'user' ? 'userName' : 'displayName'];
  return typeof v === 'string' ? v.toLowerCase() : null;
}

const externalId = (value) => (typeof value.externalId === 'string' ? value.externalId : null);

/** A whole filter that is one equality on a string, as the component writes it (canonical). */
const EQUALITY = /^\s*([A-Za-z]+)\s+eq\s+("(?:[^"\\]|\\.)*")\s*$/;

/**
 * A group's member: `members[value eq "x"]` (how the component asks for a user's groups) or
 * `members.value eq "x"`. Nothing between `members` and `[` / `.`: the component's filter
 * parser refuses a space there, and the index may answer a lookup alone (as the Python host).
 */
const MEMBER = /^\s*members(?:(\[)\s*value|\.value)\s+eq\s+("(?:[^"\\]|\\.)*")\s*(\]?)\s*$/i;

/**
 * A member value's key in the membership index (`member_key`): lower-cased, the one function
 * every write and every lookup of the index goes through, so they agree.
 * @param {string} value
 */
const memberKey = (value) => value.toLowerCase();

/**
 * The member value a group filter looks up (`members[value eq "x"]` or `members.value eq
 * "x"`), or null for any other filter or kind.
 * @returns {string|null}
 */
function memberLookup(kind, filter) {
  const member = kind === 'group' && filter ? MEMBER.exec(filter) : null;
  if (!member || Boolean(member[1]) !== (member[3] === ']')) return null;
  let value;
  try {
    value = JSON.parse(member[2]);
  } catch {
    return null;
  }
  return typeof value === 'string' ? value : null;
}

/**
 * A SQL condition for a filter that is one equality on an indexed attribute
 * (userName/displayName, id, externalId, a group's member value), or null.
 */
function indexedEquality(kind, filter) {
  const member = memberLookup(kind, filter);
  if (member !== null) return ['id IN (SELECT group_id FROM scim_group_members WHERE member_key = ?)', memberKey(member)];
  const m = filter ? EQUALITY.exec(filter) : null;
  if (!m) return null;
  let value;
  try {
    value = JSON.parse(m[2]);
  } catch {
    return null;
  }
  if (typeof value !== 'string') return null;
  const attr = m[1].toLowerCase();
  if (attr === (kind === 'user' ? 'username' : 'displayname')) return ['unique_key = ?', value.toLowerCase()];
  if (attr === 'id') return ['id = ?', value];
  if (attr === 'externalid') return ['external_id = ?', value];
  return null;
}

/**
 * SQLite tables (created when missing):
 * - `scim_users`, `scim_groups`: id, version, created, last_modified, unique_key (lower-cased
 *   userName / displayName, unique), external_id, json;
 * - the CMS user table (option `cmsTable`, default `users`; null for none): id, name (unique,
 *   case-insensitive), mail, fields (JSON), active. Each SCIM user is kept there as a normal
 *   CMS user from the component's reverse mapping: an identity provider's users appear in
 *   the CMS, `active=false` blocks them, a DELETE removes them;
 * - `scim_group_members`: a row per group and member value (`member_key`, lower-cased, with
 *   `member_value`, the first value of that key as stored), the index a user's `groups` is
 *   found by: every read of a user asks for the groups whose `members[value eq "<id>"]`,
 *   which without it loaded every group. A file whose index lacks `member_value` (written
 *   before it) gets it rebuilt on open.
 *
 * Searches: an unfiltered, unsorted page is a plain LIMIT/OFFSET; an equality on
 * userName/displayName, id, externalId or a group's member value narrows the rows in SQL.
 * An unsorted member lookup whose every candidate holds the exact value asked is paged from
 * the index alone: such a group matches `eq` under any comparison, so none is parsed.
 * Every other filter, every sort and the page are decided by the component's own filter
 * engine (WIT `selection.select`, through a Selector on an instance of its own, made from the
 * runtime), as the PHP directory does through the native bridge; a filter it cannot parse is
 * `invalid-filter`. Every write is one transaction: a SCIM resource is never stored without
 * its CMS user.
 */
export class SqliteDirectory {
  /**
   * @param {import('better-sqlite3').Database} db
   * @param {import('./runtime.js').Runtime} runtime runs the filter engine
   * @param {{cmsTable?: string|null}} [options]
   */
  constructor(db, runtime, { cmsTable = 'users' } = {}) {
    if (cmsTable !== null && !/^[A-Za-z_][A-Za-z0-9_]*$/.test(cmsTable)) throw new TypeError(`cmsTable must be a plain SQL identifier, not ${cmsTable}`);
    /** The component's filter engine, on an instance of its own. */
    this.selector = new Selector(runtime);
    this.db = db;
    this.cmsTable = cmsTable;
    db.pragma('busy_timeout = 10000');
    db.pragma('journal_mode = WAL');
    for (const t of Object.values(TABLES)) {
      db.exec(`CREATE TABLE IF NOT EXISTS ${t} (
        id TEXT PRIMARY KEY, version INTEGER NOT NULL, created TEXT NOT NULL, last_modified TEXT NOT NULL,
        unique_key TEXT UNIQUE, external_id TEXT, json TEXT NOT NULL)`);
      db.exec(`CREATE INDEX IF NOT EXISTS ${t}_external ON ${t}(external_id)`);
    }
    if (cmsTable !== null) {
      db.exec(`CREATE TABLE IF NOT EXISTS ${cmsTable} (
        id TEXT PRIMARY KEY, name TEXT NOT NULL UNIQUE COLLATE NOCASE, mail TEXT NOT NULL, fields TEXT NOT NULL, active INTEGER NOT NULL)`);
    }
    this.#ensureMemberIndex();
  }

  /**
   * Opens (creating if needed) a SQLite file.
   * @param {string} file
   * @param {import('./runtime.js').Runtime} runtime runs the filter engine
   * @param {{cmsTable?: string|null}} [options]
   */
  static open(file, runtime, options = {}) {
    const dir = path.dirname(path.resolve(file));
    if (!fs.existsSync(dir)) throw new TypeError(`the directory for the database ${file} does not exist`);
    return new SqliteDirectory(new Database(file), runtime, options);
  }

  close() {
    this.selector.close();
    this.db.close();
  }

  /** A CMS user kept beside a SCIM user, or null. */
  cmsUser(id) {
    if (this.cmsTable === null) return null;
    const row = this.db.prepare(`SELECT id, name, mail, fields, active FROM ${this.cmsTable} WHERE id = ?`).get(id);
    return row ? { id: row.id, name: row.name, mail: row.mail, fields: JSON.parse(row.fields), active: row.active === 1 } : null;
  }

  get(kind, id) {
    const row = this.db.prepare(`SELECT id, version, created, last_modified, json FROM ${table(kind)} WHERE id = ?`).get(id);
    return row ? stored(row) : null;
  }

  /** @returns {Promise<{totalResults: number, resources: object[]}>} */
  async query(kind, search) {
    const t = table(kind);
    const cols = `SELECT id, version, created, last_modified, json FROM ${t}`;
    if (!search.filter && !search.sortBy) {
      const total = this.db.prepare(`SELECT COUNT(*) AS n FROM ${t}`).get().n;
      if (search.count === 0) return { totalResults: total, resources: [] };
      const rows = this.db.prepare(`${cols} ORDER BY rowid LIMIT ? OFFSET ?`).all(search.count, Math.max(1, search.startIndex) - 1);
      return { totalResults: total, resources: rows.map(stored) };
    }
    // How the component reads a user's groups, on every read of a user: answered from the
    // index when it can be (see #exactMemberPage). A sort always goes through select.
    const member = search.sortBy ? null : memberLookup(kind, search.filter);
    if (member !== null) {
      const page = this.#exactMemberPage(member, search);
      if (page !== null) return page;
    }
    const eq = indexedEquality(kind, search.filter);
    const rows = eq ? this.db.prepare(`${cols} WHERE ${eq[0]} ORDER BY rowid`).all(eq[1]) : this.db.prepare(`${cols} ORDER BY rowid`).all();
    // An equality the index rules out: nothing to select from.
    if (eq && rows.length === 0) return { totalResults: 0, resources: [] };
    const resources = rows.map(stored);
    const views = resources.map((r) => {
      const json = parse(r.json);
      json.id = r.id;
      json.meta = { resourceType: kind === 'user' ? 'User' : 'Group', created: r.created, lastModified: r.lastModified, version: r.version };
      return JSON.stringify(json);
    });
    const page = await this.selector.select(views, search);
    return { totalResults: page.totalResults, resources: page.indices.map((i) => resources[i]) };
  }

  /**
   * The groups with a member whose value is `value`, paged as `search` asks (store order, as
   * select keeps it unsorted), when the index holds that exact value for every candidate:
   * then each one matches `eq` whether the comparison is case-exact or not, and no group is
   * parsed nor the filter engine called. Null when a candidate holds only a case variant,
   * for the filter engine to decide.
   * @param {string} value
   * @param {{startIndex?: number, count?: number}} search
   * @returns {{totalResults: number, resources: object[]}|null}
   */
  #exactMemberPage(value, search) {
    // CROSS JOIN keeps the index as the outer loop whatever the planner's statistics: in the
    // Rust host's schema a plain JOIN walked every resource in rowid order to save the sort,
    // 4 times slower with 1,000 groups. (Here SQLite picks the index with either today.)
    const rows = this.db.prepare(`SELECT g.id, g.version, g.created, g.last_modified, g.json, m.member_value IS @value AS exact
      FROM scim_group_members m CROSS JOIN scim_groups g ON g.id = m.group_id
      WHERE m.member_key = @key ORDER BY g.rowid`).all({ value, key: memberKey(value) });
    if (!rows.every((r) => r.exact)) return null;
    // The page as select cuts it: skip startIndex - 1, then at most count (0: the total only).
    const skip = Math.max(1, search.startIndex ?? 1) - 1;
    const take = search.count ?? rows.length;
    return { totalResults: rows.length, resources: rows.slice(skip, skip + take).map(stored) };
  }

  create(kind, json, cms) {
    const value = parse(json);
    return this.#transaction(() => {
      const key = uniqueKey(kind, value);
      this.#conflictCheck(kind, key, null);
      const id = crypto.randomUUID();
      const ts = now();
      this.db.prepare(`INSERT INTO ${table(kind)} (id, version, created, last_modified, unique_key, external_id, json) VALUES (?, 1, ?, ?, ?, ?, ?)`)
        .run(id, ts, ts, key, externalId(value), json);
      if (kind === 'group') this.#indexMembers(id, value);
      this.#mirror(id, value, cms);
      return { id, version: 'W/"1"', created: ts, lastModified: ts, json };
    });
  }

  replace(kind, id, json, cms, ifVersion) {
    const value = parse(json);
    return this.#transaction(() => this.#doReplace(kind, id, json, value, cms, ifVersion));
  }

  delete(kind, id) {
    return this.#transaction(() => {
      const info = this.db.prepare(`DELETE FROM ${table(kind)} WHERE id = ?`).run(id);
      if (info.changes === 0) return false;
      if (kind === 'group') this.db.prepare('DELETE FROM scim_group_members WHERE group_id = ?').run(id);
      if (kind === 'user') {
        if (this.cmsTable !== null) this.db.prepare(`DELETE FROM ${this.cmsTable} WHERE id = ?`).run(id);
        // Drop the user from the groups it belonged to (rewriting each rewrites its index rows too).
        const groups = this.db.prepare('SELECT id, json FROM scim_groups WHERE id IN (SELECT group_id FROM scim_group_members WHERE member_key = ?)')
          .all(memberKey(id));
        for (const g of groups) {
          const group = JSON.parse(g.json);
          if (!Array.isArray(group?.members)) continue;
          const members = group.members.filter((m) => !(m && typeof m === 'object' && m.value === id));
          if (members.length === group.members.length) continue;
          group.members = members;
          this.#doReplace('group', g.id, JSON.stringify(group), group, null, null);
        }
      }
      return true;
    });
  }

  #doReplace(kind, id, json, value, cms, ifVersion) {
    const current = this.get(kind, id);
    if (current === null) throw new DirectoryError('not-found');
    if (ifVersion !== null && ifVersion !== undefined && ifVersion !== current.version) throw new DirectoryError('version-mismatch');
    const key = uniqueKey(kind, value);
    this.#conflictCheck(kind, key, id);
    this.db.prepare(`UPDATE ${table(kind)} SET version = version + 1, last_modified = ?, unique_key = ?, external_id = ?, json = ? WHERE id = ?`)
      .run(now(), key, externalId(value), json, id);
    if (kind === 'group') this.#indexMembers(id, value);
    this.#mirror(id, value, cms);
    return this.get(kind, id);
  }

  #mirror(id, scim, cms) {
    if (!cms || this.cmsTable === null) return;
    let name = null;
    let mail = '';
    const fields = {};
    for (const [k, v] of Object.entries(cms.fields)) {
      if (k === 'name' && typeof v === 'string') name = v;
      else if (k === 'mail' && typeof v === 'string') mail = v;
      else if (v !== null) fields[k] = v;
    }
    // Without a name rule in the mapping, the SCIM userName is the login name.
    name ??= typeof scim.userName === 'string' ? scim.userName : null;
    if (name === null) return;
    const other = this.db.prepare(`SELECT id FROM ${this.cmsTable} WHERE name = ? COLLATE NOCASE AND id <> ?`).get(name, id);
    if (other) throw new DirectoryError('conflict', `a CMS user named "${name}" already exists`);
    this.db.prepare(`INSERT INTO ${this.cmsTable} (id, name, mail, fields, active) VALUES (?, ?, ?, ?, ?)
      ON CONFLICT(id) DO UPDATE SET name = excluded.name, mail = excluded.mail, fields = excluded.fields, active = excluded.active`)
      .run(id, name, mail, JSON.stringify(fields), cms.active ? 1 : 0);
  }

  /**
   * Writes a group's rows of the membership index, replacing its old ones. Lower-cased, so the
   * index finds a superset of what a case-insensitive `eq` matches, and the component's filter
   * engine decides; beside the key, the value as stored (the first of two case variants: INSERT
   * OR IGNORE), so a lookup of that exact value needs no deciding (#exactMemberPage).
   */
  #indexMembers(groupId, group) {
    this.db.prepare('DELETE FROM scim_group_members WHERE group_id = ?').run(groupId);
    const insert = this.db.prepare('INSERT OR IGNORE INTO scim_group_members (group_id, member_key, member_value) VALUES (?, ?, ?)');
    for (const member of Array.isArray(group.members) ? group.members : []) {
      if (member && typeof member === 'object' && typeof member.value === 'string') insert.run(groupId, memberKey(member.value), member.value);
    }
  }

  /**
   * Creates the membership index when the file has none, or has one without `member_value` (a
   * database written before either), and fills it from the groups already stored, in one
   * immediate transaction: workers opening the file at once build it once.
   */
  #ensureMemberIndex() {
    const current = () => this.db.prepare("SELECT 1 FROM pragma_table_info('scim_group_members') WHERE name = 'member_value'").get();
    // A plain read first: only a file without the current index needs the write lock.
    if (current()) return;
    this.db.transaction(() => {
      if (current()) return;
      this.db.exec('DROP TABLE IF EXISTS scim_group_members');
      this.db.exec(`CREATE TABLE scim_group_members (
        group_id TEXT NOT NULL, member_key TEXT NOT NULL, member_value TEXT, PRIMARY KEY (group_id, member_key)) WITHOUT ROWID`);
      this.db.exec('CREATE INDEX scim_group_members_key ON scim_group_members(member_key)');
      for (const g of this.db.prepare('SELECT id, json FROM scim_groups').all()) {
        let group;
        try {
          group = JSON.parse(g.json);
        } catch {
          // A group that is not JSON has no members to index.
          continue;
        }
        if (group !== null && typeof group === 'object' && !Array.isArray(group)) this.#indexMembers(String(g.id), group);
      }
    }).immediate();
  }

  #conflictCheck(kind, key, exceptId) {
    if (key === null) return;
    const other = this.db.prepare(`SELECT id FROM ${table(kind)} WHERE unique_key = ?`).get(key);
    if (other && other.id !== exceptId) throw new DirectoryError('conflict', `${kind === 'user' ? 'userName' : 'displayName'} "${key}" is already taken`);
  }

  #transaction(work) {
    if (this.db.inTransaction) return work();
    try {
      return this.db.transaction(work)();
    } catch (e) {
      // A uniqueness constraint another process won between our check and our write.
      if (String(e?.code ?? '').startsWith('SQLITE_CONSTRAINT')) throw new DirectoryError('conflict', `a unique value is already taken (${e.message})`);
      if (e?.code === 'SQLITE_BUSY' || e?.code === 'SQLITE_LOCKED') throw new DirectoryError('unavailable', `the database is busy: ${e.message}`);
      throw e;
    }
  }
}
