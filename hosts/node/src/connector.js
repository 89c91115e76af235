// The client role (WIT `client.connector`), in its own component instance.

import { ProvisioningError, TransportError } from './errors.js';
import { canonicalKeys } from './config.js';
import { ConsoleLogger, RedactingLogger } from './logger.js';
import { Session } from './session.js';
import { FetchTransport } from './transport.js';
import {
  capabilitiesFromWit, eventToWit, linkToWit, outcomeFromWit, userReadBy, userToWit,
} from './values.js';

const OAUTH2_KEYS = ['token_url', 'client_id', 'client_secret', 'client_secret_env', 'scope', 'audience', 'resource', 'client_auth'];
const KEYS = ['base_url', 'token', 'token_env', 'username', 'password', 'password_env', 'timeout', 'policy', 'auth', ...OAUTH2_KEYS];
/** The camelCase spellings accepted beside the PHP library's keys. */
const CAMEL = {
  baseUrl: 'base_url', tokenEnv: 'token_env', passwordEnv: 'password_env', tokenUrl: 'token_url', clientId: 'client_id',
  clientSecret: 'client_secret', clientSecretEnv: 'client_secret_env', clientAuth: 'client_auth',
};
/** How `scope-fields` names the user's id. */
const SCOPE_ID_FIELD = '@id';

/**
 * The configuration, the same JSON shape as the PHP library's and the Rust host's:
 * @typedef {{base_url: string, token?: string, token_env?: string, username?: string,
 *   password?: string, password_env?: string, timeout?: number, policy?: object|string,
 *   auth?: 'oauth2', token_url?: string, client_id?: string, client_secret?: string,
 *   client_secret_env?: string, scope?: string, audience?: string, resource?: string,
 *   client_auth?: 'client_secret_basic'|'client_secret_post'}} ConnectorConfig
 */

function fromEnv(config, key) {
  if (config[key] === undefined || config[key] === null) return null;
  const value = process.env[String(config[key])];
  if (value === undefined || value === '') throw ProvisioningError.invalidConfig(`environment variable ${config[key]} (${key}) is not set`);
  return value;
}

/**
 * The token endpoint the policy's `oauth2` section names (OAuth 2.0 client credentials: the
 * basic credentials are the client's id and secret, sent only there), as a list of zero or
 * one URL. A policy that does not parse names none; the component reports it at open.
 * @param {string} policyJson
 * @returns {string[]}
 */
function oauth2TokenUrls(policyJson) {
  try {
    const url = policyJson.trim() === '' ? undefined : JSON.parse(policyJson)?.oauth2?.token_url;
    return typeof url === 'string' ? [url.trim()] : [];
  } catch {
    return [];
  }
}

/** @returns {[object, string[]]} the WIT connector-config and the secrets to redact */
function parseConfig(given) {
  if (given === null || typeof given !== 'object' || Array.isArray(given)) throw ProvisioningError.invalidConfig('the configuration is an object');
  const config = canonicalKeys(given, KEYS, CAMEL, 'setting');
  const baseUrl = config.base_url;
  if (typeof baseUrl !== 'string' || baseUrl === '') throw ProvisioningError.invalidConfig('base_url is required');
  let auth;
  let secrets = [];
  const oauth2 = config.auth === 'oauth2';
  if (config.auth !== undefined && config.auth !== null && !oauth2) {
    throw ProvisioningError.invalidConfig("auth is 'oauth2' or left out (a token, basic or none)");
  }
  if (!oauth2) {
    const stray = OAUTH2_KEYS.find((key) => config[key] !== undefined && config[key] !== null);
    if (stray !== undefined) throw ProvisioningError.invalidConfig(`${stray} is an OAuth 2.0 setting: set auth: 'oauth2' too`);
  }
  if (oauth2) {
    [auth, secrets] = oauth2Credentials(config);
  } else if (config.username !== undefined && config.username !== null) {
    const password = fromEnv(config, 'password_env') ?? config.password ?? null;
    if (typeof password !== 'string' || password === '') throw ProvisioningError.invalidConfig('basic authentication needs password or password_env');
    auth = { tag: 'basic', val: { username: String(config.username), password } };
    secrets = [password, Buffer.from(`${config.username}:${password}`).toString('base64')];
  } else {
    const token = fromEnv(config, 'token_env') ?? config.token ?? null;
    if (token !== null) {
      if (typeof token !== 'string' || token === '') throw ProvisioningError.invalidConfig('token must be a non-empty string');
      auth = { tag: 'bearer', val: token };
      secrets = [token];
    } else {
      auth = { tag: 'none' };
    }
  }
  const timeout = config.timeout ?? 30000;
  if (!Number.isInteger(timeout) || timeout < 0 || timeout > 0xffffffff) {
    throw ProvisioningError.invalidConfig('timeout is a whole number of milliseconds (1 to 600000)');
  }
  let policy = config.policy ?? '';
  if (typeof policy === 'object' && policy !== null) {
    policy = Object.keys(policy).length === 0 ? '' : JSON.stringify(policy);
  } else if (typeof policy !== 'string') {
    throw ProvisioningError.invalidConfig('policy is an object or a JSON string');
  }
  if (oauth2) policy = withOAuth2Section(config, policy);
  return [{ baseUrl, auth, timeoutMs: timeout, policyJson: policy }, secrets];
}

