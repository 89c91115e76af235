// The shared scenario suite (tests/scenarios/*.json, format in tests/scenarios/README.md) under
// the Node host (the source tree, or the installed package: see LIBRARY below): every scenario against a fresh scim2-server (and a plain HTTP server answering
// HTML beside it, ${HTML_URL}), server-role steps against this host's own ScimServer over a fresh
// SqliteDirectory. Prints `scenarios: node: N passed, M failed`.
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';

import { spawn } from 'node:child_process';

import { REPO_ROOT, freePort, newToken, startHtmlServer, startScim2Server, tool, waitFor } from './helpers.js';

// The library under test: the source tree, or (env SCIM_NODE_LIBRARY, set by
// scripts/test-packed) the package by name, as a project that installed the tarball has it.
const LIBRARY = process.env.SCIM_NODE_LIBRARY || null;
const { Connector, GuestTrap, ProvisioningError, Runtime, ScimServer } = await import(LIBRARY ?? '../src/index.js');
const { SqliteDirectory } = await import(LIBRARY ? `${LIBRARY}/sqlite` : '../src/sqlite.js');

const HOST = LIBRARY ? `node (${LIBRARY}, installed)` : 'node';
const SCENARIOS = path.join(REPO_ROOT, 'tests', 'scenarios');
// Steps this host cannot run: 'scenario#step' -> reason. Printed, never silent.
const SKIPS = new Map();

/**
 * Our quirky SCIM server (tests/peers/quirky, run by the venv's Python) with a scenario's
 * switches (`"peer": {"quirky": [...]}`), its data in memory; base http://127.0.0.1:P/v2.
 */
async function startQuirkyServer(switches) {
  const port = await freePort();
  const token = newToken();
  const log = path.join(os.tmpdir(), `node-host-quirky-${port}-${process.pid}.log`);
  const out = fs.openSync(log, 'a');
  const script = path.join(REPO_ROOT, 'tests', 'peers', 'quirky', 'server.py');
  const child = spawn(tool('python'), [script, '--port', String(port), '--token', token, ...switches], { stdio: ['ignore', out, out] });
  fs.closeSync(out);
  const baseUrl = `http://127.0.0.1:${port}/v2`;
  const stop = () => new Promise((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) return resolve();
    child.once('exit', resolve);
    child.kill('SIGTERM');
  });
  try {
    await waitFor('quirky server', async () => (await fetch(`${baseUrl}/ServiceProviderConfig`)).ok, { child, log });
  } catch (e) {
    await stop();
    throw e;
  }
  return { baseUrl, token, port, log, stop };
}

// ---- the format's shared machinery (same rules in every runner) ----

function expand(value, ctx) {
  if (typeof value === 'string') {
    for (const [k, v] of Object.entries(ctx.vars)) value = value.split('${' + k + '}').join(v);
    return value;
  }
  if (Array.isArray(value)) return value.map((v) => expand(v, ctx));
  if (value !== null && typeof value === 'object') {
    if ('$repeat' in value) {
      const item = expand(value.$repeat, ctx);
      return typeof item === 'string' ? item.repeat(value.times) : Array.from({ length: value.times }, () => item);
    }
    if ('$link' in value) return ctx.links[value.$link];
    if ('$remoteId' in value) return ctx.links[value.$remoteId].remoteId;
    if ('$json' in value) return JSON.stringify(expand(value.$json, ctx));
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, expand(v, ctx)]));
  }
  return value;
}

const short = (v) => {
  const s = JSON.stringify(v) ?? String(v);
  return s.length > 200 ? `${s.slice(0, 200)}…` : s;
};
const typeName = (v) => (v === null || v === undefined ? 'null' : Array.isArray(v) ? 'array' : typeof v);

function match(expected, actual, p = '$') {
  if (actual === undefined) actual = null;
  if (expected !== null && typeof expected === 'object' && !Array.isArray(expected) && Object.keys(expected).some((k) => k.startsWith('$'))) {
    const errs = [];
    for (const [k, want] of Object.entries(expected)) {
      if (k === '$type') {
        if (typeName(actual) !== want) errs.push(`${p}: expected a ${want}, got ${short(actual)}`);
      } else if (k === '$gte') {
        if (typeof actual !== 'number' || actual < want) errs.push(`${p}: expected >= ${want}, got ${short(actual)}`);
      } else if (k === '$contains') {
        if (typeof actual !== 'string' || !actual.includes(want)) errs.push(`${p}: expected a string containing ${short(want)}, got ${short(actual)}`);
      } else if (k === '$len') {
        const len = typeof actual === 'string' ? [...actual].length : Array.isArray(actual) ? actual.length : null;
        if (len !== want) errs.push(`${p}: expected length ${want}, got ${len}`);
      } else if (k === '$not') {
        if (match(want, actual, p).length === 0) errs.push(`${p}: expected not ${short(want)}, got ${short(actual)}`);
      } else errs.push(`${p}: unknown matcher ${k}`);
    }
    return errs;
  }
  if (Array.isArray(expected)) {
    if (!Array.isArray(actual) || actual.length !== expected.length) return [`${p}: expected ${expected.length} items, got ${short(actual)}`];
    return expected.flatMap((e, i) => match(e, actual[i], `${p}[${i}]`));
  }
  if (expected !== null && typeof expected === 'object') {
    if (actual === null || typeof actual !== 'object' || Array.isArray(actual)) return [`${p}: expected an object, got ${short(actual)}`];
    return Object.entries(expected).flatMap(([k, v]) => match(v, actual[k], `${p}.${k}`));
  }
  return expected === actual ? [] : [`${p}: expected ${short(expected)}, got ${short(actual)}`];
}

