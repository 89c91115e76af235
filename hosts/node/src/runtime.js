// The runtime: the component as jco transpiled it when the package was packed (component/,
// built by `npm run build`, which `npm pack` runs as prepack), its core modules compiled once,
// and a fresh instance on demand (jco `--instantiation sync`). Nothing is written at run time.
// Another build of the component (option `wasm`, for development) is transpiled on first use
// into `genDir`, which needs jco, a devDependency.

import { createHash } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

import { RuntimeSetupError } from './errors.js';
import { GuestThread } from './guest.js';

const HERE = path.dirname(fileURLToPath(import.meta.url));
/** hosts/node */
export const PACKAGE_DIR = path.resolve(HERE, '..');
/** The repository root (hosts/node/../..). */
export const REPO_ROOT = path.resolve(PACKAGE_DIR, '..', '..');
/** Where development transpiles (option `wasm`) are kept, one directory per component hash. */
export const GEN_DIR = path.join(PACKAGE_DIR, 'gen');
/** The transpiled component the package ships (built by scripts/build.mjs). */
export const COMPONENT_DIR = path.join(PACKAGE_DIR, 'component');
const NAME = 'scim_provisioner';
/** The jco version package.json pins (part of the gen/ directory name). */
export const JCO_VERSION = '1.35.0';
const PAGE = 65536;
/** The default memory limit per instance, as the PHP bridge's. */
export const DEFAULT_MEMORY_LIMIT = 512 * 1024 * 1024;
/** The default deadline: guest time between two host answers, as the other hosts'. */
export const DEFAULT_DEADLINE_MS = 10_000;

/** The component as the repository's builds leave it. */
export function defaultWasm() {
  const candidates = [
    path.join(REPO_ROOT, 'target/component/wasm32-wasip2/component/scim_provisioner.wasm'),
    path.join(REPO_ROOT, 'target/component/wasm32-wasip2/release/scim_provisioner.wasm'),
    path.join(REPO_ROOT, 'target/wasm32-wasip2/release/scim_provisioner.wasm'),
  ];
  return candidates.find((p) => fs.existsSync(p)) ?? candidates[0];
}

/** The component to build the package from: env SCIM_PROVISIONER_WASM, else the repository's build. */
export function resolveWasm(option) {
  const wasm = option ?? (process.env.SCIM_PROVISIONER_WASM || null) ?? defaultWasm();
  if (!fs.existsSync(wasm) || !fs.statSync(wasm).isFile()) {
    throw new RuntimeSetupError(
      `the component scim_provisioner.wasm was not found at ${wasm}: build it with ` +
        '`cargo build --release --target wasm32-wasip2 -p scim-provisioner`, or pass {wasm} / set env SCIM_PROVISIONER_WASM',
    );
  }
  return path.resolve(wasm);
}

/**
 * Transpiles a component with jco into `outDir` (sync instantiation, no TypeScript), unless
 * that was done already. Returns the generated module's path.
 * @param {string} wasm
 * @param {string} outDir
 */
