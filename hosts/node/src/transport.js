// The http-client import's default transport. The WIT's `send` is synchronous and Node's
// network I/O is not: a worker thread carries the exchange out while this thread blocks in
// Atomics.wait on a SharedArrayBuffer (the pattern of preview2-shim's synckit), then takes
// the answer with receiveMessageOnPort.

import { MessageChannel, Worker, receiveMessageOnPort } from 'node:worker_threads';

import { ProvisioningError, TransportError } from './errors.js';

/** The default response body cap. */
export const MAX_BODY_BYTES = 32 * 1024 * 1024;
/** How long past a request's own timeout the main thread waits for the worker. */
const WORKER_GRACE_MS = 5000;

/**
 * A request the component asks the host to send. Headers include Authorization: a transport
 * never logs them.
 * @typedef {{method: string, url: string, headers: Array<[string, string]>, body: Uint8Array|null, timeoutMs: number}} HttpRequest
 * @typedef {{status: number, headers: Array<[string, string]>, body: Uint8Array}} HttpResponse
 * @typedef {{send(request: HttpRequest): HttpResponse}} Transport  synchronous; throws TransportError
 */

/** scheme, host, port of an absolute http(s) URL; null for anything else. */
export function originOf(url) {
  let u;
  try {
    u = new URL(url);
  } catch {
    return null;
  }
  if (u.protocol !== 'http:' && u.protocol !== 'https:') return null;
  if (u.hostname === '') return null;
  const port = u.port === '' ? (u.protocol === 'https:' ? 443 : 80) : Number(u.port);
  return `${u.protocol.slice(0, -1)}://${u.hostname.toLowerCase()}:${port}`;
}

/** The URL without user info (which could hold a password). */
export function safeUrl(url) {
  return String(url).replace(/^([a-z][a-z0-9+.-]*:\/\/)[^/@]*@/i, '$1');
}

/**
 * Node's http/https from a worker thread: TLS verified (option `ca` for a private CA), the
 * request's own timeout, no redirects (a 302 is returned as data), only the configured origin
 * (anything else is `denied`), response bodies capped (32 MiB; more is `other`). Logs method,
 * URL, status and time only, never a header value or a body.
 */
export class NodeHttpTransport {
  #worker = null;
  #port = null;
  #flag = null;
  #next = 1;

  /**
   * @param {string} baseUrl the SCIM base URL; its origin is the only one requests may go to
   * @param {{ca?: string|Buffer, maxBodyBytes?: number, logger?: import('./logger.js').Logger}} [options]
   */
  constructor(baseUrl, { ca, maxBodyBytes = MAX_BODY_BYTES, logger } = {}) {
    const origin = originOf(baseUrl);
    if (origin === null) throw ProvisioningError.invalidConfig(`base_url ${safeUrl(baseUrl)} is not an absolute http(s) URL`);
    if (!Number.isInteger(maxBodyBytes) || maxBodyBytes < 1) throw new TypeError('maxBodyBytes must be a positive whole number');
    this.origin = origin;
    this.ca = ca === undefined ? undefined : String(ca);
    this.maxBodyBytes = maxBodyBytes;
    this.logger = logger ?? null;
  }

  /**
   * Sends one request and blocks until the answer (or the timeout).
   * @param {HttpRequest} request
   * @returns {HttpResponse}
   * @throws {TransportError}
   */
  send(request) {
    const origin = originOf(request.url);
    if (origin === null) throw new TransportError('invalid-url', `only absolute http and https URLs are allowed: ${safeUrl(request.url)}`);
    if (origin !== this.origin) throw new TransportError('denied', `${origin} is not the configured SCIM origin`);
    for (const [name, value] of request.headers) {
      if (/[\r\n]/.test(name + value)) throw new TransportError('other', `header ${name} holds a line break`);
    }
    const timeoutMs = Math.max(1, request.timeoutMs >>> 0);
    const what = `${request.method} ${safeUrl(request.url)}`;
    const started = performance.now();
    this.#ensureWorker();
    const id = this.#next++;
    Atomics.store(this.#flag, 0, 0);
    this.#port.postMessage({ id, method: request.method, url: request.url, headers: request.headers, body: request.body ?? null, timeoutMs });
    const waited = Atomics.wait(this.#flag, 0, 0, timeoutMs + WORKER_GRACE_MS);
    const received = receiveMessageOnPort(this.#port);
    const ms = Math.round(performance.now() - started);
    if (waited === 'timed-out' || received === undefined || received.message.id !== id) {
      // The worker did not answer: it is stuck or gone. Start a new one next time.
      this.close();
      this.logger?.log('warn', `${what}: the transport worker did not answer within ${timeoutMs + WORKER_GRACE_MS} ms`);
      throw new TransportError('timeout');
    }
    const { response, error } = received.message;
    if (error) {
      this.logger?.log(error.overflow ? 'warn' : 'info', `${what}: ${error.case} after ${ms} ms${error.message ? ` (${error.message})` : ''}`);
      throw new TransportError(error.case, error.case === 'timeout' ? '' : error.message);
    }
    this.logger?.log('debug', `${what} -> ${response.status} (${ms} ms)`);
    return response;
  }

  /** Stops the worker (it is started again on the next send). */
  close() {
    if (this.#worker) {
      this.#worker.terminate();
      this.#port.close();
    }
    this.#worker = null;
    this.#port = null;
  }

  #ensureWorker() {
    if (this.#worker) return;
    const { port1, port2 } = new MessageChannel();
    this.#flag = new Int32Array(new SharedArrayBuffer(4));
    this.#worker = new Worker(new URL('./http-worker.js', import.meta.url), {
      workerData: { port: port2, flag: this.#flag.buffer, ca: this.ca, maxBodyBytes: this.maxBodyBytes },
      transferList: [port2],
    });
    // Neither keeps the process alive.
    this.#worker.unref();
    port1.unref();
    this.#port = port1;
  }
}
