// The worker thread a session's component instance runs in, so the session can stop a
// runaway guest call: the calling thread waits for this worker with a deadline and, past it,
// terminates the worker (V8 stops its execution wherever it is, Wasm loops included).
//
// The calling thread posts one request at a time on the port and bumps flags[0]; this
// worker blocks in Atomics.wait on it (it never returns to its event loop while it lives).
// An import the guest calls is posted to the calling thread, whose event loop serves it
// (awaiting the host's promise if need be), and this worker blocks until the answer comes
// the same way; a log line is posted without waiting. See src/guest.js.

import { receiveMessageOnPort, workerData } from 'node:worker_threads';

import { SPIN_MS, spinUntilChanged } from './spin.js';

import * as wasi from '@bytecodealliance/preview2-shim';

const { js, modules, port, flags: flagBuffer, memoryLimitBytes } = workerData;
const flags = new Int32Array(flagBuffer);
const TO_WORKER = 0;
const TO_CALLER = 1;
const GIB4 = 4 * 1024 ** 3;

/**
 * Posts a message to the calling thread and bumps flags[1]: its event loop takes the
 * message, or, when it is spinning for a quick answer, the flag shows it at once.
 */
function send(message) {
  port.postMessage(message);
  Atomics.add(flags, TO_CALLER, 1);
}

/** The next message from the calling thread (blocking; spins briefly first, see SPIN_MS). */
function receive() {
  for (;;) {
    const seen = Atomics.load(flags, TO_WORKER);
    const got = receiveMessageOnPort(port);
    if (got) return got.message;
    if (!spinUntilChanged(flags, TO_WORKER, seen, performance.now() + SPIN_MS)) {
      Atomics.wait(flags, TO_WORKER, seen);
    }
  }
}

/** An import the guest calls: the calling thread serves it; its answer comes back here. */
function host(iface, func, args) {
  send({ type: 'import', iface, func, args });
  const answer = receive();
  last = answer.value;
  return answer.value;
}

/** The WASI imports (preview2-shim) with least privilege: no environment, arguments or cwd. */
function wasiImports() {
  const { cli, clocks, io, random } = wasi;
  return {
    'wasi:cli/environment': { getEnvironment: () => [], getArguments: () => [], initialCwd: () => undefined },
    // On the calling thread preview2-shim's exit would end the process; here it would end
    // the worker silently. A guest that exits has stopped: a trap.
    'wasi:cli/exit': {
      exit: () => {
        throw new WebAssembly.RuntimeError('the guest called exit');
      },
    },
    'wasi:cli/stderr': cli.stderr,
    'wasi:cli/stdin': cli.stdin,
    'wasi:cli/stdout': cli.stdout,
    'wasi:cli/terminal-input': cli.terminalInput,
    'wasi:cli/terminal-output': cli.terminalOutput,
    'wasi:cli/terminal-stderr': cli.terminalStderr,
    'wasi:cli/terminal-stdin': cli.terminalStdin,
    'wasi:cli/terminal-stdout': cli.terminalStdout,
    'wasi:clocks/monotonic-clock': clocks.monotonicClock,
    'wasi:clocks/wall-clock': clocks.wallClock,
    'wasi:io/error': io.error,
    'wasi:io/poll': io.poll,
    'wasi:io/streams': io.streams,
    'wasi:random/insecure-seed': random.insecureSeed,
    'wasi:random/random': random.random,
  };
}

const IMPORTS = {
  ...wasiImports(),
  'scim:provisioner/types': {},
  'scim:provisioner/http-client': { send: (request) => host('http', 'send', [request]) },
  'scim:provisioner/logging': { log: (level, message) => send({ type: 'log', level, message }) },
  'scim:provisioner/directory': Object.fromEntries(
    ['get', 'query', 'create', 'replace', 'delete'].map((func) => [func, (...args) => host('directory', func, args)]),
  ),
};

