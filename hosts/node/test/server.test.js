// The server role: the component served through node:http over the SQLite directory,
// checked by scim2-tester and scim-sanity, and provisioned into by the client role.
import assert from 'node:assert/strict';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, test } from 'node:test';

import { Connector, DirectoryError, GuestTrap, MemoryLimitExceeded, MemoryLogger, Runtime, ScimServer } from '../src/index.js';
import { SqliteDirectory } from '../src/sqlite.js';
import { listen, newToken, run, scimRequest, startScript, tempDir, tool } from './helpers.js';

const HERE = path.dirname(fileURLToPath(import.meta.url));
let runtime;

before(async () => {
  runtime = await Runtime.load();
});

/** A ScimServer over a fresh SQLite file, listening on a free port. */
async function serve(name) {
  const dir = tempDir(name);
  const directory = SqliteDirectory.open(path.join(dir, 'site.db'), runtime);
  const token = newToken();
  const logger = new MemoryLogger();
  const http = await listen();
  const baseUrl = `${http.origin}/scim/v2`;
  const scim = await ScimServer.open(runtime, { base_url: baseUrl, token }, directory, { logger });
  http.server.on('request', scim.listener());
  return {
    baseUrl, token, directory, scim, logger,
    stop: async () => {
      await http.stop();
      directory.close();
    },
  };
}

test('scim2-tester passes every check', async () => {
  const s = await serve('scim2-tester');
  try {
    const { code, output } = await run(tool('scim2'), ['--url', s.baseUrl, 'test'], { env: { SCIM_CLI_HEADERS: `Authorization: Bearer ${s.token}` } });
    const lines = output.split('\n');
    const successes = lines.filter((l) => l.startsWith('SUCCESS')).length;
    const failures = lines.filter((l) => /^(ERROR|FAIL|CRITICAL)/.test(l));
    assert.equal(code, 0, output);
    assert.deepEqual(failures, []);
    assert.ok(successes >= 100, `only ${successes} checks ran:\n${output}`);
    console.log(`scim2-tester: ${successes} checks passed`);
  } finally {
    await s.stop();
  }
});

test('scim-sanity passes', async () => {
  const s = await serve('scim-sanity');
  try {
    const { code, output } = await run(tool('scim-sanity'), ['probe', s.baseUrl, '--token', s.token, '--i-accept-side-effects']);
    assert.equal(code, 0, output);
    assert.ok(!output.includes('[FAIL]'), output);
    assert.ok(output.includes('All tests passed'), output);
    const summary = output.split('\n').filter((l) => /passed|skipped|failed/i.test(l)).slice(-2).join(' | ');
    console.log(`scim-sanity: ${summary}`);
  } finally {
    await s.stop();
  }
});

test('without the token only discovery is served', async () => {
  const s = await serve('auth');
  try {
    const r = await scimRequest('GET', `${s.baseUrl}/Users`, 'wrong');
    assert.equal(r.status, 401);
    assert.equal(r.body.status, '401');
    assert.ok(r.headers.get('www-authenticate'));
    assert.equal((await scimRequest('GET', `${s.baseUrl}/ServiceProviderConfig`, 'wrong')).status, 200);
    assert.equal((await fetch(`${s.baseUrl.replace('/scim/v2', '')}/elsewhere`)).status, 404);
    for (const { message } of s.logger.lines) assert.ok(!message.includes(s.token));
  } finally {
    await s.stop();
  }
});

test('an identity provider\'s user becomes a CMS user; active=false blocks it; DELETE removes it', async () => {
  const s = await serve('into-cms');
  try {
    const users = `${s.baseUrl}/Users`;
    const created = await scimRequest('POST', users, s.token, {
      schemas: ['urn:ietf:params:scim:schemas:core:2.0:User'], userName: 'okta.user', name: { givenName: 'Olga', familyName: 'Kta' },
      emails: [{ type: 'work', value: 'olga@idp.example', primary: true }], active: true,
    });
    assert.equal(created.status, 201, JSON.stringify(created.body));
    const id = created.body.id;
    let cms = s.directory.cmsUser(id);
    assert.equal(cms.name, 'okta.user');
    assert.equal(cms.mail, 'olga@idp.example');
    assert.equal(cms.fields.field_first_name, 'Olga');
    assert.equal(cms.fields.field_last_name, 'Kta');
    assert.equal(cms.active, true);
    const dup = await scimRequest('POST', users, s.token, { schemas: ['urn:ietf:params:scim:schemas:core:2.0:User'], userName: 'OKTA.user' });
    assert.equal(dup.status, 409);
    assert.equal(dup.body.scimType, 'uniqueness');
    const patched = await scimRequest('PATCH', `${users}/${id}`, s.token, {
      schemas: ['urn:ietf:params:scim:api:messages:2.0:PatchOp'], Operations: [{ op: 'replace', value: { active: false } }],
    });
    assert.equal(patched.status, 200, JSON.stringify(patched.body));
    cms = s.directory.cmsUser(id);
    assert.equal(cms.active, false);
    const found = await scimRequest('GET', `${users}?filter=${encodeURIComponent('name.familyName sw "k" and active eq false')}&sortBy=userName`, s.token);
    assert.equal(found.body.totalResults, 1);
    const bad = await scimRequest('GET', `${users}?filter=${encodeURIComponent('userName eq')}`, s.token);
    assert.equal(bad.status, 400);
    assert.equal(bad.body.scimType, 'invalidFilter');
    assert.equal((await scimRequest('DELETE', `${users}/${id}`, s.token)).status, 204);
    assert.equal(s.directory.cmsUser(id), null);
    assert.equal((await scimRequest('GET', `${users}/${id}`, s.token)).status, 404);
  } finally {
    await s.stop();
  }
});

