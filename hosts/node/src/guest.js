// The calling thread's side of a guest worker (src/guest-worker.js): one component instance
// in a worker thread of its own, driven synchronously, with a deadline on the guest's time.
//
// jco has no epoch interruption, and synchronous Wasm on the calling thread cannot be
// interrupted from JS (vm's `timeout` can, but it starts a watchdog thread per call, about
// 150 µs, and its clock cannot restart when the host answers). So the instance runs in a
// worker; the caller posts a request and waits in Atomics.wait with a timeout, serving the
// imports the guest asks for in between (each HTTP or directory answer restarts the clock,
// as epoch deadlines do in the other hosts). Past the deadline the caller terminates the
// worker, which stops the guest wherever it is, and the session starts a new worker on its
// next call.

import { MessageChannel, Worker, receiveMessageOnPort } from 'node:worker_threads';

import { RuntimeSetupError } from './errors.js';
import { SPIN_MS, spinUntilChanged } from './spin.js';

const WORKER_URL = new URL('./guest-worker.js', import.meta.url);
const TO_WORKER = 0;
const TO_CALLER = 1;
/** How long a new worker may take to load the transpiled component (not guest time). */
const STARTUP_MS = 120_000;
const TIMED_OUT = Symbol('timed out');

/** Workers whose session was garbage-collected without close() are stopped. */
const orphans = new FinalizationRegistry((thread) => thread.terminate());

/** @internal One worker thread holding one component instance at a time. */
export class GuestThread {
  #worker;
  #port;
  #flags;

  /**
   * Starts the worker and waits until it has loaded the transpiled component.
   * @param {{generatedJs: string, _modules: Map<string, WebAssembly.Module>, memoryLimitBytes: number}} runtime
   * @param {object} owner the session; the worker is stopped if it is collected
   */
  constructor(runtime, owner) {
    const { port1, port2 } = new MessageChannel();
    const buffer = new SharedArrayBuffer(8);
    this.#flags = new Int32Array(buffer);
    this.#port = port1;
    this.#worker = new Worker(WORKER_URL, {
      workerData: { js: runtime.generatedJs, modules: runtime._modules, port: port2, flags: buffer, memoryLimitBytes: runtime.memoryLimitBytes },
      transferList: [port2],
    });
    this.#worker.unref();
    // An error event would only reach an event loop this thread is not running; keep it quiet.
    this.#worker.on('error', () => {});
    orphans.register(owner, this, this);
    const ready = this.#receive(performance.now() + STARTUP_MS);
    if (ready === TIMED_OUT || ready.type !== 'ready') {
      this.terminate();
      const why = ready === TIMED_OUT ? `it did not start within ${STARTUP_MS / 1000} s` : ready.message;
      throw new RuntimeSetupError(`the component's worker thread could not load the transpiled component: ${why}`);
    }
  }

  /**
   * Sends one request (`{op: 'instantiate'}` or `{op: 'call', name, args}`) and waits for its
   * answer, serving the guest's imports meanwhile: `serve({iface, func, args})` returns the
   * import's answer, `log(level, message)` takes a log line. The guest may run `deadlineMs`
   * without an HTTP or directory answer; past that the worker is terminated and the answer is
   * `{type: 'deadline'}`. Other answers: `{type: 'done', value}`, `{type: 'error', payload}`
   * (a WIT result error), `{type: 'trap', kind, message}`, `{type: 'fail', name, message}`.
   */
  request(message, serve, log, deadlineMs) {
    this.#post(message);
    let deadline = performance.now() + deadlineMs;
    for (;;) {
      const m = this.#receive(deadline);
      if (m === TIMED_OUT) {
        this.terminate();
        return { type: 'deadline' };
      }
      if (m.type === 'log') {
        log(m.level, m.message);
        continue;
      }
      if (m.type !== 'import') return m;
      const value = serve(m);
      this.#post({ op: 'answer', value });
      deadline = performance.now() + deadlineMs;
    }
  }

  /** Stops the worker now (its instance is gone). */
  terminate() {
    orphans.unregister(this);
    this.#port.close();
    this.#worker.terminate().catch(() => {});
  }

  #post(message) {
    this.#port.postMessage(message);
    Atomics.add(this.#flags, TO_WORKER, 1);
    Atomics.notify(this.#flags, TO_WORKER);
  }

  /** The worker's next message, or TIMED_OUT at `deadline` (performance.now() time). */
  #receive(deadline) {
    for (;;) {
      const seen = Atomics.load(this.#flags, TO_CALLER);
      const got = receiveMessageOnPort(this.#port);
      if (got) return got.message;
      const now = performance.now();
      const left = deadline - now;
      if (left <= 0) return TIMED_OUT;
      if (!spinUntilChanged(this.#flags, TO_CALLER, seen, Math.min(now + SPIN_MS, deadline))) {
        Atomics.wait(this.#flags, TO_CALLER, seen, left);
      }
    }
  }
}

