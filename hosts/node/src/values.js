// Conversions between the library's plain objects and the WIT values as jco shapes them
// (records camelCase, variants {tag, val}, option as undefined, u64 as BigInt).

export const USER_EVENTS = ['created', 'updated', 'blocked', 'unblocked', 'deleted', 'reconcile'];

/**
 * A CMS user. `fields` maps names (`name`, `mail`, `field_first_name`, `roles`) to a string
 * (dates as ISO 8601), a finite number, a boolean, a list of strings, or null.
 * @typedef {{id: string, fields: Record<string, FieldValue>|Map<string, FieldValue>|Array<[string, FieldValue]>, active?: boolean}} CmsUser
 * @typedef {string|number|boolean|string[]|null} FieldValue
 * @typedef {{remoteId: string, version?: string|null, snapshot?: string|null}} Link
 * @typedef {'created'|'updated'|'blocked'|'unblocked'|'deleted'|'reconcile'} UserEvent
 * @typedef {{user: CmsUser, event: UserEvent, link?: Link|null}} BatchItem
 * @typedef {{action: string, reason: string|null, link: Link|null, location: string|null, requests: number}} ProvisionOutcome
 * @typedef {{action: string, reason: string|null}} Plan
 * @typedef {{maxOperations: number, maxPayloadSize: number}} BulkLimits
 * @typedef {{discovered: boolean, patch: boolean, bulk: BulkLimits|null, filterMaxResults: number|null,
 *   etag: boolean, sort: boolean, changePassword: boolean}} ServerCapabilities
 * @typedef {{users: number, requests: number}} RemoteListing
 */

function fieldToWit(name, value) {
  if (value === null || value === undefined) return { tag: 'null' };
  if (typeof value === 'string') return { tag: 'text', val: value };
  if (typeof value === 'boolean') return { tag: 'boolean', val: value };
  if (typeof value === 'number' || typeof value === 'bigint') {
    const n = Number(value);
    if (!Number.isFinite(n)) throw new TypeError(`field ${name}: a number must be finite`);
    return { tag: 'number', val: n };
  }
  if (Array.isArray(value)) {
    return {
      tag: 'text-list',
      val: value.map((v) => {
        if (typeof v === 'string') return v;
        if (typeof v === 'number' || typeof v === 'boolean') return String(v);
        throw new TypeError(`field ${name}: a list may hold only strings`);
      }),
    };
  }
  const kind = value instanceof Date ? 'Date (pass an ISO 8601 string)' : typeof value === 'object' ? value.constructor?.name ?? 'object' : typeof value;
  throw new TypeError(`field ${name}: a CMS field is a string, number, boolean, list of strings or null, not ${kind}`);
}

function fieldEntries(fields) {
  if (fields instanceof Map) return [...fields.entries()];
  if (Array.isArray(fields)) {
    return fields.map((pair, i) => {
      if (!Array.isArray(pair) || pair.length !== 2) throw new TypeError(`fields[${i}] is not a [name, value] pair`);
      return pair;
    });
  }
  if (fields !== null && typeof fields === 'object') return Object.entries(fields);
  throw new TypeError('user.fields is an object, a Map or a list of [name, value] pairs');
}

function checkUser(user) {
  if (user === null || typeof user !== 'object') throw new TypeError('a CMS user is an object {id, fields, active}');
  if (typeof user.id !== 'string') throw new TypeError(`user.id must be a string, not ${typeof user.id}`);
  if (user.active !== undefined && typeof user.active !== 'boolean') throw new TypeError('user.active must be a boolean');
}

/** @param {CmsUser} user */
export function userToWit(user) {
  checkUser(user);
  return {
    id: user.id,
    fields: fieldEntries(user.fields ?? {}).map(([name, value]) => [String(name), fieldToWit(String(name), value)]),
    active: user.active ?? true,
  };
}

/**
 * What `plan` reads of a user besides `active`, from the connector's `scope-fields`:
 * `read.fields`, the names it lists (the CMS fields the scope reads, `@id` when it reads the
 * id), and `read.id`, whether `@id` is among them.
 * @typedef {{fields: Set<string>, id: boolean}} ScopeRead
 */

