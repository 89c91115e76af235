// The client role against a real scim2-server: every result read back over plain HTTP.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';

import { Connector, MemoryLogger, ProvisioningError, Runtime } from '../src/index.js';
import { scimRequest, startScim2Server } from './helpers.js';

let runtime;
let peer;
let logger;
let connector;

const POLICY = { operations: { create: true, update: true, deactivate: true, delete: true }, deprovision: 'delete' };
const alice = {
  id: 'n-1',
  fields: { name: 'alice', mail: 'alice@example.com', field_first_name: 'Ælfgifu', field_last_name: 'Liddell-Ünal', roles: ['editor'] },
  active: true,
};

before(async () => {
  runtime = await Runtime.load();
  peer = await startScim2Server();
  logger = new MemoryLogger();
  connector = await Connector.open(runtime, { base_url: peer.baseUrl, token: peer.token, timeout: 10000, policy: POLICY }, { logger });
});

after(async () => {
  connector?.close();
  await peer?.stop();
});

const remote = async (id) => scimRequest('GET', `${peer.baseUrl}/Users/${encodeURIComponent(id)}`, peer.token);

test('testConnection reports what scim2-server supports', async () => {
  const caps = await connector.testConnection();
  assert.equal(caps.discovered, true);
  assert.equal(caps.patch, true);
  assert.equal(caps.etag, true);
  assert.ok(caps.bulk && caps.bulk.maxOperations > 0 && caps.bulk.maxPayloadSize > 0, JSON.stringify(caps));
  assert.equal(typeof caps.filterMaxResults, 'number');
});

test('plan and mapUser decide without a request', async () => {
  assert.deepEqual(await connector.plan(alice, 'created', false), { action: 'create', reason: null });
  assert.equal((await connector.plan(alice, 'blocked', true)).action, 'deactivate');
  assert.equal((await connector.plan(alice, 'deleted', true)).action, 'delete');
  const mapped = await connector.mapUser(alice);
  assert.equal(mapped.userName, 'alice');
  assert.equal(mapped.name.givenName, 'Ælfgifu');
  assert.equal(mapped.externalId, 'n-1');
});

test('create, update by PATCH from the snapshot, no change, deactivate, reactivate, delete', async () => {
  const created = await connector.provision(alice, 'created', null);
  assert.equal(created.action, 'created');
  assert.ok(created.link?.remoteId && created.link.snapshot, JSON.stringify(created));
  let r = await remote(created.link.remoteId);
  assert.equal(r.status, 200);
  assert.equal(r.body.userName, 'alice');
  assert.equal(r.body.name.familyName, 'Liddell-Ünal');
  assert.equal(r.body.emails[0].value, 'alice@example.com');
  assert.equal(r.body.active, true);

  const changed = { ...alice, fields: { ...alice.fields, field_last_name: 'Lidell', mail: 'alice@wonder.example' } };
  const updated = await connector.provision(changed, 'updated', created.link);
  assert.equal(updated.action, 'updated');
  assert.equal(updated.requests, 1, 'one PATCH, no read first (the snapshot says what changed)');
  r = await remote(created.link.remoteId);
  assert.equal(r.body.name.familyName, 'Lidell');
  assert.equal(r.body.emails[0].value, 'alice@wonder.example');
  assert.equal(r.body.name.givenName, 'Ælfgifu', 'untouched values stay');

  const same = await connector.provision(changed, 'updated', updated.link);
  assert.equal(same.action, 'unchanged');
  assert.equal(same.requests, 0);

  const blocked = await connector.provision({ ...changed, active: false }, 'blocked', same.link);
  assert.equal(blocked.action, 'deactivated');
  r = await remote(created.link.remoteId);
  assert.equal(r.body.active, false);

  const unblocked = await connector.provision(changed, 'unblocked', blocked.link);
  assert.equal(unblocked.action, 'updated');
  r = await remote(created.link.remoteId);
  assert.equal(r.body.active, true);

  const deleted = await connector.provision(changed, 'deleted', unblocked.link);
  assert.equal(deleted.action, 'deleted');
  assert.equal(deleted.link, null);
  r = await remote(created.link.remoteId);
  assert.equal(r.status, 404);
  assert.equal(await connector.getUser(created.link.remoteId), null, 'getUser is null on 404');
});

test('a user the server already has is adopted, not duplicated', async () => {
  const made = await scimRequest('POST', `${peer.baseUrl}/Users`, peer.token, {
    schemas: ['urn:ietf:params:scim:schemas:core:2.0:User'], userName: 'bob', emails: [{ type: 'work', value: 'bob@example.com', primary: true }], active: true,
  });
  assert.equal(made.status, 201);
  const bob = { id: 'n-2', fields: { name: 'bob', mail: 'bob@example.com', field_first_name: 'Bob', field_last_name: 'Builder' } };
  const out = await connector.provision(bob, 'created', null);
  assert.equal(out.action, 'adopted');
  assert.equal(out.link.remoteId, made.body.id);
  const list = await scimRequest('GET', `${peer.baseUrl}/Users?filter=${encodeURIComponent('userName eq "bob"')}`, peer.token);
  assert.equal(list.body.totalResults, 1);
  const read = await connector.getUser(made.body.id);
  assert.equal(read.userName, 'bob');
  assert.equal(read.name.familyName, 'Builder', 'adoption brought the remote user in line');
});