/**
 * `auth: 'oauth2'`: the client's id and secret as the WIT's basic credentials (with the
 * policy's `oauth2` section the component sends them only to the token endpoint).
 * @returns {[object, string[]]}
 */
function oauth2Credentials(config) {
  for (const key of ['token', 'token_env', 'username', 'password', 'password_env']) {
    if (config[key] !== undefined && config[key] !== null) {
      throw ProvisioningError.invalidConfig(`auth 'oauth2' takes client_id and client_secret or client_secret_env, not ${key}`);
    }
  }
  const clientId = config.client_id;
  if (typeof clientId !== 'string' || clientId === '') throw ProvisioningError.invalidConfig("auth 'oauth2' needs client_id");
  const secret = fromEnv(config, 'client_secret_env') ?? config.client_secret ?? null;
  if (typeof secret !== 'string' || secret === '') throw ProvisioningError.invalidConfig("auth 'oauth2' needs client_secret or client_secret_env");
  // RFC 6749 §2.3.1: form-encoded, then base64; the logs must not carry it either.
  const encoded = Buffer.from(`${encodeURIComponent(clientId)}:${encodeURIComponent(secret)}`).toString('base64');
  return [{ tag: 'basic', val: { username: clientId, password: secret } }, [secret, encoded]];
}

/** The policy JSON with the `oauth2` section built from the configuration's keys. */
function withOAuth2Section(config, policyJson) {
  if (typeof config.token_url !== 'string' || config.token_url.trim() === '') {
    throw ProvisioningError.invalidConfig("auth 'oauth2' needs token_url, the token endpoint");
  }
  let policy;
  try {
    policy = policyJson === '' ? {} : JSON.parse(policyJson);
  } catch (e) {
    throw ProvisioningError.invalidConfig(`policy is not JSON: ${e.message}`);
  }
  if (policy === null || typeof policy !== 'object' || Array.isArray(policy)) throw ProvisioningError.invalidConfig('policy must be a JSON object');
  if (Object.prototype.hasOwnProperty.call(policy, 'oauth2')) {
    throw ProvisioningError.invalidConfig("the policy's oauth2 section and auth 'oauth2' both set OAuth 2.0: keep the settings in the configuration");
  }
  const section = {};
  for (const key of ['token_url', 'scope', 'audience', 'resource', 'client_auth']) {
    const value = config[key];
    if (value === undefined || value === null) continue;
    if (typeof value !== 'string') throw ProvisioningError.invalidConfig(`${key} must be a string`);
    section[key] = key === 'token_url' ? value.trim() : value;
  }
  return JSON.stringify({ ...policy, oauth2: section });
}

/** The jco http-request as the library's HttpRequest. */
function requestFromWit(wit) {
  return {
    method: wit.method.tag === 'other' ? wit.method.val : wit.method.tag.toUpperCase(),
    url: wit.url,
    headers: wit.headers.map(([n, v]) => [n, v]),
    body: wit.body ?? null,
    timeoutMs: wit.timeoutMs,
  };
}

function responseToWit(response) {
  if (!response || !Number.isInteger(response.status) || response.status < 0 || response.status > 65535) {
    throw new TypeError('a transport returns {status, headers, body} with an integer status');
  }
  const body = response.body ?? new Uint8Array(0);
  return {
    status: response.status,
    headers: (response.headers ?? []).map(([n, v]) => [String(n), String(v)]),
    body: body instanceof Uint8Array ? body : new Uint8Array(body),
  };
}

/**
 * One open connection to one SCIM server under one provisioning policy, in its own
 * component instance. The component makes every provisioning decision; this object carries
 * its HTTP requests out through a transport and hands back plain objects.
 *
 * Errors: ProvisioningError (case, status, scimType, detail, retry); GuestTrap when the guest
 * trapped, after which the next call re-opens a fresh instance with the stored configuration.
 */