export function transpile(wasm, outDir) {
  const js = path.join(outDir, `${NAME}.js`);
  if (fs.existsSync(js) && fs.existsSync(path.join(outDir, 'source.json'))) return js;
  let jco;
  try {
    // Resolved as Node resolves it, so a hoisted jco is found too; its CLI is beside its API.
    jco = path.join(path.dirname(createRequire(import.meta.url).resolve('@bytecodealliance/jco')), 'jco.js');
  } catch {
    jco = null;
  }
  if (jco === null || !fs.existsSync(jco)) {
    throw new RuntimeSetupError('@bytecodealliance/jco (a devDependency) is needed to transpile another component: run `npm ci` in hosts/node, or load the component the package ships (no `wasm` option)');
  }
  const tmp = `${outDir}.tmp-${process.pid}`;
  fs.rmSync(tmp, { recursive: true, force: true });
  fs.mkdirSync(path.dirname(outDir), { recursive: true });
  try {
    execFileSync(process.execPath, [jco, 'transpile', wasm, '-o', tmp, '--name', NAME, '--instantiation', 'sync', '--no-typescript', '-q'], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
  } catch (e) {
    fs.rmSync(tmp, { recursive: true, force: true });
    throw new RuntimeSetupError(`jco could not transpile ${wasm}: ${String(e.stderr || e.message).trim()}`, { cause: e });
  }
  const patched = patchGenerated(path.join(tmp, `${NAME}.js`));
  fs.writeFileSync(path.join(tmp, 'source.json'), JSON.stringify({ wasm, transpiled: new Date().toISOString(), patched }, null, 2));
  // A directory left half-written (no source.json) by a killed run is replaced.
  if (fs.existsSync(outDir) && !fs.existsSync(path.join(outDir, 'source.json'))) fs.rmSync(outDir, { recursive: true, force: true });
  try {
    fs.renameSync(tmp, outDir);
  } catch (e) {
    // Another process finished the same transpile first: use its output.
    fs.rmSync(tmp, { recursive: true, force: true });
    if (!fs.existsSync(path.join(outDir, 'source.json'))) throw new RuntimeSetupError(`cannot write ${outDir}: ${e.message}`, { cause: e });
  }
  return js;
}

const DEBUG_CHECK = 'if (!globalThis?.process?.env?.JCO_DEBUG) { return; }';

/**
 * jco 1.35's generated `_debugLog`, called several times per component call, reads
 * `process.env.JCO_DEBUG` each time; in Node that is a slow lookup into the C++ environment
 * and took about a third of a `plan` call. The check is hoisted to one read at load.
 * Returns the patches applied (none when the pattern is not there, e.g. another jco).
 */
function patchGenerated(js) {
  let text = fs.readFileSync(js, 'utf8');
  const patches = [];
  const prelude = [];
  if (text.includes(DEBUG_CHECK)) {
    text = text.replace(DEBUG_CHECK, 'if (!JCO_DEBUG_ON) { return; }');
    prelude.push('const JCO_DEBUG_ON = Boolean(globalThis?.process?.env?.JCO_DEBUG);');
    patches.push('debug-log-env-read-hoisted');
  }
  // Each instantiation tries `WebAssembly.promising(f)` (JSPI) in a try/catch, ten times.
  // Node 20 has no such function, and V8 renders the message of "not a function" by
  // re-parsing the enclosing function, here a 10,000-line generator: about 5 ms a try,
  // half of an instantiation. The same try now throws a ready-made TypeError.
  if (text.includes('WebAssembly.promising(')) {
    text = text.replaceAll('WebAssembly.promising(', 'JCO_PROMISING(');
    prelude.push(
      "const JCO_NO_JSPI = new TypeError('WebAssembly.promising is not available');",
      "const JCO_PROMISING = typeof WebAssembly.promising === 'function' ? WebAssembly.promising : () => { throw JCO_NO_JSPI; };",
    );
    patches.push('jspi-probe-without-reparse');
  }
  if (patches.length > 0) fs.writeFileSync(js, `${prelude.join('\n')}\n${text}`);
  return patches;
}

/** The transpile directory for a component: gen/<first 16 hex digits of its SHA-256>. */
export function genDirFor(wasm, base = GEN_DIR) {
  const hash = createHash('sha256').update(fs.readFileSync(wasm)).digest('hex').slice(0, 16);
  return path.join(base, `${hash}-jco${JCO_VERSION}-p2`);
}

// ---- memory limit: rewrite the core module's memory section to carry a maximum ----

function readLeb(bytes, pos) {
  let result = 0;
  let shift = 0;
  let byte;
  do {
    byte = bytes[pos++];
    result += (byte & 0x7f) * 2 ** shift;
    shift += 7;
  } while (byte & 0x80);
  return [result, pos];
}

function leb(n) {
  const out = [];
  do {
    let byte = n % 128;
    n = Math.floor(n / 128);
    if (n > 0) byte |= 0x80;
    out.push(byte);
  } while (n > 0);
  return out;
}

/**
 * The core module with a maximum on its (one, 32-bit) defined memory, so the guest cannot
 * grow past `maxPages`: `memory.grow` fails, the guest's allocator fails, and the guest traps.
 * @param {Uint8Array} bytes
 * @param {number} maxPages
 * @returns {Uint8Array} the patched module (the input when it defines no memory)
 */
export function limitMemory(bytes, maxPages) {
  let pos = 8;
  while (pos < bytes.length) {
    const start = pos;
    const id = bytes[pos++];
    const [size, bodyAt] = readLeb(bytes, pos);
    const end = bodyAt + size;
    if (id === 5) {
      let p = bodyAt;
      const [count, afterCount] = readLeb(bytes, p);
      p = afterCount;
      const body = [...leb(count)];
      for (let i = 0; i < count; i++) {
        const flags = bytes[p++];
        if (flags > 1) return bytes; // shared or 64-bit memory: leave it alone
        const [min, afterMin] = readLeb(bytes, p);
        p = afterMin;
        let max = maxPages;
        if (flags === 1) {
          const [oldMax, afterMax] = readLeb(bytes, p);
          p = afterMax;
          max = Math.min(oldMax, maxPages);
        }
        body.push(1, ...leb(min), ...leb(Math.max(min, max)));
      }
      const section = [5, ...leb(body.length), ...body];
      const out = new Uint8Array(start + section.length + (bytes.length - end));
      out.set(bytes.subarray(0, start), 0);
      out.set(section, start);
      out.set(bytes.subarray(end), start + section.length);
      return out;
    }
    pos = end;
  }
  return bytes;
}

/**
 * The component, transpiled and compiled once. Create one per process and share it
 * between connectors and servers; each of those runs in its own instance, in a worker
 * thread of its own (so a call past its deadline can be stopped).
 */
export class Runtime {
  /** @private */
  constructor(fields) {
    Object.assign(this, fields);
    Object.freeze(this);
  }

  /**
   * Loads the component the package ships (or, with `wasm`, transpiles another build once
   * into `genDir` and loads that).
   * @param {{wasm?: string, memoryLimitBytes?: number, deadlineMs?: number, genDir?: string, componentDir?: string}} [options]
   *   `wasm`: another build of the component, for development (needs jco, a devDependency);
   *   `componentDir`: a transpiled component to load instead of the package's own;
   *   `memoryLimitBytes`: the most linear memory one instance may hold (default 512 MiB);
   *   `deadlineMs`: the most guest time between two host answers (HTTP, directory) in one
   *   call (default 10 s); past it the call throws DeadlineExceeded;
   *   `genDir`: where a `wasm` option's transpile is kept (default the package's gen/).
   * @returns {Promise<Runtime>}
   */
  static async load(options = {}) {
    const known = ['wasm', 'memoryLimitBytes', 'deadlineMs', 'genDir', 'componentDir'];
    for (const k of Object.keys(options)) {
      if (!known.includes(k)) throw new RuntimeSetupError(`unknown runtime option '${k}'; known: ${known.join(', ')}`);
    }
    const memoryLimitBytes = options.memoryLimitBytes ?? DEFAULT_MEMORY_LIMIT;
    if (!Number.isInteger(memoryLimitBytes) || memoryLimitBytes < 2 * 1024 * 1024 || memoryLimitBytes > 4 * 1024 ** 3) {
      throw new RuntimeSetupError('memoryLimitBytes must be a whole number of bytes from 2 MiB to 4 GiB');
    }
    const deadlineMs = options.deadlineMs ?? DEFAULT_DEADLINE_MS;
    if (!Number.isInteger(deadlineMs) || deadlineMs < 1 || deadlineMs > 2 ** 31 - 1) {
      throw new RuntimeSetupError('deadlineMs must be a whole number of milliseconds from 1 to 2147483647');
    }
    if (options.wasm !== undefined && options.componentDir !== undefined) throw new RuntimeSetupError('give wasm or componentDir, not both');
    const started = performance.now();
    let outDir;
    let js;
    let wasmPath;
    if (options.wasm !== undefined) {
      wasmPath = resolveWasm(options.wasm);
      outDir = genDirFor(wasmPath, options.genDir ?? GEN_DIR);
      js = transpile(wasmPath, outDir);
    } else {
      outDir = path.resolve(options.componentDir ?? COMPONENT_DIR);
      js = path.join(outDir, `${NAME}.js`);
      if (!fs.existsSync(js) || !fs.existsSync(path.join(outDir, 'source.json'))) {
        throw new RuntimeSetupError(
          `no transpiled component at ${outDir}: the package is built with \`npm run build\` (npm pack runs it), or pass {wasm} for a component of your own`,
        );
      }
      wasmPath = path.join(outDir, `${NAME}.wasm`);
    }
    const transpileMs = performance.now() - started;
    const generated = await import(pathToFileURL(js).href);
    if (typeof generated.instantiate !== 'function') {
      throw new RuntimeSetupError(`${js} has no instantiate(): it was not transpiled with --instantiation sync; delete ${outDir}`);
    }
    const maxPages = Math.floor(memoryLimitBytes / PAGE);
    const modules = new Map();
    // jco's core modules (name.core.wasm, name.core2.wasm, …); the component itself may sit beside them.
    for (const file of fs.readdirSync(outDir).filter((f) => /\.core\d*\.wasm$/.test(f))) {
      const bytes = fs.readFileSync(path.join(outDir, file));
      modules.set(file, await WebAssembly.compile(limitMemory(bytes, maxPages)));
    }
    return new Runtime({
      wasmPath,
      genDir: outDir,
      generatedJs: pathToFileURL(js).href,
      memoryLimitBytes,
      deadlineMs,
      transpileMs,
      loadMs: performance.now() - started,
      _modules: modules,
    });
  }

  /**
   * @internal A worker thread for one session's instance (see src/guest.js).
   * @param {object} owner the session; the worker is stopped if it is garbage-collected
   * @returns {Promise<GuestThread>}
   */
  spawnGuest(owner) {
    return GuestThread.start(this, owner);
  }
}
