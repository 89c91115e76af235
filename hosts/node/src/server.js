// The server role (WIT `server.scim-server`) over a directory the host serves.

import { canonicalKeys } from './config.js';
import { DirectoryError, GuestTrap, ProvisioningError } from './errors.js';
import { ConsoleLogger, RedactingLogger } from './logger.js';
import { Session } from './session.js';
import { headerPairs, headerValue, toBytes, userFromWit } from './values.js';

const KEYS = ['base_url', 'token', 'token_env', 'max_results', 'bulk_max_operations', 'bulk_max_payload', 'policy'];
/** The camelCase spellings accepted beside the PHP library's keys. */
const CAMEL = {
  baseUrl: 'base_url', tokenEnv: 'token_env', maxResults: 'max_results', bulkMaxOperations: 'bulk_max_operations', bulkMaxPayload: 'bulk_max_payload',
};
const KINDS = ['user', 'group'];

/**
 * @typedef {{base_url: string, token?: string, token_env?: string, max_results?: number,
 *   bulk_max_operations?: number, bulk_max_payload?: number, policy?: object|string}} ServerConfig
 * @typedef {{id: string, version: string, created: string, lastModified: string, json: string}} StoredResource
 * @typedef {{filter: string|null, startIndex: number, count: number, sortBy: string|null, sortDescending: boolean}} Search
 * @typedef {{totalResults: number, resources: StoredResource[]}} QueryPage
 * @typedef {'user'|'group'} ResourceKind
 * @typedef {{
 *   get(kind: ResourceKind, id: string): StoredResource|null|Promise<StoredResource|null>,
 *   query(kind: ResourceKind, search: Search): QueryPage|Promise<QueryPage>,
 *   create(kind: ResourceKind, json: string, cms: import('./values.js').CmsUser|null): StoredResource|Promise<StoredResource>,
 *   replace(kind: ResourceKind, id: string, json: string, cms: import('./values.js').CmsUser|null, ifVersion: string|null): StoredResource|Promise<StoredResource>,
 *   delete(kind: ResourceKind, id: string): boolean|Promise<boolean>,
 * }} Directory  each method may return its value or a promise of it; throws (or rejects with) DirectoryError
 */

function parseConfig(given) {
  if (given === null || typeof given !== 'object' || Array.isArray(given)) throw ProvisioningError.invalidConfig('the server configuration is an object');
  const config = canonicalKeys(given, KEYS, CAMEL, 'server setting');
  const baseUrl = config.base_url;
  if (typeof baseUrl !== 'string' || baseUrl === '') throw ProvisioningError.invalidConfig('base_url is required');
  let token = config.token ?? null;
  if (config.token_env !== undefined && config.token_env !== null) {
    token = process.env[String(config.token_env)];
    if (token === undefined || token === '') throw ProvisioningError.invalidConfig(`environment variable ${config.token_env} (token_env) is not set`);
  }
  if (typeof token !== 'string' || token === '') throw ProvisioningError.invalidConfig('token or token_env is required: the bearer token clients must present');
  const int = (key, dflt, max) => {
    const v = config[key] ?? dflt;
    if (!Number.isInteger(v) || v < 1 || v > max) throw ProvisioningError.invalidConfig(`${key} must be a whole number from 1 to ${max}`);
    return v;
  };
  let policy = config.policy ?? '';
  if (typeof policy === 'object' && policy !== null) policy = Object.keys(policy).length === 0 ? '' : JSON.stringify(policy);
  else if (typeof policy !== 'string') throw ProvisioningError.invalidConfig('policy is an object or a JSON string');
  return {
    baseUrl,
    bearerToken: token,
    maxResults: int('max_results', 200, 0xffffffff),
    bulkMaxOperations: int('bulk_max_operations', 100, 0xffffffff),
    bulkMaxPayload: BigInt(int('bulk_max_payload', 1024 * 1024, Number.MAX_SAFE_INTEGER)),
    policyJson: policy,
  };
}

function storedToWit(r) {
  if (!r || typeof r.id !== 'string' || typeof r.json !== 'string') throw new TypeError('a directory returns {id, version, created, lastModified, json} with string fields');
  return { id: r.id, version: String(r.version), created: String(r.created), lastModified: String(r.lastModified), json: r.json };
}

/** The SCIM server's answer (WIT `server-response`). */
export class Response {
  /** @param {number} status @param {Array<[string, string]>} headers @param {Buffer} body */
  constructor(status, headers, body) {
    this.status = status;
    this.headers = headers;
    this.body = body;
  }

  /** The first value of a header, compared case-insensitively. */
  header(name) {
    return headerValue(this.headers, name);
  }

  /** The body parsed as JSON (null when empty). */
  json() {
    return this.body.length === 0 ? null : JSON.parse(this.body.toString('utf8'));
  }

  /** A SCIM error response (RFC 7644 §3.12), for failures outside the component such as a trap. */
  static error(status, detail) {
    const body = JSON.stringify({ schemas: ['urn:ietf:params:scim:api:messages:2.0:Error'], status: String(status), detail });
    return new Response(status, [['Content-Type', 'application/scim+json']], Buffer.from(body));
  }

