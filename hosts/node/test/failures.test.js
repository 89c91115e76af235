// Failures: transport errors from the host, what the transport refuses, and a guest trap
// followed by a working call on the same object.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, test } from 'node:test';

import { Connector, GuestTrap, MemoryLogger, FetchTransport, ProvisioningError, Runtime, TransportError } from '../src/index.js';
import { freePort, startForwardProxy, startScript, tempDir } from './helpers.js';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const FAKE = path.join(HERE, 'fixtures', 'fake-server.mjs');
const MiB = 1024 * 1024;
let runtime;
let fake;
let base;

before(async () => {
  runtime = await Runtime.load();
  fake = await startScript(FAKE);
  base = `http://127.0.0.1:${fake.value}/v2`;
});

after(async () => {
  await fake?.stop();
});

const open = (config, options = {}) => Connector.open(runtime, { base_url: base, token: 'fake-server-token', ...config }, { logger: new MemoryLogger(), ...options });
const request = (url, timeoutMs = 5000) => ({ method: 'GET', url, headers: [['Accept', 'application/scim+json']], body: null, timeoutMs });

test('nothing listening: transport cannot-connect, retryable', async () => {
  const port = await freePort();
  const c = await open({ base_url: `http://127.0.0.1:${port}/v2` });
  await assert.rejects(() => c.testConnection(), (e) => e instanceof ProvisioningError && e.case === 'transport' && e.transportError === 'cannot-connect' && e.isRetryable() && /cannot connect/.test(e.message));
  assert.equal(c.instancesOpened(), 1, 'a transport error is no trap');
  c.close();
});

test('another origin than the configured one is denied by the host', async () => {
  const c = await open({}, { transport: new FetchTransport('http://127.0.0.1:9/v2') });
  await assert.rejects(() => c.getUser('x'), (e) => e.case === 'transport' && e.transportError === 'denied' && e.retry === 'permanent' && /not the configured SCIM origin/.test(e.message));
  c.close();
  const t = new FetchTransport(base);
  await assert.rejects(() => t.send(request('ftp://127.0.0.1/x')), (e) => e instanceof TransportError && e.case === 'invalid-url');
  await assert.rejects(() => t.send(request('http://127.0.0.2:1/x')), (e) => e instanceof TransportError && e.case === 'denied');
  await assert.rejects(() => t.send({ ...request(`${base}/Users/a`), headers: [['X-Evil', 'a\r\nInjected: 1']] }), (e) => e.case === 'other' && /line break/.test(e.message));
});

test('the request\'s own timeout holds', async () => {
  const c = await open({ timeout: 300 });
  const started = Date.now();
  await assert.rejects(() => c.getUser('slow'), (e) => e.case === 'transport' && e.transportError === 'timeout' && e.isRetryable());
  assert.ok(Date.now() - started < 2900, 'did not wait for the slow answer');
  c.close();
});

test('redirects are not followed: a 302 is data', async () => {
  const t = new FetchTransport(base);
  try {
    const res = await t.send(request(`${base}/Users/moved`));
    assert.equal(res.status, 302);
    assert.ok(res.headers.some(([n, v]) => n.toLowerCase() === 'location' && v.includes('127.0.0.2')));
  } finally {
    t.close();
  }
  const c = await open({});
  await assert.rejects(() => c.getUser('moved'), (e) => e instanceof ProvisioningError && e.case !== 'transport' && e.status === 302);
  c.close();
});

test('response bodies are capped (32 MiB by default): more is a transport error', async () => {
  const t = new FetchTransport(base, { maxBodyBytes: MiB });
  try {
    await assert.rejects(() => t.send(request(`${base}/Users/big-${2 * MiB}`)), (e) => e instanceof TransportError && e.case === 'other' && /larger than/.test(e.message));
    assert.equal((await t.send(request(`${base}/Users/after-cap`))).status, 200, 'the transport still works');
  } finally {
    t.close();
  }
  const c = await open({});
  await assert.rejects(() => c.getUser(`big-${33 * MiB}`), (e) => e.case === 'transport' && e.transportError === 'other' && /larger than 33554432/.test(e.message));
  c.close();
});

