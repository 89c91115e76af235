// The http-client import's default transport: undici's fetch over an EnvHttpProxyAgent, so
// the proxy environment variables (HTTP_PROXY, HTTPS_PROXY, NO_PROXY, lower case too) are
// honoured as curl and Python's requests honour them. It runs on the calling thread's event
// loop: the guest's worker blocks for the answer, this thread does not (src/guest.js).

import { EnvHttpProxyAgent, fetch } from 'undici';

import { ProvisioningError, TransportError } from './errors.js';

/** The default response body cap. */
export const MAX_BODY_BYTES = 32 * 1024 * 1024;

/**
 * A request the component asks the host to send. Headers include Authorization: a transport
 * never logs them.
 * @typedef {{method: string, url: string, headers: Array<[string, string]>, body: Uint8Array|null, timeoutMs: number}} HttpRequest
 * @typedef {{status: number, headers: Array<[string, string]>, body: Uint8Array}} HttpResponse
 * @typedef {{send(request: HttpRequest): HttpResponse|Promise<HttpResponse>, close?(): void}} Transport  throws (or rejects with) TransportError
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

/** Headers the host sets itself (Host, Content-Length) or that fetch refuses (hop-by-hop). */
const HOST_HEADERS = new Set(['host', 'content-length', 'connection', 'keep-alive', 'transfer-encoding', 'upgrade', 'expect', 'proxy-connection', 'proxy-authorization']);

const CONNECT = new Set(['ECONNREFUSED', 'ENOTFOUND', 'EAI_AGAIN', 'EAI_FAIL', 'EAI_NONAME', 'EHOSTUNREACH', 'ENETUNREACH', 'ECONNRESET', 'EPIPE', 'ECONNABORTED',
  'EADDRNOTAVAIL', 'ENETDOWN', 'EHOSTDOWN', 'UND_ERR_CONNECT_TIMEOUT', 'UND_ERR_SOCKET', 'UND_ERR_CLOSED']);
const TLS = new Set(['CERT_HAS_EXPIRED', 'CERT_NOT_YET_VALID', 'DEPTH_ZERO_SELF_SIGNED_CERT', 'SELF_SIGNED_CERT_IN_CHAIN', 'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'UNABLE_TO_GET_ISSUER_CERT', 'UNABLE_TO_GET_ISSUER_CERT_LOCALLY', 'CERT_UNTRUSTED', 'CERT_REVOKED', 'CERT_REJECTED', 'HOSTNAME_MISMATCH', 'ERR_TLS_CERT_ALTNAME_INVALID',
  'CERT_SIGNATURE_FAILURE', 'INVALID_CA', 'PATH_LENGTH_EXCEEDED', 'INVALID_PURPOSE']);

/** The transport-error case of what fetch threw: its cause chain holds the socket's code. */
function classify(err) {
  for (let e = err, depth = 0; e && depth < 5; e = e.cause, depth++) {
    if (e.name === 'TimeoutError') return 'timeout';
    const code = String(e.code ?? '');
    if (TLS.has(code) || code.startsWith('ERR_TLS_') || code.startsWith('ERR_SSL_') || /^(ERR_OSSL|SSL_|TLS_)/.test(code)) return 'tls';
    if (CONNECT.has(code)) return 'cannot-connect';
    if (code === 'ERR_INVALID_URL' || code === 'ERR_INVALID_PROTOCOL') return 'invalid-url';
  }
  return 'other';
}

/** The innermost message of an error's cause chain (fetch's own is only "fetch failed"). */
function rootMessage(err) {
  let e = err;
  for (let depth = 0; e?.cause && depth < 5; depth++) e = e.cause;
  return String(e?.message ?? err?.message ?? err);
}

/**
 * undici's fetch (a pinned dependency, not Node's bundled copy, so the dispatcher and fetch
 * are the same version) over an EnvHttpProxyAgent: HTTP_PROXY / HTTPS_PROXY / NO_PROXY from
 * the environment (or the options), TLS verified (`rejectUnauthorized` set explicitly, so
 * NODE_TLS_REJECT_UNAUTHORIZED=0 does not switch it off; option `ca` for a private CA), the
 * request's own timeout over the whole exchange, no redirects (a 302 is returned as data),
 * only the configured origin (anything else is `denied`, before a connection is made), and
 * response bodies capped (32 MiB; more is `other`). Logs method, URL, status and time only,
 * never a header value or a body.
 */
export class FetchTransport {
  /** The EnvHttpProxyAgent's options; the agent itself is made on the first request. */
  #agentOptions;
  #dispatcher = null;