  /** Sends status, headers and body through a node:http ServerResponse. */
  send(res) {
    const headers = this.headers.filter(([n]) => n.toLowerCase() !== 'content-length');
    res.writeHead(this.status, [...headers.flat(), 'Content-Length', String(this.body.length)]);
    res.end(this.body);
  }
}

/**
 * A SCIM 2.0 server for the CMS over a Directory the host serves, in its own component
 * instance. `handle()` never fails for SCIM reasons (every error is a SCIM error response);
 * it throws GuestTrap when the guest trapped, after which the next request is served by a
 * fresh instance.
 */
export class ScimServer extends Session {
  #wit;
  #directory;

  /** @private */
  constructor(runtime, config, directory, logger) {
    const wit = parseConfig(config);
    for (const f of ['get', 'query', 'create', 'replace', 'delete']) {
      if (typeof directory?.[f] !== 'function') throw new TypeError(`the directory has no ${f}() method`);
    }
    super(runtime, new RedactingLogger(logger ?? new ConsoleLogger({ level: 'warn' }), [wit.bearerToken]));
    this.#wit = wit;
    this.#directory = directory;
    /** The base URL's path, e.g. `/scim/v2`. */
    this.basePath = new URL(wit.baseUrl, 'http://localhost').pathname.replace(/\/+$/, '');
  }

  /**
   * Validates the configuration and opens a server.
   * @param {import('./runtime.js').Runtime} runtime
   * @param {ServerConfig} config
   * @param {Directory} directory
   * @param {{logger?: import('./logger.js').Logger}} [options]
   * @returns {Promise<ScimServer>}
   */
  static async open(runtime, config, directory, options = {}) {
    for (const k of Object.keys(options ?? {})) {
      if (k !== 'logger') throw new TypeError(`unknown ScimServer.open option '${k}'; known: logger`);
    }
    const server = new ScimServer(runtime, config, directory, options?.logger);
    try {
      await server.ensureOpen();
    } catch (e) {
      server.close();
      throw e;
    }
    return server;
  }

