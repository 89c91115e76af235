// bench.mjs: what the Node host costs, measured in one run (not a timed test).
//
// The same figures, arguments and JSON keys as hosts/php/bench.php, so the Rust host's
// `bench --hosts` prints every host side by side:
//
// 1. Per call, from JS through jco and the instance's worker thread: `plan` and `mapUser`
//    (pure guest work, no import; `plan` the public one, which passes only the fields the
//    scope reads, none under the default policy), a no-change `provision` (the guest
//    compares with the snapshot and sends nothing), and `getUser` (one GET through
//    FetchTransport to scim2-server). Each call awaited before the next. One warm-up pass, then the median of 5 passes, in
//    µs per call.
// 2. Memory: the process RSS (every thread's) before and after --plan-calls `plan` calls
//    (after a full GC when node runs with --expose-gc).
// 3. A first sync of --sync-users users into a fresh scim2-server: every user planned, the
//    remote users listed once and the listing handed to the other connectors, then
//    `provisionBatch` (100 users a call, their writes through /Bulk) on --concurrency
//    connectors at once, all on this thread (each instance runs in its worker; the calls
//    are awaited together), opened before the clock; each user always goes to the same
//    connector.
//
//   node [--expose-gc] hosts/node/bench.mjs [--calls N] [--plan-calls N] [--sync-users N]
//       [--concurrency N] [--json FILE]
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

import { buildComponent } from './scripts/build.mjs';
import { Connector, NullLogger, Runtime } from './src/index.js';
import { scimRequest, startScim2Server } from './test/helpers.js';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const BATCH = 100;

const version = (pkg) => JSON.parse(fs.readFileSync(path.join(HERE, 'node_modules', pkg, 'package.json'), 'utf8')).version;

/** The user every host's bench provisions (bench.rs, bench.php, bench.py). */
const user = (i, last = 'Lovelace') => ({
  id: String(i), fields: { name: `bench${i}`, mail: `bench${i}@drupal.example`, field_first_name: 'Ada', field_last_name: last, roles: ['member'] }, active: true,
});
const syncUser = (i) => ({
  id: String(i), fields: { name: `sync${i}`, mail: `sync${i}@drupal.example`, field_first_name: 'Sync', field_last_name: `User${i}`, roles: ['member'] }, active: true,
});

/** Median µs per call over 5 passes of n calls (each awaited before the next), after one warm-up pass. */
async function perCall(n, fn) {
  for (let i = 0; i < n; i++) await fn();
  const runs = [];
  for (let r = 0; r < 5; r++) {
    const t = process.hrtime.bigint();
    for (let i = 0; i < n; i++) await fn();
    runs.push(Number(process.hrtime.bigint() - t) / 1000 / n);
  }
  runs.sort((a, b) => a - b);
  return runs[2];
}

const rssKib = () => Math.round(process.memoryUsage().rss / 1024);
const collect = () => globalThis.gc?.();

/** Provisions `users` in batches of 100 on `connector`; adds to `totals`. */
async function provisionShare(connector, users, totals) {
  for (let at = 0; at < users.length; at += BATCH) {
    const out = await connector.provisionBatch(users.slice(at, at + BATCH).map((u) => ({ user: u, event: 'created', link: null })));
    totals.requests += out.requests;
    totals.bulk += out.bulkRequests;
    for (const r of out.results) {
      if (!(r instanceof Error) && (r.action === 'created' || r.action === 'adopted')) totals.created++;
      else totals.failed++;
    }
  }
  return totals;
}

const noTotals = () => ({ requests: 0, bulk: 0, created: 0, failed: 0 });

async function firstSync(runtime, baseUrl, token, n, concurrency) {
  const config = { base_url: baseUrl, token, timeout: 60000 };
  const users = Array.from({ length: n }, (_, i) => syncUser(i + 1));
  const share = (k) => users.filter((_, i) => i % concurrency === k);
  // Every connector on this thread, each instance in a worker of its own: they run at once.
  const setupStarted = performance.now();
  const connectors = await Promise.all(Array.from({ length: concurrency }, () => Connector.open(runtime, config, { logger: new NullLogger() })));
  const setupSeconds = (performance.now() - setupStarted) / 1000;
  const started = performance.now();
  const [first, ...others] = connectors;
  const planned = [];
  for (const u of users) if ((await first.plan(u, 'created', false)).action === 'create') planned.push(u);
  if (planned.length !== n) throw new Error(`${planned.length} of ${n} users planned for creation`);
  const listing = await first.indexRemoteUsers();
  const document = await first.exportRemoteIndex();
  if (document !== null) await Promise.all(others.map((c) => c.importRemoteIndex(document)));
  const results = await Promise.all(connectors.map((c, k) => provisionShare(c, share(k), noTotals())));
  const seconds = (performance.now() - started) / 1000;
  for (const c of connectors) c.close();
  const sum = (k) => results.reduce((a, t) => a + t[k], 0);
  if (sum('created') !== n || sum('failed') !== 0) throw new Error(`the sync did not provision every user: ${sum('created')} created, ${sum('failed')} failed`);
  return { seconds, setupSeconds, created: sum('created'), requests: listing.requests + sum('requests'), bulk: sum('bulk') };
}