/**
 * The user cut to what the scope reads: only the fields `read` names (in the user's order, the
 * others dropped) and an empty id unless the scope reads it; `active` unchanged. The component
 * plans the same for it as for the whole user, and the dropped fields are never converted nor
 * copied into the guest. Still refuses a user that is not {id: string, fields, active}.
 * @param {CmsUser} user
 * @param {ScopeRead} read
 * @returns {CmsUser}
 */
export function userReadBy(user, read) {
  checkUser(user);
  return {
    id: read.id ? user.id : '',
    fields: fieldEntries(user.fields ?? {}).filter(([name]) => read.fields.has(String(name))),
    active: user.active,
  };
}

/** A WIT cms-user as a plain CmsUser (fields as an object, in order). */
export function userFromWit(wit) {
  const fields = {};
  for (const [name, value] of wit.fields ?? []) {
    fields[name] = value.tag === 'null' ? null : value.tag === 'text-list' ? [...value.val] : value.val;
  }
  return { id: wit.id, fields, active: wit.active };
}

export function eventToWit(event) {
  if (!USER_EVENTS.includes(event)) throw new TypeError(`unknown user event ${JSON.stringify(event)}; use one of ${USER_EVENTS.join(', ')}`);
  return event;
}

/** @param {Link|null|undefined} link */
export function linkToWit(link) {
  if (link === null || link === undefined) return undefined;
  if (typeof link !== 'object' || typeof link.remoteId !== 'string') throw new TypeError('a link is an object {remoteId, version, snapshot} with a string remoteId');
  for (const k of ['version', 'snapshot']) {
    if (link[k] !== null && link[k] !== undefined && typeof link[k] !== 'string') throw new TypeError(`link.${k} must be a string or null`);
  }
  return { remoteId: link.remoteId, version: link.version ?? undefined, snapshot: link.snapshot ?? undefined };
}

/** @returns {Link|null} */
export function linkFromWit(wit) {
  if (wit === null || wit === undefined) return null;
  return { remoteId: wit.remoteId, version: wit.version ?? null, snapshot: wit.snapshot ?? null };
}

/** @returns {ProvisionOutcome} */
export function outcomeFromWit(wit) {
  return { action: wit.action, reason: wit.reason ?? null, link: linkFromWit(wit.link), location: wit.location ?? null, requests: wit.requests };
}

/** @returns {ServerCapabilities} */
export function capabilitiesFromWit(wit) {
  return {
    discovered: wit.discovered,
    patch: wit.patch,
    bulk: wit.bulk ? { maxOperations: wit.bulk.maxOperations, maxPayloadSize: Number(wit.bulk.maxPayloadSize) } : null,
    filterMaxResults: wit.filterMaxResults ?? null,
    etag: wit.etag,
    sort: wit.sort,
    changePassword: wit.changePassword,
  };
}

/** Bytes from a body given as a string (UTF-8), Buffer, Uint8Array or ArrayBuffer. */
export function toBytes(body, what = 'body') {
  if (body === null || body === undefined) return new Uint8Array(0);
  if (typeof body === 'string') return new TextEncoder().encode(body);
  if (body instanceof Uint8Array) return body;
  if (body instanceof ArrayBuffer) return new Uint8Array(body);
  throw new TypeError(`the ${what} is a string, Buffer, Uint8Array or ArrayBuffer`);
}

/** Headers given as [[name, value], …], a flat rawHeaders list or an object, as [[name, value], …]. */
export function headerPairs(headers) {
  if (headers === null || headers === undefined) return [];
  if (Array.isArray(headers)) {
    if (headers.length > 0 && typeof headers[0] === 'string') {
      const out = [];
      for (let i = 0; i + 1 < headers.length; i += 2) out.push([headers[i], headers[i + 1]]);
      return out;
    }
    return headers.map((h, i) => {
      if (!Array.isArray(h) || h.length !== 2) throw new TypeError(`headers[${i}] is not a [name, value] pair`);
      return [String(h[0]), String(h[1])];
    });
  }
  if (typeof headers === 'object') {
    const out = [];
    for (const [k, v] of Object.entries(headers)) {
      if (Array.isArray(v)) for (const x of v) out.push([k, String(x)]);
      else if (v !== undefined) out.push([k, String(v)]);
    }
    return out;
  }
  throw new TypeError('headers are [[name, value], …] or an object');
}

/** The first value of a header, compared case-insensitively. */
export function headerValue(pairs, name) {
  const n = name.toLowerCase();
  for (const [k, v] of pairs) if (k.toLowerCase() === n) return v;
  return null;
}