  /**
   * @param {string} baseUrl the SCIM base URL; its origin is the only one requests may go to
   * @param {{ca?: string|Buffer, maxBodyBytes?: number, logger?: import('./logger.js').Logger,
   *   allowedOrigins?: string[], httpProxy?: string, httpsProxy?: string, noProxy?: string}} [options]
   *   `allowedOrigins`: further URLs whose origins requests may go to (e.g. a token endpoint);
   *   `httpProxy`/`httpsProxy`/`noProxy`: instead of the environment's
   */
  constructor(baseUrl, { ca, maxBodyBytes = MAX_BODY_BYTES, logger, allowedOrigins = [], httpProxy, httpsProxy, noProxy } = {}) {
    const origin = originOf(baseUrl);
    if (origin === null) throw ProvisioningError.invalidConfig(`base_url ${safeUrl(baseUrl)} is not an absolute http(s) URL`);
    if (!Number.isInteger(maxBodyBytes) || maxBodyBytes < 1) throw new TypeError('maxBodyBytes must be a positive whole number');
    /** The configured origin. */
    this.origin = origin;
    /** Every origin requests may go to. @type {Set<string>} */
    this.origins = new Set([origin]);
    for (const url of allowedOrigins) {
      const extra = originOf(url);
      if (extra === null) throw ProvisioningError.invalidConfig(`allowed origin ${safeUrl(url)} is not an absolute http(s) URL`);
      this.origins.add(extra);
    }
    this.maxBodyBytes = maxBodyBytes;
    this.logger = logger ?? null;
    const tls = { rejectUnauthorized: true, ...(ca === undefined ? {} : { ca: String(ca) }) };
    const proxies = Object.fromEntries(Object.entries({ httpProxy, httpsProxy, noProxy }).filter(([, v]) => v !== undefined));
    // connect: direct connections; requestTls: the TLS inside a proxy's CONNECT tunnel.
    this.#agentOptions = { ...proxies, connect: tls, requestTls: tls, proxyTls: { rejectUnauthorized: true } };
  }

  /**
   * Sends one request.
   * @param {HttpRequest} request
   * @returns {Promise<HttpResponse>}
   * @throws {TransportError} (the promise rejects)
   */
  async send(request) {
    const origin = originOf(request.url);
    if (origin === null) throw new TransportError('invalid-url', `only absolute http and https URLs are allowed: ${safeUrl(request.url)}`);
    if (!this.origins.has(origin)) throw new TransportError('denied', `${origin} is not the configured SCIM origin`);
    const headers = [];
    for (const [name, value] of request.headers) {
      if (/[\r\n]/.test(name + value)) throw new TransportError('other', `header ${name} holds a line break`);
      if (!HOST_HEADERS.has(name.toLowerCase())) headers.push([name, value]);
    }
    const timeoutMs = Math.max(1, request.timeoutMs >>> 0);
    const what = `${request.method} ${safeUrl(request.url)}`;
    const started = performance.now();
    const signal = AbortSignal.timeout(timeoutMs);
    let response;
    let body;
    try {
      response = await fetch(request.url, {
        method: request.method,
        headers,
        body: request.body === null || request.body === undefined ? undefined : request.body,
        redirect: 'manual',
        signal,
        dispatcher: (this.#dispatcher ??= new EnvHttpProxyAgent(this.#agentOptions)),
      });
      body = await this.#readCapped(response);
    } catch (e) {
      if (e instanceof TransportError) {
        this.logger?.log('warn', `${what}: ${e.message}`);
        throw e;
      }
      const kase = signal.aborted ? 'timeout' : classify(e);
      const ms = Math.round(performance.now() - started);
      this.logger?.log('info', `${what}: ${kase} after ${ms} ms (${rootMessage(e)})`);
      throw new TransportError(kase, kase === 'timeout' ? '' : rootMessage(e));
    }
    this.logger?.log('debug', `${what} -> ${response.status} (${Math.round(performance.now() - started)} ms)`);
    return { status: response.status, headers: [...response.headers], body };
  }

  /** Closes the pooled connections (a later send opens new ones). */
  close() {
    const old = this.#dispatcher;
    this.#dispatcher = null;
    old?.close().catch(() => {});
  }

  /** The body, or a TransportError once it passes the cap (the rest is not read). */
  async #readCapped(response) {
    const declared = Number(response.headers.get('content-length'));
    if (Number.isFinite(declared) && declared > this.maxBodyBytes) {
      await response.body?.cancel().catch(() => {});
      throw new TransportError('other', `the response body is larger than ${this.maxBodyBytes} bytes`);
    }
    if (response.body === null) return new Uint8Array(0);
    const chunks = [];
    let size = 0;
    for await (const chunk of response.body) {
      size += chunk.byteLength;
      if (size > this.maxBodyBytes) {
        throw new TransportError('other', `the response body is larger than ${this.maxBodyBytes} bytes`);
      }
      chunks.push(chunk);
    }
    const out = new Uint8Array(size);
    let at = 0;
    for (const c of chunks) {
      out.set(c, at);
      at += c.byteLength;
    }
    return out;
  }
}
