// Typings of scim-provisioner-node (src/index.js). Every call that reaches the component
// returns a promise; the component runs in a worker thread, never on the caller's event loop.
/// <reference types="node" />
import type { IncomingMessage, ServerResponse } from 'node:http';

// ---- values ----

export type FieldValue = string | number | boolean | string[] | null;
export type Fields = Record<string, FieldValue> | Map<string, FieldValue> | Array<[string, FieldValue]>;
/** A CMS user: its id, its fields (dates as ISO 8601 strings), and whether it is active (default true). */
export interface CmsUser {
  id: string;
  fields: Fields;
  active?: boolean;
}
/** A CMS user as the component hands it back (the server role's reverse mapping). */
export interface CmsUserOut {
  id: string;
  fields: Record<string, FieldValue>;
  active: boolean;
}
export type UserEvent = 'created' | 'updated' | 'blocked' | 'unblocked' | 'deleted' | 'reconcile';
export declare const USER_EVENTS: readonly UserEvent[];
/** What to keep per provisioned user and pass back next time. */
export interface Link {
  remoteId: string;
  version?: string | null;
  snapshot?: string | null;
}
export interface BatchItem {
  user: CmsUser;
  event: UserEvent;
  link?: Link | null;
}
export type OutcomeAction = 'created' | 'adopted' | 'updated' | 'unchanged' | 'deactivated' | 'deleted' | 'unlinked' | 'skipped';
export interface ProvisionOutcome {
  action: OutcomeAction;
  reason: string | null;
  link: { remoteId: string; version: string | null; snapshot: string | null } | null;
  location: string | null;
  requests: number;
}
export interface Plan {
  action: 'create' | 'update' | 'deactivate' | 'reactivate' | 'delete' | 'skip';
  reason: string | null;
}
export interface ServerCapabilities {
  discovered: boolean;
  patch: boolean;
  bulk: { maxOperations: number; maxPayloadSize: number } | null;
  filterMaxResults: number | null;
  etag: boolean;
  sort: boolean;
  changePassword: boolean;
}
export interface RemoteListing {
  users: number;
  requests: number;
}
export interface BatchResult {
  results: Array<ProvisionOutcome | ProvisioningError>;
  requests: number;
  bulkRequests: number;
}

// ---- configuration: the PHP library's snake_case keys, or their camelCase spellings ----

/** The provisioning policy, the same document as host-example's TOML minus [scim]/[host]. */
export type Policy = Record<string, unknown> | string;

interface ConnectorConfigCommon {
  token?: string;
  username?: string;
  password?: string;
  /** OAuth 2.0 client credentials: the component gets the token; the secret goes only to token_url. */
  auth?: 'oauth2';
  token_url?: string;
  tokenUrl?: string;
  client_id?: string;
  clientId?: string;
  client_secret?: string;
  clientSecret?: string;
  client_secret_env?: string;
  clientSecretEnv?: string;
  scope?: string;
  audience?: string;
  resource?: string;
  client_auth?: 'client_secret_basic' | 'client_secret_post';
  clientAuth?: 'client_secret_basic' | 'client_secret_post';
  /** Milliseconds per request (default 30000). */
  timeout?: number;
  policy?: Policy;
}
export type ConnectorConfig = ConnectorConfigCommon &
  ({ base_url: string; baseUrl?: never } | { baseUrl: string; base_url?: never }) &
  ({ token_env?: string; tokenEnv?: never } | { tokenEnv?: string; token_env?: never }) &
  ({ password_env?: string; passwordEnv?: never } | { passwordEnv?: string; password_env?: never });

interface ServerConfigCommon {
  token?: string;
  policy?: Policy;
}
export type ServerConfig = ServerConfigCommon &
  ({ base_url: string; baseUrl?: never } | { baseUrl: string; base_url?: never }) &
  ({ token_env?: string; tokenEnv?: never } | { tokenEnv?: string; token_env?: never }) &
  ({ max_results?: number; maxResults?: never } | { maxResults?: number; max_results?: never }) &
  ({ bulk_max_operations?: number; bulkMaxOperations?: never } | { bulkMaxOperations?: number; bulk_max_operations?: never }) &
  ({ bulk_max_payload?: number; bulkMaxPayload?: never } | { bulkMaxPayload?: number; bulk_max_payload?: never });

// ---- logging ----

export type Level = 'trace' | 'debug' | 'info' | 'warn' | 'error';
export declare const LEVELS: Readonly<Record<Level, number>>;
export interface Logger {
  log(level: Level, message: string): void;
}
export declare class ConsoleLogger implements Logger {
  constructor(options?: { level?: Level; stream?: { write(text: string): unknown } });
  log(level: Level, message: string): void;
}
export declare class NullLogger implements Logger {
  log(level: Level, message: string): void;
}
export declare class MemoryLogger implements Logger {
  lines: Array<{ level: Level; message: string }>;
  log(level: Level, message: string): void;
}

