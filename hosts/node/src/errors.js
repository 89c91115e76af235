// The errors of the Node host, mirroring the PHP library's exceptions.

/** @typedef {'permanent'|'backoff'|'after-seconds'} RetryClass */

/** The provisioning-error cases of the WIT. */
export const PROVISIONING_CASES = ['invalid-config', 'missing-attribute', 'transport', 'scim', 'unexpected-response', 'other'];
/** The transport-error cases of the WIT. */
export const TRANSPORT_CASES = ['denied', 'invalid-url', 'cannot-connect', 'tls', 'timeout', 'other'];
/** The directory-error cases of the WIT. */
export const DIRECTORY_CASES = ['not-found', 'conflict', 'version-mismatch', 'invalid-filter', 'unavailable', 'other'];

function retryOf(retry) {
  if (!retry || typeof retry !== 'object') return ['permanent', null];
  const tag = String(retry.tag ?? 'permanent');
  return [tag, tag === 'after-seconds' ? Number(retry.val ?? 0) : null];
}

function retryNote(retry, after) {
  if (retry === 'backoff') return ' (retryable)';
  if (retry === 'after-seconds') return ` (retry after ${after} s)`;
  return '';
}

/**
 * The component's `provisioning-error` (or a configuration the library refused): why a
 * client-role call failed. The message is a sentence for people and never holds a secret.
 */
export class ProvisioningError extends Error {
  /**
   * @param {string} kase one of PROVISIONING_CASES
   * @param {string} message
   * @param {{status?: number|null, scimType?: string|null, detail?: string|null, retry?: RetryClass,
   *   retryAfterSeconds?: number|null, transportError?: string|null, userId?: string|null,
   *   attribute?: string|null, wit?: object|null}} [fields]
   */
  constructor(kase, message, fields = {}) {
    super(message);
    this.name = 'ProvisioningError';
    /** @type {string} `invalid-config`, `missing-attribute`, `transport`, `scim`, `unexpected-response` or `other` */
    this.case = kase;
    /** @type {number|null} the HTTP status (`scim`, `unexpected-response`) */
    this.status = fields.status ?? null;
    /** @type {string|null} */
    this.scimType = fields.scimType ?? null;
    /** @type {string|null} */
    this.detail = fields.detail ?? null;
    /** @type {RetryClass} the component's retry class */
    this.retry = fields.retry ?? 'permanent';
    /** @type {number|null} for `after-seconds` */
    this.retryAfterSeconds = fields.retryAfterSeconds ?? null;
    /** @type {string|null} the transport-error case, for `transport` */
    this.transportError = fields.transportError ?? null;
    /** @type {string|null} */
    this.userId = fields.userId ?? null;
    /** @type {string|null} */
    this.attribute = fields.attribute ?? null;
    Object.defineProperty(this, 'wit', { value: fields.wit ?? { tag: 'other', val: message }, enumerable: false });
  }

  /** True when trying again may help (`backoff` or `after-seconds`). */
  isRetryable() {
    return this.retry !== 'permanent';
  }

  /** The WIT value (as jco shapes it: `{tag, val}`). */
  toWit() {
    return this.wit;
  }

  /** A configuration the library refused before the component saw it. */
  static invalidConfig(message) {
    return new ProvisioningError('invalid-config', `invalid configuration: ${message}`, { wit: { tag: 'invalid-config', val: message } });
  }

  /**
   * From a WIT `provisioning-error` value as jco gives it (camelCase record fields).
   * @param {{tag: string, val?: any}} wit
   */
  static fromWit(wit) {
    const tag = String(wit?.tag ?? 'other');
    const val = wit?.val;
    switch (tag) {
      case 'invalid-config':
        return new ProvisioningError(tag, `invalid configuration: ${val}`, { wit });
      case 'missing-attribute': {
        const userId = String(val?.userId ?? '');
        const attribute = String(val?.attribute ?? '');
        return new ProvisioningError(tag, `user ${userId}: required attribute ${attribute} has no value; nothing was sent`, { userId, attribute, wit });
      }
      case 'transport': {
        const error = val?.error ?? {};
        const [retry, after] = retryOf(val?.retry);
        const kase = String(error.tag ?? 'other');
        const m = String(error.val ?? '');
        const text = {
          denied: `request refused by the host: ${m}`,
          'invalid-url': `invalid URL: ${m}`,
          'cannot-connect': `cannot connect to the SCIM server (${m}); check the base URL and that the server is running`,
          tls: `TLS failure (${m}); check the server's certificate`,
          timeout: 'the SCIM server did not answer in time',
        }[kase] ?? `transport failure: ${m}`;
        return new ProvisioningError(tag, text + retryNote(retry, after), {
          retry, retryAfterSeconds: after, transportError: kase, detail: m === '' ? null : m, wit,
        });
      }
      case 'scim': {
        const status = Number(val?.status ?? 0);
        const scimType = val?.scimType ?? null;
        const detail = val?.detail ?? null;
        const [retry, after] = retryOf(val?.retry);
        let text = {
          401: 'authentication rejected (HTTP 401): check the bearer token',
          403: 'access forbidden (HTTP 403): the token lacks permission',
          404: 'not found (HTTP 404): check the SCIM base URL',
        }[status] ?? `the SCIM server answered HTTP ${status}`;
        if (scimType !== null) text += `, scimType ${scimType}`;
        if (detail !== null) text += `: ${detail}`;
        return new ProvisioningError(tag, text + retryNote(retry, after), { status, scimType, detail, retry, retryAfterSeconds: after, wit });
      }
      case 'unexpected-response': {
        const status = Number(val?.status ?? 0);
        const reason = String(val?.reason ?? '');
        const [retry, after] = retryOf(val?.retry);
        const hint = {
          401: ' (authentication rejected: check the bearer token)',
          403: ' (forbidden: the token lacks permission)',
          404: ' (check the SCIM base URL)',
        }[status] ?? '';
        return new ProvisioningError(tag, `not a SCIM answer (HTTP ${status})${hint}: ${reason}${retryNote(retry, after)}`, {
          status, detail: reason, retry, retryAfterSeconds: after, wit,
        });
      }
      default:
        return new ProvisioningError('other', typeof val === 'string' ? val : JSON.stringify(val), { wit: { tag: 'other', val: typeof val === 'string' ? val : JSON.stringify(val) } });
    }
  }
}

