// npm run build: transpiles the component with jco into gen/<hash>/ (sync instantiation).
// The component: env SCIM_PROVISIONER_WASM, else the repository's build.
import { Runtime } from '../src/runtime.js';

const runtime = await Runtime.load();
console.log(`transpiled ${runtime.wasmPath}\n  -> ${runtime.genDir} (${runtime.transpileMs.toFixed(0)} ms; loaded in ${runtime.loadMs.toFixed(0)} ms)`);