// ---- this host's adapter: host values -> the canonical JSON of the README ----

const cLink = (l) => (l == null ? null : { remoteId: l.remoteId, version: l.version ?? null, snapshot: l.snapshot ?? null });
const cOutcome = (o) => ({ action: o.action, reason: o.reason ?? null, link: cLink(o.link), location: o.location ?? null, requests: o.requests });

function cError(e) {
  const wit = e.toWit();
  return {
    case: e.case,
    status: e.status,
    scimType: e.scimType,
    detail: ['scim', 'unexpected-response'].includes(e.case) ? e.detail : null,
    message: ['invalid-config', 'other'].includes(e.case) ? (typeof wit?.val === 'string' ? wit.val : e.message) : null,
    retry: e.retry,
    retryAfterSeconds: e.retryAfterSeconds,
    transportError: e.transportError,
    userId: e.userId,
    attribute: e.attribute,
  };
}

function cResponse(resp) {
  let json = null;
  try {
    json = resp.body.length ? JSON.parse(resp.body.toString('utf8')) : null;
  } catch {
    json = null;
  }
  return { status: resp.status, headers: Object.fromEntries(resp.headers.map(([k, v]) => [k.toLowerCase(), v])), json, bodyLength: resp.body.length };
}

const toUser = (u) => ({ id: u.id, fields: u.fields ?? {}, active: u.active ?? true });

async function deadUrl() {
  const port = await new Promise((resolve) => {
    const s = net.createServer();
    s.listen(0, '127.0.0.1', () => {
      const { port: p } = s.address();
      s.close(() => resolve(p));
    });
  });
  return `http://127.0.0.1:${port}/v2`;
}

class Run {
  constructor(peer, tmp, shared, ctx) {
    this.peer = peer;
    this.tmp = tmp;
    this.shared = shared;
    this.runtime = null;
    this.connectors = new Map();
    this.servers = new Map();
    this.ctx = ctx;
  }

  rt() {
    return this.runtime ?? this.shared;
  }

  async step(step) {
    const s = {};
    for (const [k, v] of Object.entries(step)) if (k !== 'expect') s[k] = expand(v, this.ctx);
    const c = this.connectors.get(s.connector ?? 'main');
    try {
      switch (s.op) {
        case 'runtime':
          this.runtime = await Runtime.load({ memoryLimitBytes: s.memory_limit_bytes });
          return { ok: true };
        case 'open':
          this.connectors.set(s.as ?? 'main', await Connector.open(this.rt(), s.config));
          return { ok: true };
        case 'test-connection':
          return { ok: await c.testConnection() };
        case 'provision': {
          const out = cOutcome(await c.provision(toUser(s.user), s.event, s.link ?? null));
          if (s.save && out.link) this.ctx.links[s.save] = out.link;
          return { ok: out };
        }
        case 'plan': {
          const p = await c.plan(toUser(s.user), s.event, Boolean(s.linked));
          return { ok: { action: p.action, reason: p.reason } };
        }
        case 'batch': {
          const b = await c.provisionBatch(s.items.map((i) => ({ user: toUser(i.user), event: i.event, link: i.link ?? null })));
          const results = b.results.map((r) => (r instanceof ProvisioningError ? { error: cError(r) } : { ok: cOutcome(r) }));
          s.items.forEach((item, i) => {
            if (item.save && results[i].ok?.link) this.ctx.links[item.save] = results[i].ok.link;
          });
          return { ok: { results, requests: b.requests, bulkRequests: b.bulkRequests } };
        }
        case 'map-user':
          return { ok: await c.mapUser(toUser(s.user)) };
        case 'get-user':
          return { ok: await c.getUser(s.remoteId) };
        case 'index-remote-users':
          return { ok: await c.indexRemoteUsers() };
        case 'scope-fields':
          return { ok: await c.scopeFields() };
        case 'remote-user-ids':
          return { ok: await c.remoteUserIds() };
        case 'export-remote-index': {
          const doc = await c.exportRemoteIndex();
          if (s.save) this.ctx.vars[s.save] = doc ?? '';
          return { ok: doc };
        }
        case 'import-remote-index':
          return { ok: await c.importRemoteIndex(s.document) };
        case 'export-dialect': {
          const doc = await c.exportDialect();
          if (s.save) this.ctx.vars[s.save] = doc;
          return { ok: JSON.parse(doc) };
        }
        case 'import-dialect':
          await c.importDialect(s.document);
          return { ok: null };
        case 'server-open': {
          const name = s.as ?? 'main';
          const dir = SqliteDirectory.open(path.join(this.tmp, `dir-${name}-${this.servers.size}.db`), this.rt());
          this.servers.set(name, await ScimServer.open(this.rt(), s.config, dir));
          return { ok: true };
        }
        case 'serve': {
          const r = s.request;
          const body = r.body === undefined || r.body === null ? '' : typeof r.body === 'string' ? r.body : JSON.stringify(r.body);
          const resp = await this.servers.get(s.server ?? 'main').handle({ method: r.method, path: r.path, query: r.query ?? '', headers: r.headers ?? [], body: Buffer.from(body, 'utf8') });
          const out = cResponse(resp);
          if (s.saveId && out.json && typeof out.json === 'object') this.ctx.vars[s.saveId] = String(out.json.id);
          return { ok: out };
        }
        case 'server-get':
        case 'server-post':
        case 'server-delete':
          return await this.peerHttp(s);
        default:
          throw new Error(`unknown op ${s.op}`);
      }
    } catch (e) {
      if (e instanceof ProvisioningError) return { error: cError(e) };
      if (e instanceof GuestTrap) return { trap: { kind: e.kind } };
      throw e;
    }
  }

