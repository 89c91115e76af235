// Per-call cost of the component under the Node host (jco): `plan` (no request) and a
// `provision` that finds nothing changed (no request), after warm-up.
//   node bench.mjs [--plan-calls 20000] [--provision-calls 5000]
import { parseArgs } from 'node:util';

import { Connector, MemoryLogger, Runtime } from './src/index.js';
import { startScim2Server } from './test/helpers.js';

const { values } = parseArgs({ options: { 'plan-calls': { type: 'string', default: '20000' }, 'provision-calls': { type: 'string', default: '5000' } } });
const planCalls = Number(values['plan-calls']);
const provisionCalls = Number(values['provision-calls']);

const runtime = await Runtime.load();
const peer = await startScim2Server();
try {
  const connector = Connector.open(runtime, { base_url: peer.baseUrl, token: peer.token }, { logger: new MemoryLogger() });
  const user = { id: '1', fields: { name: 'bench', mail: 'bench@example.com', field_first_name: 'Bench', field_last_name: 'Mark', roles: ['editor'] } };
  const measure = (calls, fn) => {
    for (let i = 0; i < Math.min(1000, calls); i++) fn();
    const started = process.hrtime.bigint();
    for (let i = 0; i < calls; i++) fn();
    return Number(process.hrtime.bigint() - started) / 1000 / calls;
  };
  const plan = measure(planCalls, () => connector.plan(user, 'updated', true));
  const { link } = connector.provision(user, 'created', null);
  const provision = measure(provisionCalls, () => {
    const out = connector.provision(user, 'updated', link);
    if (out.action !== 'unchanged' || out.requests !== 0) throw new Error(`expected unchanged without a request, got ${JSON.stringify(out)}`);
  });
  const map = measure(planCalls, () => connector.mapUser(user));
  console.log(`node ${process.version}, jco 1.35.0 (instantiation sync), component ${runtime.wasmPath}`);
  console.log(`plan:                    ${plan.toFixed(2)} µs/call (${planCalls} calls)`);
  console.log(`provision, no change:    ${provision.toFixed(2)} µs/call (${provisionCalls} calls, 0 requests each)`);
  console.log(`mapUser:                 ${map.toFixed(2)} µs/call (${planCalls} calls)`);
  connector.close();
} finally {
  await peer.stop();
}
