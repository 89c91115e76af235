// plan() passes the component only what the provisioning scope reads (the connector's
// `scope-fields`, asked once per instance): the plans are those of the whole users, and the
// fields the scope does not read never cross. Nothing is sent: plan and scopeFields make no
// request, so the connectors point at a port nothing listens on.
import assert from 'node:assert/strict';
import { before, test } from 'node:test';

import { Connector, GuestTrap, MemoryLogger, Runtime } from '../src/index.js';
import { userToWit } from '../src/values.js';

const MiB = 1024 * 1024;
const OPERATIONS = { create: true, update: true, deactivate: true, delete: false };
const ROLES = { operations: OPERATIONS, scope: { field: 'roles', any_of: ['member', 'editor'] } };
const ID_OR_LEVEL = { operations: OPERATIONS, scope: { any: [{ field: '@id', equals: '42' }, { field: 'level', equals: 3 }] } };
const SITUATIONS = [['created', false], ['updated', true], ['blocked', true], ['unblocked', true], ['deleted', true], ['reconcile', false]];

let runtime;
before(async () => {
  runtime = await Runtime.load();
});

const open = (rt, policy) => Connector.open(rt, { base_url: 'http://127.0.0.1:9/v2', token: 'scope-test-token', policy }, { logger: new MemoryLogger() });

/**
 * Records every export the connector calls, with the WIT arguments that cross, as each call
 * ends: a call that opens a fresh instance first ends after what the opening called.
 */
function spy(connector) {
  const calls = [];
  for (const method of ['invoke', 'callWhileOpening']) {
    const original = connector[method].bind(connector);
    connector[method] = async (name, args) => {
      try {
        return await original(name, args);
      } finally {
        calls.push({ name, args });
      }
    };
  }
  return calls;
}

/** The plan with every field passed across, as before `scope-fields`: what the cut must equal. */
const planWithEveryField = async (c, user, event, linked) => {
  const p = await c.invoke('[method]connector.plan', [userToWit(user), event, linked]);
  return { action: p.action, reason: p.reason ?? null };
};

/** A user carrying many fields the scope does not read, `roles` among them. */
const drupalUser = (id, roles, active = true) => ({
  id,
  fields: {
    name: `user${id}`, mail: `user${id}@example.org`, field_first_name: 'Ann', roles, field_last_name: 'Lee',
    level: 3, vip: true, nick: null, tags: ['a', 'b'], bio: 'x'.repeat(10_000),
  },
  active,
});
const onlyRoles = (u) => ({ id: u.id, fields: u.fields.roles === undefined ? {} : { roles: u.fields.roles }, active: u.active });

test('a scope on roles: scopeFields() names roles, and plan passes only roles and no id', async () => {
  const c = await open(runtime, ROLES);
  try {
    assert.deepEqual(await c.scopeFields(), ['roles']);
    const users = [
      drupalUser('1', ['member']),
      drupalUser('2', ['viewer', 'editor']),
      drupalUser('3', ['viewer']),
      drupalUser('4', []),
      drupalUser('5', ['member'], false),
      { id: '6', fields: { name: 'no-roles', mail: 'six@example.org' }, active: true },
    ];
    const calls = spy(c);
    for (const u of users) {
      for (const [event, linked] of SITUATIONS) {
        const cut = await c.plan(u, event, linked);
        const sent = calls.at(-1);
        assert.equal(sent.name, '[method]connector.plan');
        assert.equal(sent.args[0].id, '', 'the scope does not read the id');
        assert.deepEqual(sent.args[0].fields, u.fields.roles === undefined ? [] : [['roles', { tag: 'text-list', val: u.fields.roles }]]);
        assert.equal(sent.args[0].active, u.active);
        assert.deepEqual(await c.plan(onlyRoles(u), event, linked), cut, `user ${u.id} ${event}`);
        assert.deepEqual(await planWithEveryField(c, u, event, linked), cut, `user ${u.id} ${event}`);
      }
    }
    assert.ok(calls.every((call) => call.name === '[method]connector.plan'), 'scope-fields was asked once, at open');
    // The decisions themselves: in scope by a listed role, out of scope otherwise.
    assert.deepEqual(await c.plan(users[0], 'created', false), { action: 'create', reason: null });
    assert.deepEqual(await c.plan(users[1], 'updated', true), { action: 'update', reason: null });
    for (const u of [users[2], users[3], users[5]]) {
      const p = await c.plan(u, 'created', false);
      assert.equal(p.action, 'skip', `user ${u.id}`);
      assert.equal(typeof p.reason, 'string');
      assert.equal((await c.plan(u, 'updated', true)).action, 'deactivate', `user ${u.id} left the scope`);
    }
    assert.equal((await c.plan(users[4], 'blocked', true)).action, 'deactivate');
  } finally {
    c.close();
  }
});