// ---- errors ----

export type ProvisioningCase = 'invalid-config' | 'missing-attribute' | 'transport' | 'scim' | 'unexpected-response' | 'other';
export type TransportCase = 'denied' | 'invalid-url' | 'cannot-connect' | 'tls' | 'timeout' | 'other';
export type DirectoryCase = 'not-found' | 'conflict' | 'version-mismatch' | 'invalid-filter' | 'unavailable' | 'other';
export type RetryClass = 'permanent' | 'backoff' | 'after-seconds';
export declare const PROVISIONING_CASES: readonly ProvisioningCase[];
export declare const TRANSPORT_CASES: readonly TransportCase[];
export declare const DIRECTORY_CASES: readonly DirectoryCase[];

export declare class ProvisioningError extends Error {
  readonly case: ProvisioningCase;
  readonly status: number | null;
  readonly scimType: string | null;
  readonly detail: string | null;
  readonly retry: RetryClass;
  readonly retryAfterSeconds: number | null;
  readonly transportError: TransportCase | null;
  readonly userId: string | null;
  readonly attribute: string | null;
  isRetryable(): boolean;
  static invalidConfig(message: string): ProvisioningError;
}
export type TrapKind = 'trap' | 'memory' | 'deadline';
export declare class GuestTrap extends Error {
  constructor(kind: TrapKind, guestMessage: string, call?: string, cause?: unknown);
  readonly kind: TrapKind;
  readonly guestMessage: string;
  /** The export that trapped, e.g. `[method]connector.provision`. */
  readonly call: string;
}
export declare class DeadlineExceeded extends GuestTrap {
  readonly kind: 'deadline';
}
export declare class MemoryLimitExceeded extends GuestTrap {
  readonly kind: 'memory';
}
export declare class TransportError extends Error {
  constructor(kase: TransportCase, message?: string);
  readonly case: TransportCase;
  readonly detail: string;
}
export declare class DirectoryError extends Error {
  constructor(kase: DirectoryCase, message?: string);
  readonly case: DirectoryCase;
  readonly detail: string;
}
export declare class RuntimeSetupError extends Error {}

// ---- the runtime ----

export declare const DEFAULT_MEMORY_LIMIT: number;
export declare const DEFAULT_DEADLINE_MS: number;
export interface RuntimeOptions {
  /** Another build of the component, transpiled on first use into genDir (needs jco, a devDependency). */
  wasm?: string;
  /** Where a `wasm` option's transpile is kept (default the package's gen/). */
  genDir?: string;
  /** A transpiled component to load instead of the one the package ships. */
  componentDir?: string;
  /** The most linear memory one instance may hold (default 512 MiB). */
  memoryLimitBytes?: number;
  /** The most guest time between two host answers in one call (default 10 s). */
  deadlineMs?: number;
}
/** The component, compiled once: create one per process and share it. */
export declare class Runtime {
  private constructor();
  static load(options?: RuntimeOptions): Promise<Runtime>;
  readonly wasmPath: string;
  readonly genDir: string;
  readonly memoryLimitBytes: number;
  readonly deadlineMs: number;
  readonly transpileMs: number;
  readonly loadMs: number;
}
export declare function defaultWasm(): string;
export declare function transpile(wasm: string, outDir: string): string;
export declare function limitMemory(bytes: Uint8Array, maxPages: number): Uint8Array;

// ---- transports ----

/** A request the component asks the host to send (its headers include Authorization: never log them). */
export interface HttpRequest {
  method: string;
  url: string;
  headers: Array<[string, string]>;
  body: Uint8Array | null;
  timeoutMs: number;
}
export interface HttpResponse {
  status: number;
  headers: Array<[string, string]>;
  body: Uint8Array | ArrayBuffer | null;
}
/** Carries the component's requests out; throws (or rejects with) TransportError. */
export interface Transport {
  send(request: HttpRequest): HttpResponse | Promise<HttpResponse>;
  close?(): void;
}
export declare const MAX_BODY_BYTES: number;
export declare function originOf(url: string): string | null;
export interface FetchTransportOptions {
  /** A private CA (PEM) to trust besides the system's. */
  ca?: string | Buffer;
  /** The response body cap (default 32 MiB). */
  maxBodyBytes?: number;
  logger?: Logger;
  /** Further URLs whose origins requests may go to (e.g. a token endpoint). */
  allowedOrigins?: string[];
  /** Instead of env HTTP_PROXY / HTTPS_PROXY / NO_PROXY. */
  httpProxy?: string;
  httpsProxy?: string;
  noProxy?: string;
}
/** undici's fetch over an EnvHttpProxyAgent, bound to one origin. */
export declare class FetchTransport implements Transport {
  constructor(baseUrl: string, options?: FetchTransportOptions);
  readonly origin: string;
  readonly origins: Set<string>;
  send(request: HttpRequest): Promise<HttpResponse & { body: Uint8Array }>;
  close(): void;
}