/** A resource's static functions: `[static]connector.open` is `client.Connector.open`. */
const RESOURCES = { connector: ['client', 'Connector'], 'scim-server': ['server', 'ScimServer'] };
/** Free functions of exported interfaces. */
const FREE = { select: ['selection', 'select'] };
const camel = (kebab) => kebab.replace(/-([a-z0-9])/g, (_, c) => c.toUpperCase());

let generated = null;
/** The instance's exports, its memory, the open resource, and the last value that crossed in. */
let root = null;
let memory = null;
let handle = null;
let last = null;

function instantiate() {
  root = null;
  handle = null;
  memory = null;
  root = generated.instantiate(
    (name) => {
      const m = modules.get(name);
      if (!m) throw new Error(`the transpiled component has no core module ${name}`);
      return m;
    },
    IMPORTS,
    (module, coreImports) => {
      const instance = new WebAssembly.Instance(module, coreImports);
      if (instance.exports.memory instanceof WebAssembly.Memory && memory === null) memory = instance.exports.memory;
      return instance;
    },
  );
}

function exec(name, args) {
  let m = /^\[static\]([a-z-]+)\.([a-z-]+)$/.exec(name);
  if (m && RESOURCES[m[1]]) {
    const [iface, cls] = RESOURCES[m[1]];
    handle = root[iface][cls][camel(m[2])](...args);
    return true;
  }
  m = /^\[method\][a-z-]+\.([a-z-]+)$/.exec(name);
  if (m) {
    if (handle === null) throw new Error(`${name} without an open resource`);
    return handle[camel(m[1])](...args);
  }
  const free = FREE[name];
  if (!free) throw new Error(`the component exports no ${name}`);
  return root[free[0]][free[1]](...args);
}

/** About how many bytes a value holds (strings and byte lists), to judge a memory trap. */
function bytesIn(value, depth = 0) {
  if (typeof value === 'string') return value.length;
  if (ArrayBuffer.isView(value)) return value.byteLength;
  if (value === null || typeof value !== 'object' || depth > 6) return 0;
  let n = 0;
  for (const v of Array.isArray(value) ? value : Object.values(value)) n += bytesIn(v, depth + 1);
  return n;
}

function isComponentError(e) {
  return e !== null && typeof e === 'object' && Object.prototype.hasOwnProperty.call(e, 'payload');
}

function isTrap(e) {
  return e instanceof WebAssembly.RuntimeError || e instanceof RangeError || e?.name === 'RuntimeError';
}

/** Runs one request and answers it. */
function serve(request) {
  try {
    if (request.op === 'instantiate') {
      instantiate();
      send({ type: 'done', value: null });
      return;
    }
    last = request.args;
    const value = exec(request.name, request.args);
    send({ type: 'done', value });
  } catch (e) {
    if (isComponentError(e)) {
      send({ type: 'error', payload: e.payload });
      return;
    }
    // jco marks a trapped instance as unusable; anything else thrown from inside a call
    // leaves it in an unknown state too. Either way a fresh one comes next.
    if (isTrap(e)) {
      const limit = Math.min(memoryLimitBytes, GIB4);
      const atLimit = memory !== null && memory.buffer.byteLength + bytesIn(last) + 1024 * 1024 > limit;
      root = null;
      handle = null;
      send({ type: 'trap', kind: atLimit ? 'memory' : 'trap', message: String(e.message) });
      return;
    }
    root = null;
    handle = null;
    send({ type: 'fail', name: String(e?.name ?? 'Error'), message: String(e?.message ?? e) });
  } finally {
    last = null;
  }
}

try {
  generated = await import(js);
  if (typeof generated.instantiate !== 'function') throw new Error(`${js} has no instantiate(): it was not transpiled with --instantiation sync`);
  send({ type: 'ready' });
} catch (e) {
  send({ type: 'fail', name: 'RuntimeSetupError', message: String(e?.message ?? e) });
}
if (generated !== null) {
  for (;;) serve(receive());
}
