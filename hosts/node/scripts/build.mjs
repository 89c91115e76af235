// npm run build (and prepack): transpiles the component with jco into component/, the
// directory the package ships and Runtime.load() reads: jco's ES module and core modules,
// the component itself, and source.json (its SHA-256, the jco version, the patches applied).
// The component: env SCIM_PROVISIONER_WASM, else the repository's build. Skipped when
// component/ already holds a transpile of the same component by the same jco.
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { pathToFileURL } from 'node:url';

import { COMPONENT_DIR, JCO_VERSION, Runtime, resolveWasm, transpile } from '../src/runtime.js';

/**
 * Transpiles the component into component/ unless it holds this component already.
 * @returns {Promise<string>} what was done, in a line or two
 */
export async function buildComponent() {
  const wasm = resolveWasm(undefined);
  const sha256 = createHash('sha256').update(fs.readFileSync(wasm)).digest('hex');
  const sourceFile = path.join(COMPONENT_DIR, 'source.json');
  let current = null;
  try {
    current = JSON.parse(fs.readFileSync(sourceFile, 'utf8'));
  } catch {
    current = null;
  }
  if (current?.sha256 === sha256 && current?.jco === JCO_VERSION && fs.existsSync(path.join(COMPONENT_DIR, 'scim_provisioner.js'))) {
    return `component/ is up to date (${wasm}, sha256 ${sha256.slice(0, 16)}…)`;
  }
  const started = performance.now();
  const staging = `${COMPONENT_DIR}.staging-${process.pid}`;
  fs.rmSync(staging, { recursive: true, force: true });
  transpile(wasm, staging);
  // jco's TypeScript declarations of the WIT are not the package's API (types/ is).
  for (const extra of ['interfaces', 'scim_provisioner.d.ts']) fs.rmSync(path.join(staging, extra), { recursive: true, force: true });
  fs.copyFileSync(wasm, path.join(staging, 'scim_provisioner.wasm'));
  const { patched } = JSON.parse(fs.readFileSync(path.join(staging, 'source.json'), 'utf8'));
  // No build machine's path in what is shipped: the name and the hash say which component.
  fs.writeFileSync(
    path.join(staging, 'source.json'),
    `${JSON.stringify({ component: path.basename(wasm), sha256, jco: JCO_VERSION, instantiation: 'sync', patched, transpiled: new Date().toISOString() }, null, 2)}\n`,
  );
  fs.rmSync(COMPONENT_DIR, { recursive: true, force: true });
  fs.renameSync(staging, COMPONENT_DIR);
  const runtime = await Runtime.load();
  return `transpiled ${wasm}\n  -> ${COMPONENT_DIR} (${(performance.now() - started).toFixed(0)} ms; loaded in ${runtime.loadMs.toFixed(0)} ms)`;
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) console.log(await buildComponent());