// ---- the client role ----

declare class Session {
  /** 1 after open, one more after each trap. */
  instancesOpened(): number;
  /** Drops the instance and stops its worker; the next call opens a fresh one. */
  close(): void;
}

export declare class Connector extends Session {
  private constructor();
  static open(runtime: Runtime, config: ConnectorConfig, options?: { transport?: Transport; logger?: Logger }): Promise<Connector>;
  readonly baseUrl: string;
  readonly transport: Transport;
  testConnection(): Promise<ServerCapabilities>;
  provision(user: CmsUser, event: UserEvent, link?: Link | null): Promise<ProvisionOutcome>;
  provisionBatch(items: BatchItem[]): Promise<BatchResult>;
  plan(user: CmsUser, event: UserEvent, linked: boolean): Promise<Plan>;
  scopeFields(): Promise<string[]>;
  indexRemoteUsers(): Promise<RemoteListing>;
  exportRemoteIndex(): Promise<string | null>;
  importRemoteIndex(document: string): Promise<number>;
  exportDialect(): Promise<string>;
  importDialect(document: string): Promise<void>;
  remoteUserIds(): Promise<string[]>;
  getUser(remoteId: string): Promise<Record<string, unknown> | null>;
  mapUser(user: CmsUser): Promise<Record<string, unknown>>;
  toJSON(): { baseUrl: string; auth: 'none' | 'bearer' | 'basic'; timeoutMs: number };
}

// ---- the server role ----

export type ResourceKind = 'user' | 'group';
export interface StoredResource {
  id: string;
  version: string;
  created: string;
  lastModified: string;
  json: string;
}
export interface Search {
  filter: string | null;
  startIndex: number;
  count: number;
  sortBy: string | null;
  sortDescending: boolean;
}
export interface QueryPage {
  totalResults: number;
  resources: StoredResource[];
}
type MaybePromise<T> = T | Promise<T>;
/** Where the server role keeps users and groups; each method may be async. Throw DirectoryError. */
export interface Directory {
  get(kind: ResourceKind, id: string): MaybePromise<StoredResource | null>;
  query(kind: ResourceKind, search: Search): MaybePromise<QueryPage>;
  create(kind: ResourceKind, json: string, cms: CmsUserOut | null): MaybePromise<StoredResource>;
  replace(kind: ResourceKind, id: string, json: string, cms: CmsUserOut | null, ifVersion: string | null): MaybePromise<StoredResource>;
  delete(kind: ResourceKind, id: string): MaybePromise<boolean>;
}
export interface ServerRequest {
  method: string;
  /** Below the base URL, e.g. `/Users/2819c223`. */
  path: string;
  /** Raw, without `?`. */
  query?: string;
  headers?: Array<[string, string]> | string[] | Record<string, string | string[]>;
  body?: string | Uint8Array | ArrayBuffer | null;
}
export declare class Response {
  constructor(status: number, headers: Array<[string, string]>, body: Buffer);
  readonly status: number;
  readonly headers: Array<[string, string]>;
  readonly body: Buffer;
  header(name: string): string | null;
  json(): unknown;
  send(res: ServerResponse): void;
  static error(status: number, detail: string): Response;
}
export declare class ScimServer extends Session {
  private constructor();
  static open(runtime: Runtime, config: ServerConfig, directory: Directory, options?: { logger?: Logger }): Promise<ScimServer>;
  /** The base URL's path, e.g. `/scim/v2`. */
  readonly basePath: string;
  maxPayload(): number;
  handle(request: ServerRequest): Promise<Response>;
  listener(options?: { basePath?: string }): (req: IncomingMessage, res: ServerResponse) => void;
}

/** Several ScimServers over one directory; requests go to the member with the fewest in flight. */
export declare class ScimServerPool {
  private constructor();
  static open(runtime: Runtime, config: ServerConfig, directory: Directory, options?: { size?: number; logger?: Logger }): Promise<ScimServerPool>;
  readonly basePath: string;
  readonly size: number;
  maxPayload(): number;
  handle(request: ServerRequest): Promise<Response>;
  listener(options?: { basePath?: string }): (req: IncomingMessage, res: ServerResponse) => void;
  instancesOpened(): number;
  close(): void;
}

// ---- the filter engine ----

export interface SelectSearch {
  filter?: string | null;
  startIndex?: number;
  count?: number;
  sortBy?: string | null;
  sortDescending?: boolean;
}
export declare class Selector extends Session {
  constructor(runtime: Runtime, options?: { logger?: Logger });
  select(resources: Array<string | Record<string, unknown>>, search: SelectSearch): Promise<{ totalResults: number; indices: number[] }>;
}
