// Test helpers: real peers on 127.0.0.1, started on a free port and waited for by polling.
import { spawn } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';

import { fileURLToPath } from 'node:url';

/**
 * The repository (for the peers and tests/scenarios): env SCIM_REPO_ROOT when these tests run
 * from a copy outside it (scripts/test-packed), else three levels above this file.
 */
export const REPO_ROOT = process.env.SCIM_REPO_ROOT ?? path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..', '..');

export const VENV_BIN = path.join(process.env.SCIM_PEERS_DIR ?? path.join(REPO_ROOT, 'target', 'peers'), 'venv', 'bin');

export function tool(name) {
  const p = path.join(VENV_BIN, name);
  if (!fs.existsSync(p)) throw new Error(`${p} is missing: run scripts/install-peers`);
  return p;
}

export const newToken = () => crypto.randomBytes(24).toString('hex');

export function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.on('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

/** Polls `check` until it is true, the process died, or the deadline passed. */
export async function waitFor(what, check, { timeoutMs = 30000, child = null, log = null } = {}) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (child && child.exitCode !== null) throw new Error(`${what}: the process exited with ${child.exitCode}${log ? `\n${tail(log)}` : ''}`);
    if (await check().catch(() => false)) return;
    if (Date.now() > deadline) throw new Error(`${what}: not ready after ${timeoutMs} ms${log ? `\n${tail(log)}` : ''}`);
    await sleep(50);
  }
}

const tail = (file) => (fs.existsSync(file) ? fs.readFileSync(file, 'utf8').slice(-3000) : '');

/** scim2-server 0.8.3 on a free port with a fresh bearer token; base http://127.0.0.1:P/v2. */
export async function startScim2Server() {
  const port = await freePort();
  const token = newToken();
  const log = path.join(os.tmpdir(), `node-host-scim2-server-${port}-${process.pid}.log`);
  const out = fs.openSync(log, 'a');
  const child = spawn(tool('scim2-server'), ['--hostname', '127.0.0.1', '--port', String(port), '--bearer-token', token], { stdio: ['ignore', out, out] });
  fs.closeSync(out);
  const baseUrl = `http://127.0.0.1:${port}/v2`;
  const stop = () => new Promise((resolve) => {
    if (child.exitCode !== null) return resolve();
    child.once('exit', resolve);
    child.kill('SIGTERM');
  });
  try {
    await waitFor('scim2-server', async () => (await fetch(`${baseUrl}/ServiceProviderConfig`)).ok, { child, log });
  } catch (e) {
    await stop();
    throw e;
  }
  return { baseUrl, token, port, log, stop };
}

/** Resolves true once a TCP connection to 127.0.0.1:port is accepted, false if refused. */
function accepts(port) {
  return new Promise((resolve) => {
    const socket = net.connect({ host: '127.0.0.1', port });
    socket.setTimeout(2000);
    socket.once('connect', () => { socket.destroy(); resolve(true); });
    socket.once('error', () => { socket.destroy(); resolve(false); });
    socket.once('timeout', () => { socket.destroy(); resolve(false); });
  });
}

/**
 * Not a SCIM server: Python's http.server (the venv's Python, which also runs scim2-server) over
 * an empty temporary directory. It answers every GET with an HTML 404 and POST/PUT/PATCH/DELETE
 * with an HTML 501. Base http://127.0.0.1:P (no path); ready once it accepts connections.
 */
export async function startHtmlServer() {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'node-host-html-peer-'));
  let lastError;
  for (let attempt = 0; attempt < 3; attempt++) {
    const port = await freePort();
    const log = path.join(os.tmpdir(), `node-host-html-${port}-${process.pid}.log`);
    const out = fs.openSync(log, 'a');
    const child = spawn(tool('python'), ['-m', 'http.server', '--bind', '127.0.0.1', String(port), '--directory', root], { stdio: ['ignore', out, out] });
    fs.closeSync(out);
    const kill = () => new Promise((resolve) => {
      if (child.exitCode !== null || child.signalCode !== null) return resolve();
      child.once('exit', resolve);
      child.kill('SIGTERM');
    });
    try {
      await waitFor('http.server', () => accepts(port), { child, log });
    } catch (e) {
      await kill();
      lastError = e; // most likely the port was taken meanwhile: try another
      continue;
    }
    const stop = async () => {
      await kill();
      fs.rmSync(root, { recursive: true, force: true });
    };
    return { baseUrl: `http://127.0.0.1:${port}`, port, log, stop };
  }
  fs.rmSync(root, { recursive: true, force: true });
  throw lastError;
}