test('a directory failure becomes the right SCIM status; a throwing directory is answered, not fatal', async () => {
  const base = SqliteDirectory.open(path.join(tempDir('dir-fail'), 'x.db'), runtime);
  const failing = {
    get: () => { throw new DirectoryError('unavailable', 'maintenance'); },
    query: () => { throw new Error('a bug in the host'); },
    create: (...a) => base.create(...a),
    replace: (...a) => base.replace(...a),
    delete: (...a) => base.delete(...a),
  };
  const token = newToken();
  const logger = new MemoryLogger();
  const scim = await ScimServer.open(runtime, { base_url: 'http://127.0.0.1/scim/v2', token }, failing, { logger });
  const auth = [['Authorization', `Bearer ${token}`]];
  assert.equal((await scim.handle({ method: 'GET', path: '/Users/abc', headers: auth })).status, 503);
  const r = await scim.handle({ method: 'GET', path: '/Users', query: 'filter=userName%20eq%20%22x%22', headers: auth });
  assert.equal(r.status, 500);
  assert.ok(logger.lines.some((l) => l.level === 'error' && /a bug in the host/.test(l.message)));
  assert.equal(scim.instancesOpened(), 1);
  base.close();
});

test('the client role provisions into the Node-served server (both roles end to end)', async () => {
  const dir = tempDir('e2e');
  const token = newToken();
  const site = await startScript(path.join(HERE, '..', 'bin', 'serve.mjs'), ['--database', path.join(dir, 'joomla.db'), '--listen', '127.0.0.1:0'], { SCIM_TOKEN: token });
  const baseUrl = site.value;
  try {
    const connector = await Connector.open(runtime, { base_url: baseUrl, token, policy: { operations: { delete: true }, deprovision: 'delete' } }, { logger: new MemoryLogger() });
    const caps = await connector.testConnection();
    assert.equal(caps.patch, true);
    const erin = { id: '7', fields: { name: 'erin', mail: 'erin@example.com', field_first_name: 'Erin', field_last_name: 'Ó Briain' } };
    const created = await connector.provision(erin, 'created');
    assert.equal(created.action, 'created');
    const changed = await connector.provision({ ...erin, fields: { ...erin.fields, field_last_name: 'O\'Brien' } }, 'updated', created.link);
    assert.equal(changed.action, 'updated');
    connector.close();
    const read = await scimRequest('GET', `${baseUrl}/Users/${created.link.remoteId}`, token);
    assert.equal(read.status, 200);
    assert.equal(read.body.name.familyName, 'O\'Brien');
    assert.equal(read.body.externalId, '7');
    assert.equal(read.body.meta.version, 'W/"2"');
  } finally {
    await site.stop();
  }
});

test('a trap while serving is answered 500 and the next request is served by a fresh instance', async () => {
  const small = await Runtime.load({ memoryLimitBytes: 16 * 1024 * 1024 });
  const directory = SqliteDirectory.open(path.join(tempDir('server-trap'), 'site.db'), small);
  const token = newToken();
  const http = await listen();
  const baseUrl = `${http.origin}/scim/v2`;
  const scim = await ScimServer.open(small, { base_url: baseUrl, token, bulk_max_payload: 64 * 1024 * 1024 }, directory, { logger: new MemoryLogger() });
  http.server.on('request', scim.listener());
  try {
    const huge = await fetch(`${baseUrl}/Users`, {
      method: 'POST',
      headers: { Authorization: `Bearer ${token}`, 'Content-Type': 'application/scim+json' },
      body: JSON.stringify({ schemas: ['urn:ietf:params:scim:schemas:core:2.0:User'], userName: 'x'.repeat(24 * 1024 * 1024) }),
    });
    assert.equal(huge.status, 500);
    assert.match((await huge.json()).detail, /trapped/);
    const next = await scimRequest('POST', `${baseUrl}/Users`, token, { schemas: ['urn:ietf:params:scim:schemas:core:2.0:User'], userName: 'after.trap' });
    assert.equal(next.status, 201);
    assert.equal(scim.instancesOpened(), 2);
    await assert.rejects(() => scim.handle({ method: 'POST', path: '/Users', headers: [['Authorization', `Bearer ${token}`]], body: Buffer.alloc(24 * 1024 * 1024, 0x20) }),
      (e) => e instanceof MemoryLimitExceeded && e instanceof GuestTrap && e.kind === 'memory');
  } finally {
    await http.stop();
    directory.close();
  }
});