export class Connector extends Session {
  #wit;
  #ownsTransport;
  /** The fields `plan` reads (the `scope-fields` export), asked once per instance. @type {string[]} */
  #scopeFields = [];
  /** @type {import('./values.js').ScopeRead} */
  #scopeRead = { fields: new Set(), id: false };

  /** @private */
  constructor(runtime, config, { transport, logger } = {}) {
    const [wit, secrets] = parseConfig(config);
    super(runtime, new RedactingLogger(logger ?? new ConsoleLogger({ level: 'warn' }), secrets));
    this.#wit = wit;
    /** @type {string} */
    this.baseUrl = wit.baseUrl;
    /** @type {import('./transport.js').Transport} */
    // With the policy's `oauth2` section the component asks its token endpoint too.
    this.transport = transport ?? new FetchTransport(wit.baseUrl, {
      logger: this.logger, allowedOrigins: oauth2TokenUrls(wit.policyJson),
    });
    this.#ownsTransport = transport === undefined || transport === null;
    if (typeof this.transport.send !== 'function') throw new TypeError('a transport is an object with a send(request) method (which may return a promise)');
  }

  /**
   * Validates the configuration and opens a connector (WIT `connector.open`). Sends nothing.
   * @param {import('./runtime.js').Runtime} runtime
   * @param {ConnectorConfig} config
   * @param {{transport?: import('./transport.js').Transport, logger?: import('./logger.js').Logger}} [options]
   *   `transport`: default a FetchTransport bound to base_url's origin; `logger`: default console at warn
   * @returns {Promise<Connector>}
   * @throws {ProvisioningError} `invalid-config` (the promise rejects)
   */
  static async open(runtime, config, options = {}) {
    for (const k of Object.keys(options ?? {})) {
      if (k !== 'transport' && k !== 'logger') throw new TypeError(`unknown Connector.open option '${k}'; known: transport, logger`);
    }
    const connector = new Connector(runtime, config, options);
    try {
      await connector.ensureOpen();
    } catch (e) {
      connector.close();
      throw e;
    }
    return connector;
  }