/** One request over plain HTTP (fetch), JSON in and out. */
export async function scimRequest(method, url, token, body) {
  const res = await fetch(url, {
    method,
    redirect: 'manual',
    headers: { Authorization: `Bearer ${token}`, Accept: 'application/scim+json', ...(body ? { 'Content-Type': 'application/scim+json' } : {}) },
    body: body ? JSON.stringify(body) : undefined,
  });
  const text = await res.text();
  return { status: res.status, headers: res.headers, body: text === '' ? null : JSON.parse(text) };
}

/** A node:http server on a free 127.0.0.1 port; returns its base URL and a stop function. */
export async function listen(handler) {
  const server = http.createServer(handler);
  server.keepAliveTimeout = 1000;
  await new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', resolve);
  });
  const { port } = server.address();
  return {
    server,
    port,
    origin: `http://127.0.0.1:${port}`,
    stop: () => new Promise((resolve) => {
      server.closeAllConnections?.();
      server.close(() => resolve());
    }),
  };
}

/** Runs a command to its end; resolves with {code, output}. */
export function run(cmd, args, { env = {}, timeoutMs = 300000 } = {}) {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    child.stdout.on('data', (d) => { output += d; });
    child.stderr.on('data', (d) => { output += d; });
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, output });
    });
  });
}

export function tempDir(name) {
  return fs.mkdtempSync(path.join(os.tmpdir(), `node-host-${name}-`));
}

/** Starts a node script that prints `listening X` once ready; resolves with X and a stop function. */
export async function startScript(script, args = [], env = {}) {
  const child = spawn(process.execPath, [script, ...args], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  child.stderr.on('data', (d) => { output += d; });
  const ready = await new Promise((resolve, reject) => {
    let buf = '';
    child.stdout.on('data', (d) => {
      buf += d;
      const m = /listening (\S+)/.exec(buf);
      if (m) resolve(m[1]);
    });
    child.on('exit', (code) => reject(new Error(`${script} exited with ${code}: ${output}`)));
  });
  const stop = () => new Promise((resolve) => {
    if (child.exitCode !== null) return resolve();
    child.once('exit', resolve);
    child.kill('SIGTERM');
  });
  return { value: ready, stop, output: () => output };
}

/**
 * A forward proxy on a free port: plain http requests whose request line holds the absolute
 * URL, and CONNECT tunnels (which undici uses for every target, https included). `proxied`
 * lists what it carried: the URL, or `CONNECT host:port`.
 */
export async function startForwardProxy() {
  const proxied = [];
  const proxy = await listen((req, res) => {
    proxied.push(req.url);
    const url = new URL(req.url);
    const upstream = http.request({ host: url.hostname, port: url.port, path: url.pathname + url.search, method: req.method, headers: req.headers }, (up) => {
      res.writeHead(up.statusCode, up.headers);
      up.pipe(res);
    });
    upstream.on('error', () => { res.writeHead(502); res.end(); });
    req.pipe(upstream);
  });
  proxy.server.on('connect', (req, client, head) => {
    proxied.push(`CONNECT ${req.url}`);
    const [host, port] = req.url.split(':');
    const upstream = net.connect(Number(port), host, () => {
      client.write('HTTP/1.1 200 Connection Established\r\n\r\n');
      upstream.write(head);
      upstream.pipe(client);
      client.pipe(upstream);
    });
    upstream.on('error', () => client.destroy());
    client.on('error', () => upstream.destroy());
  });
  return { proxy, proxied };
}