test('a 1 MiB non-ASCII value crosses the boundary intact', async () => {
  const c = await open({});
  const u = await c.getUser('large');
  assert.equal(u.displayName.length, 512 * 1024);
  assert.equal(Buffer.byteLength(u.displayName), MiB);
  assert.ok([...u.displayName].every((ch) => ch === 'é'));
  c.close();
});

test('a guest trap (a body larger than the memory the instance may grow to), then the next call works', async () => {
  const small = await Runtime.load({ memoryLimitBytes: 16 * MiB });
  const c = await Connector.open(small, { base_url: base, token: 'fake-server-token' }, { logger: new MemoryLogger() });
  assert.equal((await c.getUser('before')).userName, 'user-before');
  await assert.rejects(() => c.getUser(`big-${24 * MiB}`), (e) => e instanceof GuestTrap && e.kind === 'memory' && e.call === '[method]connector.get-user' && /next call starts on a fresh one/.test(e.message));
  assert.equal(c.instancesOpened(), 1, 'the fresh instance opens on the next call');
  assert.equal((await c.getUser('after')).userName, 'user-after');
  assert.equal(c.instancesOpened(), 2);
  c.close();
});

test('TLS is verified: an unknown CA is a tls error; with the CA given it works', async (t) => {
  const dir = tempDir('tls');
  const key = path.join(dir, 'key.pem');
  const cert = path.join(dir, 'cert.pem');
  try {
    execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', key, '-out', cert, '-days', '1', '-subj', '/CN=127.0.0.1', '-addext', 'subjectAltName=IP:127.0.0.1'], { stdio: 'ignore' });
  } catch {
    t.skip('openssl is not installed');
    return;
  }
  const tls = await startScript(FAKE, [], { TLS_KEY: key, TLS_CERT: cert });
  try {
    const httpsBase = `https://127.0.0.1:${tls.value}/v2`;
    const c = await open({ base_url: httpsBase });
    await assert.rejects(() => c.getUser('x'), (e) => e.case === 'transport' && e.transportError === 'tls' && e.retry === 'permanent');
    c.close();
    const trusted = await open({ base_url: httpsBase }, { transport: new FetchTransport(httpsBase, { ca: fs.readFileSync(cert) }) });
    assert.equal((await trusted.getUser('over-tls')).userName, 'user-over-tls');
    trusted.close();
    // Through an https proxy's CONNECT tunnel the same CA is what the target is checked with.
    const { proxy, proxied } = await startForwardProxy();
    try {
      const tunnelled = new FetchTransport(httpsBase, { ca: fs.readFileSync(cert), httpsProxy: proxy.origin, noProxy: '' });
      const viaProxy = await open({ base_url: httpsBase }, { transport: tunnelled });
      assert.equal((await viaProxy.getUser('tunnelled')).userName, 'user-tunnelled');
      assert.deepEqual(proxied, [`CONNECT 127.0.0.1:${tls.value}`]);
      viaProxy.close();
      tunnelled.close();
      const untrusted = await open({ base_url: httpsBase }, { transport: new FetchTransport(httpsBase, { httpsProxy: proxy.origin, noProxy: '' }) });
      await assert.rejects(() => untrusted.getUser('x'), (e) => e.case === 'transport' && e.transportError === 'tls', 'the tunnel does not lift verification');
      untrusted.close();
    } finally {
      await proxy.stop();
    }
  } finally {
    await tls.stop();
  }
});

test('runtime set-up errors say what to fix', async () => {
  await assert.rejects(Runtime.load({ wasm: '/nonexistent/scim_provisioner.wasm' }), /was not found at \/nonexistent.*SCIM_PROVISIONER_WASM/);
  await assert.rejects(Runtime.load({ memoryLimitBytes: 5 }), /memoryLimitBytes/);
  await assert.rejects(Runtime.load({ wsam: 'x' }), /unknown runtime option 'wsam'/);
});