test('a batch provisions every user through /Bulk, each with its own result', async () => {
  const users = ['carol', 'dave', 'erin'].map((name, i) => ({ id: `b-${i}`, fields: { name, mail: `${name}@example.com`, field_first_name: name, field_last_name: 'Batch' } }));
  const out = await connector.provisionBatch(users.map((user) => ({ user, event: 'created', link: null })));
  assert.equal(out.results.length, 3);
  for (const r of out.results) {
    assert.ok(!(r instanceof ProvisioningError), String(r?.message));
    assert.equal(r.action, 'created');
  }
  assert.ok(out.bulkRequests >= 1, JSON.stringify(out));
  for (const [i, r] of out.results.entries()) {
    const read = await remote(r.link.remoteId);
    assert.equal(read.body.userName, users[i].fields.name);
  }
});

test('the remote index is listed once and handed to another connector', async () => {
  const listing = await connector.indexRemoteUsers();
  assert.ok(listing.users >= 4, JSON.stringify(listing));
  assert.ok(listing.requests >= 1);
  const doc = await connector.exportRemoteIndex();
  assert.equal(typeof doc, 'string');
  const other = await Connector.open(runtime, { base_url: peer.baseUrl, token: peer.token, policy: POLICY }, { logger: new MemoryLogger() });
  try {
    assert.equal(await other.exportRemoteIndex(), null, 'nothing listed yet');
    assert.deepEqual(await other.remoteUserIds(), []);
    assert.equal(await other.importRemoteIndex(doc), listing.users);
    const ids = await connector.remoteUserIds();
    assert.equal(ids.length, listing.users);
    assert.ok(ids.every((id) => typeof id === 'string'));
    assert.deepEqual(await other.remoteUserIds(), ids);
    await assert.rejects(() => other.importRemoteIndex('{"not": "an index"}'), ProvisioningError);
  } finally {
    other.close();
  }
});

test('errors carry the case, status and retry class', async () => {
  const wrong = await Connector.open(runtime, { base_url: peer.baseUrl, token: 'not-the-token-at-all' }, { logger: new MemoryLogger() });
  try {
    await assert.rejects(() => wrong.testConnection(), (e) => e instanceof ProvisioningError && ['scim', 'unexpected-response'].includes(e.case) && e.status === 401 && /401/.test(e.message) && !e.isRetryable());
  } finally {
    wrong.close();
  }
  await assert.rejects(() => connector.provision({ id: 'x', fields: { mail: 'nobody@example.com' } }, 'created', null),
    (e) => e instanceof ProvisioningError && e.case === 'missing-attribute' && e.userId === 'x' && e.attribute === 'userName');
  await assert.rejects(() => Connector.open(runtime, { base_url: peer.baseUrl, policy: { deprovision: 'explode' } }), (e) => e.case === 'invalid-config' && /explode/.test(e.message));
  await assert.rejects(() => Connector.open(runtime, { base_url: peer.baseUrl, tokn: 'x' }), (e) => e.case === 'invalid-config' && /unknown setting 'tokn'/.test(e.message));
  await assert.rejects(() => Connector.open(runtime, { base_url: 'ftp://example.com/scim' }), (e) => e.case === 'invalid-config');
  await assert.rejects(() => Connector.open(runtime, { base_url: peer.baseUrl, token_env: 'SURELY_NOT_SET_ANYWHERE' }), /SURELY_NOT_SET_ANYWHERE/);
});

test('bad input is refused with a clear error before it reaches the component', async () => {
  await assert.rejects(() => connector.provision({ id: 7, fields: {} }, 'created'), /user.id must be a string/);
  await assert.rejects(() => connector.provision({ id: 'x', fields: { born: new Date() } }, 'created'), /field born: .*ISO 8601/);
  await assert.rejects(() => connector.provision({ id: 'x', fields: { n: Infinity } }, 'created'), /finite/);
  await assert.rejects(() => connector.provision(alice, 'exploded'), /unknown user event "exploded"/);
  await assert.rejects(() => connector.provision(alice, 'updated', { remoteId: 5 }), /remoteId/);
  assert.equal(connector.instancesOpened(), 1, 'refused input costs no instance');
  await assert.rejects(() => Connector.open(runtime, { base_url: peer.baseUrl }, { transprt: {} }), /unknown Connector.open option 'transprt'/);
  await assert.rejects(() => Connector.open(runtime, { base_url: peer.baseUrl }, { transport: {} }), /a send\(request\) method/);
  await assert.rejects(() => Connector.open({}, { base_url: peer.baseUrl }), /Runtime/);
});

test('the token never reaches the log', async () => {
  assert.ok(logger.lines.length > 0);
  for (const { message } of logger.lines) assert.ok(!message.includes(peer.token), message);
});
