// The calling thread's side of a guest worker (src/guest-worker.js): one component instance
// in a worker thread of its own, driven asynchronously, with a deadline on the guest's time.
//
// The guest's imports are synchronous in the WIT (http-client.send, the directory), and the
// host's answers to them may not be (fetch, a pg pool). So the blocking wait lives in the
// worker: it posts an import to this thread and sleeps in Atomics.wait until the answer is
// posted back, while this thread's event loop stays free and awaits the host's promise.
// The deadline is a timer on this thread, paused while the host serves an import (each HTTP
// or directory answer restarts it, as epoch deadlines do in the other hosts): past it the
// worker is terminated, which stops the guest wherever it is (Wasm loops included), and the
// session starts a new worker on its next call. jco has no epoch interruption of its own.

import { MessageChannel, Worker, receiveMessageOnPort } from 'node:worker_threads';

import { RuntimeSetupError } from './errors.js';
import { SPIN_MS, spinUntilChanged } from './spin.js';

const WORKER_URL = new URL('./guest-worker.js', import.meta.url);
const TO_WORKER = 0;
const TO_CALLER = 1;
/** How long a new worker may take to load the transpiled component (not guest time). */
const STARTUP_MS = 120_000;

/**
 * How long this thread may go on taking quick answers (below) without a turn of its event
 * loop: a loop of awaited calls that each answer at once resolves in microtasks only, and
 * would starve timers and I/O. Past this, the next answer comes as a 'message' event.
 */
const QUICK_BUDGET_MS = 5;
/** When this thread's event loop last delivered a guest message (performance.now()). */
let loopTurnAt = -Infinity;

/** Workers whose session was garbage-collected without close() are stopped. */
const orphans = new FinalizationRegistry((thread) => thread.terminate());

/**
 * @internal One worker thread holding one component instance at a time. One request at a
 * time: the session serialises its calls (a component instance is not re-entrant).
 */
export class GuestThread {
  #worker;
  #port;
  #flags;
  /** The request in flight: {resolve, serve, log, deadlineMs, timer}. */
  #pending = null;
  /** Why the worker is gone (set once it exited or was terminated). */
  #gone = null;