test('the cut keeps the user\'s order, a Map or [name, value] pairs, and refuses bad input as before', async () => {
  const c = await open(runtime, { operations: OPERATIONS, scope: { all: [{ field: 'level', equals: 3 }, { field: 'roles', none_of: ['banned'] }] } });
  try {
    assert.deepEqual(await c.scopeFields(), ['level', 'roles']);
    const calls = spy(c);
    const pairs = [['roles', ['member']], ['name', 'p'], ['level', 3], ['mail', 'p@example.org'], ['roles', ['banned']]];
    const p = await c.plan({ id: '7', fields: pairs }, 'created', false);
    assert.deepEqual(calls.at(-1).args[0].fields, [
      ['roles', { tag: 'text-list', val: ['member'] }], ['level', { tag: 'number', val: 3 }], ['roles', { tag: 'text-list', val: ['banned'] }],
    ]);
    assert.deepEqual(p, await planWithEveryField(c, { id: '7', fields: pairs }, 'created', false));
    const map = new Map([['name', 'm'], ['level', 3], ['mail', 'm@example.org'], ['roles', ['member']]]);
    assert.deepEqual(await c.plan({ id: '8', fields: map }, 'created', false), { action: 'create', reason: null });
    assert.deepEqual(calls.at(-1).args[0].fields.map(([name]) => name), ['level', 'roles']);
    map.set('level', 2);
    assert.equal((await c.plan({ id: '8', fields: map }, 'created', false)).action, 'skip');
    await assert.rejects(() => c.plan({ id: 9, fields: {} }, 'created', false), /user.id must be a string/);
    await assert.rejects(() => c.plan({ id: '9', fields: {}, active: 'yes' }, 'created', false), /user.active must be a boolean/);
    await assert.rejects(() => c.plan({ id: '9', fields: 5 }, 'created', false), /user.fields is an object/);
    await assert.rejects(() => c.plan({ id: '9', fields: { level: new Date() } }, 'created', false), /field level/);
    assert.equal(c.instancesOpened(), 1, 'refused input costs no instance');
  } finally {
    c.close();
  }
});

test('a scope that reads the id: @id is listed, the id crosses and decides', async () => {
  const c = await open(runtime, ID_OR_LEVEL);
  try {
    assert.deepEqual(await c.scopeFields(), ['@id', 'level']);
    const calls = spy(c);
    const user = (id, level) => ({ id, fields: { name: `u${id}`, mail: `u${id}@example.org`, roles: ['member'], level }, active: true });
    assert.deepEqual(await c.plan(user('42', 1), 'created', false), { action: 'create', reason: null });
    assert.deepEqual(calls.at(-1).args[0], { id: '42', fields: [['level', { tag: 'number', val: 1 }]], active: true });
    assert.equal((await c.plan(user('43', 1), 'created', false)).action, 'skip');
    assert.equal((await c.plan(user('43', 1), 'updated', true)).action, 'deactivate');
    assert.equal((await c.plan(user('43', 3), 'created', false)).action, 'create');
    for (const u of [user('42', 1), user('43', 1), user('43', 3), user('44', '3')]) {
      for (const [event, linked] of SITUATIONS) {
        assert.deepEqual(await c.plan(u, event, linked), await planWithEveryField(c, u, event, linked), `user ${u.id} ${event}`);
      }
    }
  } finally {
    c.close();
  }
});

test('without a scope nothing but active crosses', async () => {
  const c = await open(runtime, {});
  try {
    assert.deepEqual(await c.scopeFields(), []);
    const calls = spy(c);
    const u = drupalUser('10', ['viewer']);
    assert.deepEqual(await c.plan(u, 'created', false), { action: 'create', reason: null });
    assert.deepEqual(calls.at(-1).args[0], { id: '', fields: [], active: true });
    assert.deepEqual(await c.plan({ ...u, active: false }, 'blocked', true), { action: 'deactivate', reason: null });
    assert.deepEqual(calls.at(-1).args[0], { id: '', fields: [], active: false });
  } finally {
    c.close();
  }
});

test('a fresh instance after a trap asks scope-fields again, and plans the same', async () => {
  const small = await Runtime.load({ memoryLimitBytes: 16 * MiB });
  const c = await open(small, ROLES);
  try {
    const calls = spy(c);
    const u = drupalUser('11', ['member']);
    assert.deepEqual(await c.plan(u, 'created', false), { action: 'create', reason: null });
    await assert.rejects(() => c.mapUser({ id: '12', fields: { name: 'big', bio: 'x'.repeat(24 * MiB) } }), (e) => e instanceof GuestTrap && e.kind === 'memory');
    assert.equal(c.instancesOpened(), 1, 'the fresh instance opens on the next call');
    assert.deepEqual(await c.plan(u, 'created', false), { action: 'create', reason: null });
    assert.equal(c.instancesOpened(), 2);
    assert.deepEqual(calls.map((call) => call.name), [
      '[method]connector.plan', '[method]connector.map-user', '[method]connector.scope-fields', '[method]connector.plan',
    ]);
    assert.deepEqual(await c.scopeFields(), ['roles']);
    assert.equal((await c.plan(drupalUser('13', ['viewer']), 'created', false)).action, 'skip');
    assert.equal(calls.filter((call) => call.name === '[method]connector.scope-fields').length, 1, 'once per instance');
  } finally {
    c.close();
  }
});