  /** The largest request body the server accepts; read one byte more so it can answer 413. */
  maxPayload() {
    return Number(this.#wit.bulkMaxPayload);
  }

  /** @protected */
  openCall() {
    return ['[static]scim-server.open', [this.#wit]];
  }

  /**
   * Answers one request. Requests are answered one at a time, in the order they came (the
   * instance is not re-entrant); while one waits for the directory, the event loop is free.
   * @param {{method: string, path: string, query?: string, headers?: Array<[string, string]>|object, body?: string|Uint8Array}} request
   *   `path` below the base URL (`/Users/2819c223`), `query` raw without `?`
   * @returns {Promise<Response>}
   * @throws {GuestTrap} (the promise rejects)
   */
  async handle(request) {
    if (request === null || typeof request !== 'object') throw new TypeError('handle takes {method, path, query, headers, body}');
    if (typeof request.method !== 'string' || typeof request.path !== 'string') throw new TypeError('a request has a string method and path');
    const wit = {
      method: request.method,
      path: request.path,
      query: request.query ?? '',
      headers: headerPairs(request.headers),
      body: toBytes(request.body, 'request body'),
    };
    const out = await this.invoke('[method]scim-server.handle', [wit]);
    return new Response(out.status, out.headers, Buffer.from(out.body.buffer, out.body.byteOffset, out.body.byteLength));
  }

  /**
   * A node:http request listener serving SCIM under `basePath` (default: the base URL's
   * path); other paths get 404. A trap is answered 500 (and logged); the next request works.
   * Requests arriving together are queued onto the instance (see handle()).
   * @param {{basePath?: string}} [options]
   * @returns {(req: import('node:http').IncomingMessage, res: import('node:http').ServerResponse) => void}
   */
  listener({ basePath = this.basePath } = {}) {
    return listenerFor(this, basePath);
  }

  /** @protected */
  serveHttp() {
    return { tag: 'err', val: { tag: 'denied', val: 'the server role sends no HTTP requests' } };
  }

  /** @protected */
  async serveDirectory(func, args) {
    const kind = args[0];
    if (!KINDS.includes(kind)) throw new TypeError(`the component asked the directory about an unknown resource kind ${kind}`);
    const d = this.#directory;
    try {
      let val;
      switch (func) {
        case 'get': {
          const r = await d.get(kind, args[1]);
          val = r === null || r === undefined ? undefined : storedToWit(r);
          break;
        }
        case 'query': {
          const s = args[1];
          const page = await d.query(kind, {
            filter: s.filter ?? null, startIndex: s.startIndex, count: s.count, sortBy: s.sortBy ?? null, sortDescending: s.sortDescending,
          });
          val = { totalResults: BigInt(page.totalResults), resources: page.resources.map(storedToWit) };
          break;
        }
        case 'create':
          val = storedToWit(await d.create(kind, args[1], args[2] ? userFromWit(args[2]) : null));
          break;
        case 'replace':
          val = storedToWit(await d.replace(kind, args[1], args[2], args[3] ? userFromWit(args[3]) : null, args[4] ?? null));
          break;
        case 'delete':
          val = Boolean(await d.delete(kind, args[1]));
          break;
        default:
          throw new TypeError(`unknown directory function ${func}`);
      }
      return { tag: 'ok', val };
    } catch (e) {
      if (e instanceof DirectoryError) return { tag: 'err', val: e.toWit() };
      this.logger.log('error', `directory ${func}: ${e?.name}: ${e?.message}`);
      const kase = e?.code === 'SQLITE_BUSY' || e?.code === 'SQLITE_LOCKED' ? 'unavailable' : 'other';
      return { tag: 'err', val: new DirectoryError(kase, String(e?.message)).toWit() };
    }
  }

  toJSON() {
    return { baseUrl: this.#wit.baseUrl, maxResults: this.#wit.maxResults };
  }

  [Symbol.for('nodejs.util.inspect.custom')]() {
    return `ScimServer ${JSON.stringify(this.toJSON())}`;
  }
}

/**
 * A node:http request listener over anything with handle(), maxPayload() and a logger: a
 * ScimServer or a ScimServerPool.
 */
function listenerFor(server, basePath) {
  const base = basePath.replace(/\/+$/, '');
  const limit = server.maxPayload() + 1;
  return (req, res) => {
    const chunks = [];
    let size = 0;
    req.on('data', (chunk) => {
      if (size >= limit) return; // keep reading (and dropping) so the client gets its answer
      const take = chunk.subarray(0, limit - size);
      chunks.push(take);
      size += take.length;
    });
    req.on('end', async () => {
      const [rawPath, query = ''] = (req.url ?? '/').split(/\?(.*)/s, 2);
      if (rawPath !== base && !rawPath.startsWith(`${base}/`)) {
        Response.error(404, `nothing is served at ${rawPath}`).send(res);
        return;
      }
      let response;
      try {
        response = await server.handle({
          method: req.method ?? 'GET',
          path: rawPath.slice(base.length) || '/',
          query,
          headers: req.rawHeaders,
          body: Buffer.concat(chunks),
        });
      } catch (e) {
        server.logger.log('error', `answering ${req.method} ${rawPath}: ${e.message}`);
        response = Response.error(500, e instanceof GuestTrap ? 'internal error (the component trapped; the next request is served afresh)' : 'internal error');
      }
      try {
        response.send(res);
      } catch (e) {
        // The client went away meanwhile: nothing to answer, nothing to crash.
        server.logger.log('info', `answering ${req.method} ${rawPath}: ${e.message}`);
        res.destroy();
      }
    });
    req.on('error', () => res.destroy());
  };
}

/**
 * Several ScimServers over one directory, each with its instance in its own worker thread:
 * requests that arrive together are spread over them (each to the member with the fewest in
 * flight), so one request's guest work or directory wait does not hold the others. The
 * directory must then accept calls from several requests at once (SqliteDirectory's writes
 * are each one transaction on this thread; a `pg` directory uses its pool's transactions).
 */
export class ScimServerPool {
  #members;

  /** @private */
  constructor(members) {
    this.#members = members.map((server) => ({ server, inFlight: 0 }));
    const first = members[0];
    this.basePath = first.basePath;
    /** @protected */
    this.logger = first.logger;
  }

  /**
   * Opens `size` servers (default 2) with the same configuration over the same directory.
   * @param {import('./runtime.js').Runtime} runtime
   * @param {ServerConfig} config
   * @param {Directory} directory
   * @param {{size?: number, logger?: import('./logger.js').Logger}} [options]
   * @returns {Promise<ScimServerPool>}
   */
  static async open(runtime, config, directory, { size = 2, logger } = {}) {
    if (!Number.isInteger(size) || size < 1 || size > 64) throw new TypeError('size is a whole number of servers from 1 to 64');
    const members = [];
    try {
      for (let i = 0; i < size; i++) members.push(await ScimServer.open(runtime, config, directory, logger === undefined ? {} : { logger }));
    } catch (e) {
      for (const m of members) m.close();
      throw e;
    }
    return new ScimServerPool(members);
  }

  /** How many servers the pool holds. */
  get size() {
    return this.#members.length;
  }

  /** The largest request body the servers accept. */
  maxPayload() {
    return this.#members[0].server.maxPayload();
  }

  /**
   * Answers one request on the member with the fewest requests in flight.
   * @returns {Promise<Response>}
   */
  async handle(request) {
    const member = this.#members.reduce((a, b) => (b.inFlight < a.inFlight ? b : a));
    member.inFlight++;
    try {
      return await member.server.handle(request);
    } finally {
      member.inFlight--;
    }
  }

  /** A node:http listener over the pool (see ScimServer.listener). */
  listener({ basePath = this.basePath } = {}) {
    return listenerFor(this, basePath);
  }

  /** Instances opened by every member (one each, one more after each trap). */
  instancesOpened() {
    return this.#members.reduce((n, m) => n + m.server.instancesOpened(), 0);
  }

  /** Closes every member. */
  close() {
    for (const m of this.#members) m.server.close();
  }
}
