// What Connector, ScimServer and Selector share: one instance (in a worker thread of its
// own, src/guest.js) with at most one open resource, the imports served from this thread,
// a deadline on every call, and recovery after a trap (the instance is dropped; the next
// call opens a fresh one with the stored configuration).

import { DirectoryError, GuestTrap, ProvisioningError, TransportError } from './errors.js';

/** @internal */
export class Session {
  #runtime;
  #thread = null;
  #open = false;
  #opens = 0;

  /**
   * @param {import('./runtime.js').Runtime} runtime
   * @param {import('./logger.js').RedactingLogger} logger
   */
  constructor(runtime, logger) {
    if (!runtime || typeof runtime.spawnGuest !== 'function') throw new TypeError('the first argument is a Runtime (await Runtime.load())');
    this.#runtime = runtime;
    /** @protected */
    this.logger = logger;
  }

  /** How many instances this object has opened: 1 after open, one more after each trap. */
  instancesOpened() {
    return this.#opens;
  }

  /** Drops the instance and stops its worker thread now; the next call opens a fresh one. */
  close() {
    this.#open = false;
    const thread = this.#thread;
    this.#thread = null;
    if (thread !== null) thread.terminate();
  }

  /**
   * @protected The export that opens this session's resource and its arguments, e.g.
   * `['[static]connector.open', [config]]`; null when the interface has no resource.
   * @returns {[string, unknown[]]|null}
   */
  openCall() {
    throw new Error('abstract');
  }

  /**
   * @protected Called on every fresh instance right after its resource opened (the session
   * is open, so it may invoke): for what a resource answers once for its lifetime.
   */
  opened() {}

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

  /** @protected Instantiates and opens the resource unless that is done. */
  ensureOpen() {
    if (this.#open) return;
    this.#thread ??= this.#runtime.spawnGuest(this);
    this.#request({ op: 'instantiate' }, 'instantiate');
    this.#opens++;
    const open = this.openCall();
    if (open !== null) this.#request({ op: 'call', name: open[0], args: open[1] }, open[0]);
    this.#open = true;
    // A trap in it closes the session again, as in any call: the next call starts afresh.
    this.opened();
  }

  /**
   * @protected Calls export `name` (`[method]connector.provision`, `select`) with WIT values;
   * a result error comes back as the session's error class, a trap as a GuestTrap (and the
   * instance is dropped), a call past the deadline as DeadlineExceeded (and its worker is
   * stopped).
   */
  invoke(name, args) {
    this.ensureOpen();
    return this.#request({ op: 'call', name, args }, name);
  }

  #request(message, name) {
    const thread = this.#thread;
    const answer = thread.request(message, (m) => this.#serve(m), (level, text) => this.logger.log(level, text), this.#runtime.deadlineMs);
    switch (answer.type) {
      case 'done':
        return answer.value;
      case 'error':
        // A refused open leaves the session closed: the next call instantiates afresh.
        throw this.errorFromWit(answer.payload);
      case 'deadline':
        this.#open = false;
        this.#thread = null; // terminated by the thread itself
        throw GuestTrap.of('deadline', `the guest ran longer than ${this.#runtime.deadlineMs} ms without a host answer; its worker thread was stopped`, name);
      case 'trap':
        this.#open = false;
        throw GuestTrap.of(answer.kind, answer.message, name);
      default: {
        // Arguments jco could not lower, or anything else thrown inside the call: the
        // instance is in an unknown state and was dropped; the error is passed on as it is.
        this.#open = false;
        const Kind = { TypeError, RangeError, SyntaxError }[answer.name] ?? Error;
        const e = new Kind(answer.message);
        if (Kind === Error && answer.name) e.name = answer.name;
        throw e;
      }
    }
  }

  #serve({ iface, func, args }) {
    if (iface === 'http') {
      try {
        return this.serveHttp(args[0]);
      } catch (e) {
        this.logger.log('error', `the transport failed: ${e?.name}: ${e?.message}`);
        return { tag: 'err', val: new TransportError('other', `the host transport failed: ${e?.message}`).toWit() };
      }
    }
    try {
      return this.serveDirectory(func, args);
    } catch (e) {
      this.logger.log('error', `directory ${func}: ${e?.name}: ${e?.message}`);
      return { tag: 'err', val: new DirectoryError('other', String(e?.message)).toWit() };
    }
  }
}