async function main() {
  const { values } = parseArgs({
    options: {
      calls: { type: 'string', default: '2000' }, 'plan-calls': { type: 'string', default: '100000' },
      'sync-users': { type: 'string', default: '2000' }, concurrency: { type: 'string', default: '4' }, json: { type: 'string' },
    },
  });
  const [calls, planCalls, syncUsers, concurrency] = ['calls', 'plan-calls', 'sync-users', 'concurrency'].map((k) => {
    const v = Number(values[k]);
    if (!Number.isInteger(v) || v < 1) throw new Error(`--${k} must be a positive whole number`);
    return v;
  });
  // The component as npm run build leaves it (transpiled now if the .wasm changed).
  console.log(await buildComponent());
  const started = performance.now();
  const runtime = await Runtime.load();
  const jco = `jco ${version('@bytecodealliance/jco')} + preview2-shim ${version('@bytecodealliance/preview2-shim')}`;
  console.log(`Node ${process.version}, ${jco}, component ${runtime.wasmPath}`);
  console.log(`component loaded in ${(performance.now() - started).toFixed(0)} ms\n`);
  const figures = { host: 'node', runtime: `Node ${process.version}, ${jco} (sync instantiation, each instance in a worker thread, Promise API)` };
  const notes = [];

  const peer = await startScim2Server();
  try {
    const c = await Connector.open(runtime, { base_url: peer.baseUrl, token: peer.token, timeout: 30000 }, { logger: new NullLogger() });
    const created = await c.provision(user(1), 'created', null);
    if (created.action !== 'created' || created.link === null) throw new Error('the bench user was not created');
    const { link } = created;
    const u = user(1);
    console.log(`== per call, from JS through jco and the instance's worker thread (${calls} calls, median of 5) ==`);
    const rows = [
      ['plan (pure)', await perCall(calls, () => c.plan(u, 'updated', true))],
      ['mapUser (pure)', await perCall(calls, () => c.mapUser(u))],
      ['provision, no change', await perCall(calls, async () => {
        if ((await c.provision(u, 'updated', link)).action !== 'unchanged') throw new Error('expected unchanged');
      })],
      ['getUser (1 GET)', await perCall(Math.max(1, Math.floor(calls / 4)), () => c.getUser(link.remoteId))],
    ];
    console.log(`${'call'.padEnd(24)} ${'us/call'.padStart(12)} ${'calls/s'.padStart(12)}`);
    for (const [name, us] of rows) console.log(`${name.padEnd(24)} ${us.toFixed(1).padStart(12)} ${(1e6 / us).toFixed(0).padStart(12)}`);
    Object.assign(figures, { plan_us: rows[0][1], map_us: rows[1][1], provision_unchanged_us: rows[2][1], get_user_us: rows[3][1] });

    console.log(`\n== memory over ${planCalls} plan calls (the process: this thread and the instance's worker) ==`);
    for (let i = 0; i < 2000; i++) await c.plan(u, 'updated', true);
    if (typeof globalThis.gc !== 'function') notes.push('RSS read without a forced GC (run node with --expose-gc for a collected heap)');
    collect();
    const rss0 = rssKib();
    const quarter = Math.max(1, Math.floor(planCalls / 4));
    const marks = [];
    const t = performance.now();
    for (let i = 1; i <= planCalls; i++) {
      await c.plan(u, 'updated', true);
      if (i % quarter === 0 && marks.length < 4) marks.push(rssKib());
    }
    const seconds = (performance.now() - t) / 1000;
    collect();
    const rss1 = rssKib();
    console.log(`RSS ${rss0} -> ${rss1} KiB (${rss1 - rss0 >= 0 ? '+' : ''}${rss1 - rss0}); after each quarter: ${marks.join(', ')} KiB; ${(seconds * 1e6 / planCalls).toFixed(1)} us per plan call`);
    Object.assign(figures, { memory_calls: planCalls, rss_growth_kib: rss1 - rss0 });
    c.close();
  } finally {
    await peer.stop();
  }

  console.log(`\n== a ${syncUsers}-user first sync into a fresh scim2-server, ${concurrency} connectors on one thread ==`);
  const fresh = await startScim2Server();
  try {
    const s = await firstSync(runtime, fresh.baseUrl, fresh.token, syncUsers, concurrency);
    const listed = await scimRequest('GET', `${fresh.baseUrl}/Users?count=1`, fresh.token);
    console.log(`${s.seconds.toFixed(2)} s, ${(syncUsers / s.seconds).toFixed(0)} users/s, ${s.created} created, ${s.requests} requests (${s.bulk} bulk); `
      + `scim2-server holds ${listed.body.totalResults} users (read back with a plain GET); opening the connectors took ${s.setupSeconds.toFixed(2)} s before the clock`);
    if (listed.body.totalResults !== syncUsers) throw new Error(`scim2-server holds ${listed.body.totalResults} users, not ${syncUsers}`);
    Object.assign(figures, {
      sync_users: syncUsers, sync_concurrency: concurrency, sync_seconds: s.seconds, sync_requests: s.requests, sync_bulk: s.bulk, sync_setup_seconds: s.setupSeconds,
    });
    notes.push(`sync_seconds excludes opening the ${concurrency} connectors (${s.setupSeconds.toFixed(2)} s: a worker thread and an instance each)`);
  } finally {
    await fresh.stop();
  }
  if (notes.length > 0) figures.notes = notes.join('; ');
  if (values.json) fs.writeFileSync(values.json, `${JSON.stringify(figures, null, 2)}\n`);
}

await main();