  /** @private Use GuestThread.start. */
  constructor(runtime, owner) {
    const { port1, port2 } = new MessageChannel();
    this.#flags = new Int32Array(new SharedArrayBuffer(8));
    this.#port = port1;
    this.#worker = new Worker(WORKER_URL, {
      workerData: { js: runtime.generatedJs, modules: runtime._modules, port: port2, flags: this.#flags.buffer, memoryLimitBytes: runtime.memoryLimitBytes },
      transferList: [port2],
    });
    // Neither keeps the process alive while idle; a request in flight refs the port.
    this.#worker.unref();
    this.#port.unref();
    this.#port.on('message', (m) => {
      loopTurnAt = performance.now();
      this.#onMessage(m);
    });
    // An uncaught error in the worker ends it; the exit below answers the request in flight.
    this.#worker.on('error', () => {});
    this.#worker.on('exit', (code) => this.#onExit(code));
    orphans.register(owner, this, this);
  }

  /**
   * Starts a worker and resolves once it has loaded the transpiled component.
   * @param {{generatedJs: string, _modules: Map<string, WebAssembly.Module>, memoryLimitBytes: number}} runtime
   * @param {object} owner the session; the worker is stopped if it is collected
   * @returns {Promise<GuestThread>}
   */
  static async start(runtime, owner) {
    const thread = new GuestThread(runtime, owner);
    const ready = await thread.#await(STARTUP_MS, null, null, 'startup');
    if (ready.type !== 'ready') {
      thread.terminate();
      const why = ready.type === 'deadline' ? `it did not start within ${STARTUP_MS / 1000} s` : ready.message;
      throw new RuntimeSetupError(`the component's worker thread could not load the transpiled component: ${why}`);
    }
    return thread;
  }

  /**
   * Sends one request (`{op: 'instantiate'}` or `{op: 'call', name, args}`) and resolves with
   * its answer, serving the guest's imports meanwhile: `serve({iface, func, args})` returns
   * the import's answer (or a promise of it; it must not reject), `log(level, message)` takes
   * a log line. The guest may run `deadlineMs` without an HTTP or directory answer; past that
   * the worker is terminated and the answer is `{type: 'deadline'}`. Other answers:
   * `{type: 'done', value}`, `{type: 'error', payload}` (a WIT result error),
   * `{type: 'trap', kind, message}`, `{type: 'fail', name, message}`.
   * @returns {Promise<object>}
   */
  request(message, serve, log, deadlineMs) {
    if (this.#gone !== null) return Promise.resolve({ type: 'trap', kind: 'trap', message: this.#gone });
    if (this.#pending !== null) return Promise.reject(new Error('a guest thread serves one request at a time'));
    const answer = this.#await(deadlineMs, serve, log, 'call');
    this.#post(message);
    this.#catchQuickAnswer();
    return answer;
  }

  /** Whether the worker is gone (terminated or exited): the session needs a new one. */
  get gone() {
    return this.#gone !== null;
  }

  /** Stops the worker now (its instance is gone); a request in flight answers as a trap. */
  terminate() {
    if (this.#gone === null) this.#gone = 'the worker thread was stopped';
    orphans.unregister(this);
    this.#worker.terminate().catch(() => {});
    this.#finish({ type: 'trap', kind: 'trap', message: this.#gone });
    this.#port.close();
  }

  #await(deadlineMs, serve, log, what) {
    return new Promise((resolve) => {
      this.#pending = { resolve, serve, log, deadlineMs, timer: null, what };
      this.#port.ref();
      this.#arm();
    });
  }

  /** (Re)starts the deadline of the request in flight. */
  #arm() {
    const p = this.#pending;
    if (p === null) return;
    clearTimeout(p.timer);
    const timer = setTimeout(() => {
      if (this.#pending !== p || p.timer !== timer) return;
      // Timers run before the poll phase delivers messages: an answer that arrived while
      // this thread was busy elsewhere is taken first, so only guest time counts.
      for (let got = receiveMessageOnPort(this.#port); got !== undefined; got = receiveMessageOnPort(this.#port)) {
        this.#onMessage(got.message);
        if (this.#pending !== p || p.timer !== timer) return;
      }
      this.#gone = `the guest ran longer than ${p.deadlineMs} ms without a host answer`;
      const resolve = p.resolve;
      this.#pending = null;
      this.terminate();
      resolve({ type: 'deadline' });
    }, p.deadlineMs);
    p.timer = timer;
  }

  #finish(answer) {
    const p = this.#pending;
    if (p === null) return;
    clearTimeout(p.timer);
    this.#pending = null;
    this.#port.unref();
    p.resolve(answer);
  }

  #onMessage(m) {
    const p = this.#pending;
    if (p === null) return; // a late message from a request already answered (terminated)
    if (m.type === 'log') {
      p.log?.(m.level, m.message);
      return;
    }
    if (m.type !== 'import') {
      this.#finish(m);
      return;
    }
    // The host serves the import: not guest time.
    clearTimeout(p.timer);
    p.timer = null;
    Promise.resolve()
      .then(() => p.serve(m))
      .then((value) => {
        if (this.#pending !== p || this.#gone !== null) return;
        this.#arm();
        this.#post({ op: 'answer', value });
        this.#catchQuickAnswer();
      })
      .catch((e) => {
        // A host that cannot answer leaves the guest waiting: stop it, report what failed.
        if (this.#pending !== p) return;
        this.#gone = `the host failed serving ${m.iface}.${m.func}`;
        const resolve = p.resolve;
        this.#pending = null;
        this.terminate();
        resolve({ type: 'fail', name: String(e?.name ?? 'Error'), message: String(e?.message ?? e) });
      });
  }

  /**
   * Spins up to SPIN_MS for the worker's next message and takes it at once: most guest calls
   * take microseconds, and a message through the event loop costs tens of them more. The
   * event loop is held for at most SPIN_MS (50 µs) per message, and only within
   * QUICK_BUDGET_MS of its last turn; anything else arrives as a 'message' event.
   */
  #catchQuickAnswer() {
    const p = this.#pending;
    while (this.#pending === p && p !== null && p.timer !== null) {
      if (performance.now() - loopTurnAt > QUICK_BUDGET_MS) return;
      const seen = Atomics.load(this.#flags, TO_CALLER);
      const got = receiveMessageOnPort(this.#port);
      if (got !== undefined) {
        this.#onMessage(got.message);
        continue;
      }
      if (!spinUntilChanged(this.#flags, TO_CALLER, seen, performance.now() + SPIN_MS)) return;
    }
  }

  #onExit(code) {
    if (this.#gone === null) this.#gone = `the worker thread exited (code ${code})`;
    orphans.unregister(this);
    this.#finish({ type: 'trap', kind: 'trap', message: this.#gone });
  }

  #post(message) {
    this.#port.postMessage(message);
    Atomics.add(this.#flags, TO_WORKER, 1);
    Atomics.notify(this.#flags, TO_WORKER);
  }
}
