// The deadline on every call: the guest runs in a worker thread of its own, and a call that
// runs longer than `deadlineMs` without an HTTP or directory answer from the host is stopped
// (the worker is terminated) with DeadlineExceeded; the next call works on a fresh instance.
// The long-running guest call is the Python host's: thousands of unchanged users in one
// batch, guest work with no host answer in between.
import assert from 'node:assert/strict';
import { before, test } from 'node:test';

import { Connector, DeadlineExceeded, GuestTrap, MemoryLogger, Runtime, Selector } from '../src/index.js';

const SPC = {
  schemas: ['urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig'],
  patch: { supported: true }, bulk: { supported: false, maxOperations: 0, maxPayloadSize: 0 },
  filter: { supported: true, maxResults: 100 }, changePassword: { supported: false },
  sort: { supported: false }, etag: { supported: false }, authenticationSchemes: [],
};

const EMPTY = { schemas: ['urn:ietf:params:scim:api:messages:2.0:ListResponse'], totalResults: 0, startIndex: 1, itemsPerPage: 0, Resources: [] };

/** A SCIM server that knows no users (and has no /Schemas), as a transport; counts requests. */
function canned() {
  const t = { requests: 0 };
  t.send = (r) => {
    t.requests++;
    const path = new URL(r.url).pathname;
    const [status, body] = path.endsWith('/ServiceProviderConfig') ? [200, SPC] : path.endsWith('/Users') ? [200, EMPTY] : [404, {}];
    return { status, headers: [['Content-Type', 'application/scim+json']], body: Buffer.from(JSON.stringify(body)) };
  };
  return t;
}

const user = (i) => ({ id: String(i), fields: { name: `u${i}`, mail: `u${i}@example.com` }, active: true });

let runtime;
/** The same component with the default deadline: for preparing data, not under test. */
let prep;
before(async () => {
  runtime = await Runtime.load({ deadlineMs: 50 });
  prep = await Runtime.load();
});

test('a call past its deadline is stopped with DeadlineExceeded and the next call works on a fresh instance', async () => {
  assert.equal(runtime.deadlineMs, 50);
  const c = await Connector.open(runtime, { base_url: 'http://127.0.0.1:9/v2', token: 'some-token-value' }, { transport: canned(), logger: new MemoryLogger() });
  const mapper = await Connector.open(prep, { base_url: 'http://127.0.0.1:9/v2', token: 'some-token-value' }, { transport: canned(), logger: new MemoryLogger() });
  try {
    const items = [];
    for (let i = 0; i < 6000; i++) {
      items.push({ user: user(i), event: 'updated', link: { remoteId: `r${i}`, version: null, snapshot: JSON.stringify(await mapper.mapUser(user(i))) } });
    }
    mapper.close();
    await assert.rejects(() => c.provisionBatch(items), (e) => e instanceof DeadlineExceeded && e instanceof GuestTrap
      && e.kind === 'deadline' && e.name === 'DeadlineExceeded' && e.call === '[method]connector.provision-batch'
      && /trapped in \[method\]connector\.provision-batch \(deadline\): the guest ran longer than 50 ms without a host answer/.test(e.message)
      && /next call starts on a fresh one/.test(e.message));
    assert.equal(c.instancesOpened(), 1, 'the fresh instance opens on the next call');
    const small = await c.provisionBatch(items.slice(0, 3));
    assert.deepEqual(small.results.map((r) => r.action), ['unchanged', 'unchanged', 'unchanged']);
    assert.equal(c.instancesOpened(), 2, 'the stopped instance was replaced, with the stored configuration');
    assert.equal((await c.plan(user(1), 'deleted', true)).action, 'deactivate');
  } finally {
    c.close();
  }
});

test('host time does not count: each HTTP answer restarts the clock', async () => {
  // Each answer takes 30 ms of host time, so one test-connection (several requests) takes
  // longer than the 50 ms deadline in all, with no stretch of guest time near it.
  const transport = canned();
  const slow = { send: (r) => {
    const until = performance.now() + 30;
    while (performance.now() < until); // host time, on the calling thread
    return transport.send(r);
  } };
  const c = await Connector.open(runtime, { base_url: 'http://127.0.0.1:9/v2', token: 'some-token-value' }, { transport: slow, logger: new MemoryLogger() });
  try {
    const started = performance.now();
    assert.equal((await c.testConnection()).discovered, true);
    const took = performance.now() - started;
    assert.ok(transport.requests >= 3, `${transport.requests} requests`);
    assert.ok(took > runtime.deadlineMs, `the call took ${took.toFixed(0)} ms in all, longer than the deadline`);
    assert.equal(c.instancesOpened(), 1, 'no deadline was hit');
  } finally {
    c.close();
  }
});

test('a Selector past its deadline is stopped too, and answers on a fresh instance', async () => {
  const selector = new Selector(runtime);
  try {
    const views = Array.from({ length: 100_000 }, (_, i) => JSON.stringify({ id: String(i), userName: `user${i}`, emails: [{ value: `u${i}@x`, primary: true }] }));
    await assert.rejects(() => selector.select(views, { filter: 'emails co "@x" and userName sw "user"', sortBy: 'emails', sortDescending: true, startIndex: 1, count: 10 }),
      (e) => e instanceof DeadlineExceeded && e.call === 'select');
    assert.deepEqual(await selector.select(views.slice(0, 3), { sortBy: 'userName', sortDescending: true, startIndex: 1, count: 2 }), { totalResults: 3, indices: [2, 1] });
    assert.equal(selector.instancesOpened(), 2);
  } finally {
    selector.close();
  }
});