  async peerHttp(s) {
    const { baseUrl, token } = this.peer;
    let method = 'GET';
    let url;
    let body;
    if (s.op === 'server-get') {
      url = baseUrl + (s.path ?? '/Users') + (s.filter !== undefined ? `?filter=${encodeURIComponent(s.filter)}` : '');
    } else if (s.op === 'server-post') {
      method = 'POST';
      url = baseUrl + s.path;
      body = JSON.stringify(s.body);
    } else {
      method = 'DELETE';
      url = `${baseUrl}/Users/${encodeURIComponent(this.ctx.links[s.user].remoteId)}`;
    }
    const res = await fetch(url, { method, redirect: 'manual', headers: { Authorization: `Bearer ${token}`, 'Content-Type': 'application/scim+json' }, body });
    const text = await res.text();
    let json = {};
    try {
      json = text ? JSON.parse(text) : {};
    } catch {
      json = {};
    }
    return { status: res.status, count: json?.totalResults ?? null, resources: json?.Resources ?? [], json };
  }

  close() {
    for (const c of this.connectors.values()) c.close();
  }
}

const files = fs.readdirSync(SCENARIOS).filter((f) => f.endsWith('.json')).sort();
const results = new Map();
let shared;

after(() => {
  const passed = [...results.values()].filter(Boolean).length;
  console.log(`scenarios: ${HOST}: ${passed} passed, ${results.size - passed} failed`);
});

for (const file of files) {
  const scenario = JSON.parse(fs.readFileSync(path.join(SCENARIOS, file), 'utf8'));
  test(`scenario ${scenario.name}`, async () => {
    results.set(scenario.name, false);
    shared ??= await Runtime.load();
    const switches = scenario.peer?.quirky;
    const peer = switches ? await startQuirkyServer(switches) : await startScim2Server();
    let html;
    try {
      html = await startHtmlServer();
    } catch (e) {
      await peer.stop();
      throw e;
    }
    const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'node-scenarios-'));
    const ctx = { vars: { BASE_URL: peer.baseUrl, TOKEN: peer.token, DEAD_URL: await deadUrl(), HTML_URL: html.baseUrl }, links: {} };
    const run = new Run(peer, tmp, shared, ctx);
    const failures = [];
    try {
      for (const [i, step] of scenario.steps.entries()) {
        const reason = SKIPS.get(`${scenario.name}#${i}`);
        if (reason) {
          console.log(`scenario ${scenario.name} step ${i}: skip on ${HOST} because ${reason}`);
          continue;
        }
        assert.ok('expect' in step, `step ${i} has no expectation`);
        const got = await run.step(step);
        const errs = match(expand(step.expect, ctx), got);
        if (errs.length) {
          failures.push(`step ${i} (${step.op}): ${errs.join('; ')}`);
          break;
        }
      }
    } finally {
      run.close();
      await peer.stop();
      await html.stop();
      fs.rmSync(tmp, { recursive: true, force: true });
    }
    results.set(scenario.name, failures.length === 0);
    assert.deepEqual(failures, []);
  });
}