  /** @protected */
  openCall() {
    return ['[static]connector.open', [this.#wit]];
  }

  /** @protected */
  async opened() {
    const fields = Array.from(await this.callWhileOpening('[method]connector.scope-fields', []), String);
    this.#scopeFields = fields;
    this.#scopeRead = { fields: new Set(fields), id: fields.includes(SCOPE_ID_FIELD) };
  }

  /** "Save and Test Credentials": what the server supports. @returns {Promise<import('./values.js').ServerCapabilities>} */
  async testConnection() {
    return capabilitiesFromWit(await this.invoke('[method]connector.test-connection', []));
  }

  /**
   * Brings the remote user in line with one CMS user after `event`. Store the outcome's link
   * (or drop yours when it is null) and pass it next time.
   * @param {import('./values.js').CmsUser} user
   * @param {import('./values.js').UserEvent} event
   * @param {import('./values.js').Link|null} [link]
   * @returns {Promise<import('./values.js').ProvisionOutcome>}
   */
  async provision(user, event, link = null) {
    const args = [userToWit(user), eventToWit(event), linkToWit(link)];
    return outcomeFromWit(await this.invoke('[method]connector.provision', args));
  }

  /**
   * Provisions several users at once; their writes share /Bulk requests where the server has
   * it. Each result is a ProvisionOutcome or a ProvisioningError.
   * @param {import('./values.js').BatchItem[]} items
   * @returns {Promise<{results: Array<import('./values.js').ProvisionOutcome|ProvisioningError>, requests: number, bulkRequests: number}>}
   */
  async provisionBatch(items) {
    if (!Array.isArray(items)) throw new TypeError('provisionBatch takes a list of {user, event, link}');
    const wit = items.map((item, i) => {
      if (item === null || typeof item !== 'object') throw new TypeError(`item ${i} is not {user, event, link}`);
      return { user: userToWit(item.user), event: eventToWit(item.event), link: linkToWit(item.link) };
    });
    const out = await this.invoke('[method]connector.provision-batch', [wit]);
    return {
      results: out.results.map((r) => (r.tag === 'ok' ? outcomeFromWit(r.val) : ProvisioningError.fromWit(r.val))),
      requests: out.requests,
      bulkRequests: out.bulkRequests,
    };
  }

  /**
   * What `provision` would do, decided without sending anything. Only what the scope reads
   * crosses into the component (see scopeFields()): each field passed costs a conversion, a
   * copy to the instance's worker and one into the guest, and `plan` reads no other.
   * @param {import('./values.js').CmsUser} user
   * @param {import('./values.js').UserEvent} event
   * @param {boolean} linked whether the user has a link (a remote user)
   * @returns {Promise<import('./values.js').Plan>}
   */
  async plan(user, event, linked) {
    if (typeof linked !== 'boolean') throw new TypeError('plan(user, event, linked): linked is a boolean');
    // The list kept from the last instance: it is fixed for the connector's lifetime, so a
    // fresh instance (after a trap) answers the same, and bad input is refused before one opens.
    const args = [userToWit(userReadBy(user, this.#scopeRead)), eventToWit(event), linked];
    const p = await this.invoke('[method]connector.plan', args);
    return { action: p.action, reason: p.reason ?? null };
  }

  /**
   * What `plan` reads of a user besides `active` (WIT `connector.scope-fields`, asked once per
   * instance): the names of the CMS fields the provisioning scope reads, each once, and `@id`
   * when it reads the user's id; empty without a scope. plan() passes only these. No request.
   * @returns {Promise<string[]>}
   */
  async scopeFields() {
    await this.ensureOpen();
    return [...this.#scopeFields];
  }

  /** Lists the remote users once (paged), so a first sync matches locally. @returns {Promise<import('./values.js').RemoteListing>} */
  async indexRemoteUsers() {
    const l = await this.invoke('[method]connector.index-remote-users', []);
    return { users: l.users, requests: l.requests };
  }

  /** The listed remote users as a document for importRemoteIndex(); null when nothing was listed. @returns {Promise<string|null>} */
  async exportRemoteIndex() {
    return (await this.invoke('[method]connector.export-remote-index', [])) ?? null;
  }

  /** Loads another connector's listing; returns how many users it holds. @param {string} document @returns {Promise<number>} */
  async importRemoteIndex(document) {
    if (typeof document !== 'string') throw new TypeError('importRemoteIndex takes the string exportRemoteIndex() returned');
    return this.invoke('[method]connector.import-remote-index', [document]);
  }

  /** What the connector learned about the server, as a JSON document to keep with the connection. @returns {Promise<string>} */
  async exportDialect() {
    return this.invoke('[method]connector.export-dialect', []);
  }

  /** Loads a document from exportDialect(); a malformed one is refused with invalid-config. @param {string} document */
  async importDialect(document) {
    if (typeof document !== 'string') throw new TypeError('importDialect takes the string exportDialect() returned');
    await this.invoke('[method]connector.import-dialect', [document]);
  }

  /** The SCIM ids of the remote users indexRemoteUsers() listed (or importRemoteIndex() loaded); empty when nothing was listed. No request. @returns {Promise<string[]>} */
  async remoteUserIds() {
    return Array.from(await this.invoke('[method]connector.remote-user-ids', []), String);
  }

  /** Reads one remote user by its SCIM id; null on 404. @param {string} remoteId @returns {Promise<object|null>} */
  async getUser(remoteId) {
    if (typeof remoteId !== 'string') throw new TypeError('getUser takes the remote id as a string');
    const json = await this.invoke('[method]connector.get-user', [remoteId]);
    return json === undefined || json === null ? null : JSON.parse(json);
  }

  /** The SCIM resource a CMS user maps to. Sends nothing. @returns {Promise<object>} */
  async mapUser(user) {
    const wit = userToWit(user);
    return JSON.parse(await this.invoke('[method]connector.map-user', [wit]));
  }

  /** Closes the connector's instance and the connections of the transport it made (not one it was given). */
  close() {
    super.close();
    if (this.#ownsTransport) this.transport.close();
  }

  /** @protected */
  async serveHttp(witRequest) {
    try {
      return { tag: 'ok', val: responseToWit(await this.transport.send(requestFromWit(witRequest))) };
    } catch (e) {
      if (e instanceof TransportError) return { tag: 'err', val: e.toWit() };
      this.logger.log('error', `the transport failed: ${e?.name}: ${e?.message}`);
      return { tag: 'err', val: new TransportError('other', `the host transport failed: ${e?.message}`).toWit() };
    }
  }

  /** Never shows credentials. */
  toJSON() {
    return { baseUrl: this.baseUrl, auth: this.#wit.auth.tag, timeoutMs: this.#wit.timeoutMs };
  }

  [Symbol.for('nodejs.util.inspect.custom')]() {
    return `Connector ${JSON.stringify(this.toJSON())}`;
  }
}
