// What Connector and ScimServer share: one instance with one open resource, the imports
// served from JS, and recovery after a trap (the instance is dropped; the next call opens a
// fresh one with the stored configuration).

import { DirectoryError, GuestTrap, ProvisioningError, TransportError } from './errors.js';

const GIB4 = 4 * 1024 ** 3;

/** True for a value jco threw for a top-level `result` error (a ComponentError). */
function isComponentError(e) {
  return e !== null && typeof e === 'object' && Object.prototype.hasOwnProperty.call(e, 'payload');
}

/** @internal */
export class Session {
  #runtime;
  #instance = null;
  #handle = null;
  #opens = 0;

  /**
   * @param {import('./runtime.js').Runtime} runtime
   * @param {import('./logger.js').RedactingLogger} logger
   */
  constructor(runtime, logger) {
    if (!runtime || typeof runtime.instantiate !== 'function') throw new TypeError('the first argument is a Runtime (await Runtime.load())');
    this.#runtime = runtime;
    /** @protected */
    this.logger = logger;
  }

  /** How many instances this object has opened: 1 after open, one more after each trap. */
  instancesOpened() {
    return this.#opens;
  }

  /** Drops the resource and the instance now; the next call opens a fresh one. */
  close() {
    const handle = this.#handle;
    this.#discard();
    if (handle) {
      const dispose = handle[Symbol.dispose] ?? handle[Symbol.for('dispose')];
      try {
        if (typeof dispose === 'function') dispose.call(handle);
      } catch (e) {
        this.logger.log('warn', `closing the component instance: ${e.message}`);
      }
    }
  }

  /**
   * @protected Bytes of the last import answer handed to the guest in this call: a trap
   * while the guest's memory plus that answer would pass the limit is a memory trap.
   */
  lastAnswerBytes = 0;

  /** @protected The resource's open call: (exports) => resource. */
  openResource(_instance) {
    throw new Error('abstract');
  }

  /** @protected The error a top-level `result` error of an export becomes. */
  errorFromWit(payload) {
    return ProvisioningError.fromWit(payload);
  }

  /** @protected The http-client import's handler. */
  serveHttp(_request) {
    return { tag: 'err', val: { tag: 'denied', val: 'this object sends no HTTP requests' } };
  }

  /** @protected The directory import's handler: (func, args) => result value. */
  serveDirectory(_func, _args) {
    return { tag: 'err', val: new DirectoryError('unavailable', 'a connector has no directory').toWit() };
  }

  /** @protected Opens the instance and the resource unless they are open; returns the resource. */
  ensureOpen() {
    if (this.#handle !== null) return this.#handle;
    this.#discard();
    const instance = this.#runtime.instantiate(this.#imports());
    this.#instance = instance;
    this.#opens++;
    try {
      this.#handle = this.openResource(instance);
    } catch (e) {
      this.#discard();
      if (isComponentError(e)) throw this.errorFromWit(e.payload);
      throw this.#trap(e, 'open', instance);
    }
    return this.#handle;
  }

  /**
   * @protected Calls `fn(resource)`; a result error comes back as a ProvisioningError, a trap
   * as a GuestTrap (and the instance is dropped).
   */
  invoke(name, fn) {
    const handle = this.ensureOpen();
    const instance = this.#instance;
    this.lastAnswerBytes = 0;
    try {
      return fn(handle);
    } catch (e) {
      if (isComponentError(e)) throw this.errorFromWit(e.payload);
      this.#discard();
      throw this.#trap(e, name, instance);
    }
  }

  #trap(e, call, instance) {
    if (e instanceof WebAssembly.RuntimeError || e instanceof RangeError || e?.name === 'RuntimeError') {
      const memory = instance?.memory();
      const limit = Math.min(this.#runtime.memoryLimitBytes, GIB4);
      const atLimit = memory !== null && memory !== undefined && memory.buffer.byteLength + this.lastAnswerBytes + 1024 * 1024 > limit;
      return new GuestTrap(atLimit ? 'memory' : 'trap', e.message, call, e);
    }
    // Anything else (arguments jco could not lower, an exit) also leaves the instance in an
    // unknown state: it was dropped; the error is passed on as it is.
    return e;
  }

  #discard() {
    this.#handle = null;
    this.#instance = null;
  }

  #imports() {
    const logger = this.logger;
    return {
      httpClient: {
        send: (request) => {
          try {
            return this.serveHttp(request);
          } catch (e) {
            logger.log('error', `the transport failed: ${e?.name}: ${e?.message}`);
            return { tag: 'err', val: new TransportError('other', `the host transport failed: ${e?.message}`).toWit() };
          }
        },
      },
      logging: {
        log: (level, message) => logger.log(level, message),
      },
      directory: Object.fromEntries(
        ['get', 'query', 'create', 'replace', 'delete'].map((func) => [
          func,
          (...args) => {
            try {
              return this.serveDirectory(func, args);
            } catch (e) {
              logger.log('error', `directory ${func}: ${e?.name}: ${e?.message}`);
              return { tag: 'err', val: new DirectoryError('other', String(e?.message)).toWit() };
            }
          },
        ]),
      ),
    };
  }
}
