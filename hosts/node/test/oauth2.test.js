// OAuth 2.0 client credentials (issue 31): a real authorization server (oidc-provider,
// tests/peers/oidc) and our quirky SCIM server accepting only the access tokens its
// introspection endpoint calls active. The basic credentials are the client's id and secret,
// sent only to the token endpoint; the default FetchTransport allows the token URL's origin.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import readline from 'node:readline';
import { after, before, test } from 'node:test';

import { Connector, FetchTransport, MemoryLogger, ProvisioningError, Runtime, TransportError } from '../src/index.js';
import { REPO_ROOT, freePort, tool, waitFor } from './helpers.js';

const CLIENT_ID = 'scim-provisioner';
const CLIENT_SECRET = `node-client-secret-${crypto.randomBytes(8).toString('hex')}`;
const INTROSPECTOR = `scim-resource-server:node-introspector-${crypto.randomBytes(8).toString('hex')}`;

let runtime;
let idp;
let quirky;
const children = [];

function stopAll() {
  return Promise.all(children.map((child) => new Promise((resolve) => {
    if (child.exitCode !== null) return resolve();
    child.once('exit', resolve);
    child.kill('SIGKILL');
  })));
}

before(async () => {
  runtime = await Runtime.load();
  const app = path.join(REPO_ROOT, 'tests', 'peers', 'oidc');
  assert.ok(fs.existsSync(path.join(app, 'node_modules', 'oidc-provider')), `${app}/node_modules is missing: run scripts/install-peers`);
  const provider = spawn(process.execPath, ['server.js'], {
    cwd: app,
    env: { ...process.env, OIDC_PEER_INTROSPECTOR: INTROSPECTOR, OIDC_PEER_CLIENT: `${CLIENT_ID}:${CLIENT_SECRET}` },
    stdio: ['ignore', 'pipe', 'ignore'],
  });
  children.push(provider);
  const [line] = await Promise.race([
    new Promise((resolve) => readline.createInterface({ input: provider.stdout }).once('line', (l) => resolve([l]))),
    new Promise((_, reject) => provider.once('exit', (code) => reject(new Error(`oidc-provider exited with ${code}`)))),
  ]);
  idp = JSON.parse(line);
  const port = await freePort();
  const scim = spawn(tool('python'), [path.join(REPO_ROOT, 'tests', 'peers', 'quirky', 'server.py'), '--port', String(port),
    '--introspect-url', idp.introspection_endpoint, '--introspect-client', INTROSPECTOR], { stdio: 'ignore' });
  children.push(scim);
  quirky = { baseUrl: `http://127.0.0.1:${port}/v2` };
  await waitFor('quirky', async () => (await fetch(`${quirky.baseUrl}/ServiceProviderConfig`)).ok, { child: scim });
});

after(stopAll);

// The configuration keys every host shares.
const config = (secret) => ({
  base_url: quirky.baseUrl, auth: 'oauth2', token_url: idp.token_endpoint, client_id: CLIENT_ID, client_secret: secret, scope: 'scim', timeout: 10000,
});

test('what auth: oauth2 becomes works too: the client as basic credentials and the policy section', async () => {
  const c = await Connector.open(runtime, {
    baseUrl: quirky.baseUrl, username: CLIENT_ID, password: CLIENT_SECRET,
    policy: { oauth2: { token_url: idp.token_endpoint, scope: 'scim', client_auth: 'client_secret_post' } },
  });
  try {
    assert.equal((await c.testConnection()).discovered, true);
  } finally {
    c.close();
  }
});

test('OAuth 2.0 settings are checked clearly', async () => {
  for (const [extra, needle] of [
    [{ auth: 'oauth2', client_id: 'a', client_secret: 'b' }, /token_url/],
    [{ auth: 'oauth2', token_url: 'https://i/t', client_secret: 'b' }, /client_id/],
    [{ auth: 'oauth2', token_url: 'https://i/t', client_id: 'a' }, /client_secret/],
    [{ auth: 'oauth2', token_url: 'https://i/t', client_id: 'a', client_secret: 'b', token: 't' }, /not token/],
    [{ token_url: 'https://i/t' }, /set auth: 'oauth2'/],
    [{ auth: 'kerberos' }, /auth is 'oauth2'/],
    [{ auth: 'oauth2', token_url: 'https://i/t', client_id: 'a', client_secret: 'b', client_auth: 'private_key_jwt' }, /private_key_jwt/],
  ]) {
    await assert.rejects(Connector.open(runtime, { base_url: 'https://scim.example/v2', ...extra }), (e) => {
      assert.ok(e instanceof ProvisioningError, String(e));
      assert.equal(e.case, 'invalid-config', e.message);
      assert.match(e.message, needle);
      return true;
    });
  }
});

test('client credentials pass the connection test; a wrong secret names invalid_client', async () => {
  const logger = new MemoryLogger();
  const good = await Connector.open(runtime, config(CLIENT_SECRET), { logger });
  try {
    const caps = await good.testConnection();
    assert.equal(caps.discovered, true);
  } finally {
    good.close();
  }
  const wrong = `wrong-${crypto.randomBytes(8).toString('hex')}`;
  const bad = await Connector.open(runtime, config(wrong), { logger });
  try {
    await assert.rejects(bad.testConnection(), (e) => {
      assert.ok(e instanceof ProvisioningError);
      assert.equal(e.scimType, 'invalid_client');
      assert.match(e.message, /the client secret or id is wrong/);
      assert.ok(!e.message.includes(wrong));
      return true;
    });
  } finally {
    bad.close();
  }
  const logged = logger.lines.map((l) => l.message).join('\n');
  assert.match(logged, /OAuth 2\.0 token/);
  for (const secret of [CLIENT_SECRET, wrong]) assert.ok(!logged.includes(secret), logged);
});

test('the transport allows the token URL origin and no other', async () => {
  const transport = new FetchTransport('http://127.0.0.1:1/v2', { allowedOrigins: ['http://127.0.0.1:2/token'] });
  for (const url of ['http://127.0.0.1:3/token', 'https://127.0.0.1:2/token']) {
    await assert.rejects(Promise.resolve().then(() => transport.send({ method: 'POST', url, headers: [], body: null, timeoutMs: 1000 })),
      (e) => e instanceof TransportError && e.case === 'denied');
  }
});
