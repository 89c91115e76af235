// What Connector, ScimServer and Selector share: one instance (in a worker thread of its
// own, src/guest.js) with at most one open resource, the imports served from this thread's
// event loop (a host's answer may be a promise), a deadline on every call, calls serialised
// (a component instance is not re-entrant), and recovery after a trap (the instance is
// dropped; the next call opens a fresh one with the stored configuration).

import { DirectoryError, GuestTrap, ProvisioningError, TransportError } from './errors.js';

/**
 * The least deadline for instantiating and opening (the resource's open, then opened()):
 * start-up work, not a call's, which a tight call deadline (tests use 50 ms) must not fail
 * on a loaded machine.
 */
const OPEN_DEADLINE_MS = 10_000;

/** @internal */
export class Session {
  #runtime;
  #thread = null;
  #open = false;
  #opens = 0;
  /** Whether the instance is being instantiated and opened (OPEN_DEADLINE_MS applies). */
  #opening = false;
  /** The tail of the call queue: each call starts once the one before it settled. */
  #queue = Promise.resolve();

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

  /**
   * Drops the instance and stops its worker thread now; a call in flight fails with a
   * GuestTrap. The next call opens a fresh instance.
   */
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
   * @protected Called on every fresh instance right after its resource opened, inside the
   * same turn of the queue: for what a resource answers once for its lifetime. It calls
   * exports with callWhileOpening (invoke would wait for the queue it is in).
   */
  async opened() {}

  /**
   * @protected Calls an export from opened(), on the instance being opened.
   * @returns {Promise<any>}
   */
  callWhileOpening(name, args) {
    return this.#request({ op: 'call', name, args }, name);
  }

  /** @protected The error a top-level `result` error of an export becomes. */
  errorFromWit(payload) {
    return ProvisioningError.fromWit(payload);
  }

  /** @protected The http-client import's handler (may return a promise). */
  serveHttp(_request) {
    return { tag: 'err', val: { tag: 'denied', val: 'this object sends no HTTP requests' } };
  }

  /** @protected The directory import's handler: (func, args) => result value (or a promise of it). */
  serveDirectory(_func, _args) {
    return { tag: 'err', val: new DirectoryError('unavailable', 'a connector has no directory').toWit() };
  }

  /** @protected Instantiates and opens the resource unless that is done. */
  ensureOpen() {
    return this.#exclusive(() => this.#ensureOpen());
  }

  /**
   * @protected Calls export `name` (`[method]connector.provision`, `select`) with WIT values,
   * after every call queued before it; a result error comes back as the session's error
   * class, a trap as a GuestTrap (and the instance is dropped), a call past the deadline as
   * DeadlineExceeded (and its worker is stopped).
   * @returns {Promise<any>}
   */
  invoke(name, args) {
    return this.#exclusive(async () => {
      await this.#ensureOpen();
      return this.#request({ op: 'call', name, args }, name);
    });
  }

  #exclusive(task) {
    const run = this.#queue.then(task, task);
    this.#queue = run.then(() => {}, () => {});
    return run;
  }

  async #ensureOpen() {
    if (this.#open) return;
    this.#thread ??= await this.#runtime.spawnGuest(this);
    this.#opening = true;
    try {
      await this.#request({ op: 'instantiate' }, 'instantiate');
      this.#opens++;
      const open = this.openCall();
      if (open !== null) await this.#request({ op: 'call', name: open[0], args: open[1] }, open[0]);
      this.#open = true;
      // A trap in it closes the session again, as in any call: the next call starts afresh.
      await this.opened();
    } finally {
      this.#opening = false;
    }
  }

  async #request(message, name) {
    const thread = this.#thread;
    if (thread === null) throw GuestTrap.of('trap', 'the session was closed while the call waited', name);
    const deadlineMs = this.#opening ? Math.max(this.#runtime.deadlineMs, OPEN_DEADLINE_MS) : this.#runtime.deadlineMs;
    const answer = await thread.request(message, (m) => this.#serve(m), (level, text) => this.logger.log(level, text), deadlineMs);
    switch (answer.type) {
      case 'done':
        return answer.value;
      case 'error':
        // A refused open leaves the session closed: the next call instantiates afresh.
        throw this.errorFromWit(answer.payload);
      case 'deadline':
        this.#dropThread(thread);
        throw GuestTrap.of('deadline', `the guest ran longer than ${deadlineMs} ms without a host answer; its worker thread was stopped`, name);
      case 'trap':
        this.#open = false;
        // A worker that is gone (closed, crashed) is replaced on the next call.
        if (thread.gone) this.#dropThread(thread);
        throw GuestTrap.of(answer.kind, answer.message, name);
      default: {
        // Arguments jco could not lower, or anything else thrown inside the call: the
        // instance is in an unknown state and was dropped; the error is passed on as it is.
        this.#open = false;
        if (thread.gone) this.#dropThread(thread);
        const Kind = { TypeError, RangeError, SyntaxError }[answer.name] ?? Error;
        const e = new Kind(answer.message);
        if (Kind === Error && answer.name) e.name = answer.name;
        throw e;
      }
    }
  }

  #dropThread(thread) {
    this.#open = false;
    if (this.#thread === thread) this.#thread = null;
  }

  async #serve({ iface, func, args }) {
    if (iface === 'http') {
      try {
        return await this.serveHttp(args[0]);
      } catch (e) {
        this.logger.log('error', `the transport failed: ${e?.name}: ${e?.message}`);
        return { tag: 'err', val: new TransportError('other', `the host transport failed: ${e?.message}`).toWit() };
      }
    }
    try {
      return await this.serveDirectory(func, args);
    } catch (e) {
      this.logger.log('error', `directory ${func}: ${e?.name}: ${e?.message}`);
      return { tag: 'err', val: new DirectoryError('other', String(e?.message)).toWit() };
    }
  }
}