/**
 * The component trapped during a call. Its instance was thrown away; the object that made
 * the call (a Connector, ScimServer or Selector) opens a fresh instance with its stored
 * configuration on its next call, so the next call works. `kind` is `deadline`
 * (DeadlineExceeded), `memory` (MemoryLimitExceeded) or `trap` (anything else: a guest
 * panic, an out-of-bounds access), as in the PHP and Python hosts.
 */
export class GuestTrap extends Error {
  /**
   * @param {'trap'|'memory'|'deadline'} kind
   * @param {string} guestMessage what the runtime said
   * @param {string} call the export that trapped, e.g. `[method]connector.provision`
   * @param {unknown} [cause]
   */
  constructor(kind, guestMessage, call = '', cause = undefined) {
    super(`the component trapped${call === '' ? '' : ` in ${call}`} (${kind}): ${guestMessage}; its instance was discarded and the next call starts on a fresh one`, { cause });
    this.name = 'GuestTrap';
    this.kind = kind;
    this.guestMessage = guestMessage;
    this.call = call;
  }

  /** The error class for a trap kind. */
  static of(kind, guestMessage, call = '', cause = undefined) {
    if (kind === 'deadline') return new DeadlineExceeded(guestMessage, call, cause);
    if (kind === 'memory') return new MemoryLimitExceeded(guestMessage, call, cause);
    return new GuestTrap(kind, guestMessage, call, cause);
  }
}

/**
 * The guest ran longer than the runtime's `deadlineMs` without an HTTP or directory answer
 * from the host. Its worker thread was terminated, which stopped it wherever it was.
 */
export class DeadlineExceeded extends GuestTrap {
  constructor(guestMessage, call = '', cause = undefined) {
    super('deadline', guestMessage, call, cause);
    this.name = 'DeadlineExceeded';
  }
}

/** The guest needed more linear memory than the runtime's `memoryLimitBytes`. */
export class MemoryLimitExceeded extends GuestTrap {
  constructor(guestMessage, call = '', cause = undefined) {
    super('memory', guestMessage, call, cause);
    this.name = 'MemoryLimitExceeded';
  }
}

/**
 * A transport could not carry an exchange out. `case` is the WIT transport-error case. The
 * guest gets it as the import's error and classifies it; the caller then sees a
 * ProvisioningError with case `transport`. Never carries a header value.
 */
export class TransportError extends Error {
  /** @param {string} kase one of TRANSPORT_CASES @param {string} [message] */
  constructor(kase, message = '') {
    if (!TRANSPORT_CASES.includes(kase)) throw new TypeError(`unknown transport-error case ${kase}`);
    super(message === '' ? kase : `${kase}: ${message}`);
    this.name = 'TransportError';
    this.case = kase;
    this.detail = message;
  }

  /** The WIT `transport-error` value. */
  toWit() {
    return this.case === 'timeout' ? { tag: 'timeout' } : { tag: this.case, val: this.detail };
  }
}

/**
 * A directory could not do what was asked. `case` is the WIT directory-error case:
 * `not-found` (404), `conflict` (409), `version-mismatch` (412), `invalid-filter` (400),
 * `unavailable` (503) or `other` (500).
 */
export class DirectoryError extends Error {
  /** @param {string} kase one of DIRECTORY_CASES @param {string} [message] */
  constructor(kase, message = '') {
    if (!DIRECTORY_CASES.includes(kase)) throw new TypeError(`unknown directory-error case ${kase}`);
    super(message === '' ? kase : `${kase}: ${message}`);
    this.name = 'DirectoryError';
    this.case = kase;
    this.detail = message;
  }

  /** The WIT `directory-error` value. */
  toWit() {
    return this.case === 'not-found' || this.case === 'version-mismatch' ? { tag: this.case } : { tag: this.case, val: this.detail };
  }

  /** From a WIT `directory-error` value as jco gives it (`{tag, val}`). */
  static fromWit(wit) {
    const tag = String(wit?.tag ?? 'other');
    return new DirectoryError(DIRECTORY_CASES.includes(tag) ? tag : 'other', wit?.val === undefined ? '' : String(wit.val));
  }
}

/** Something about the runtime itself: a missing file, a failed transpile. */
export class RuntimeSetupError extends Error {
  constructor(message, options) {
    super(message, options);
    this.name = 'RuntimeSetupError';
  }
}
