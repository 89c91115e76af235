// Per-call cost of the component under the Node host (jco): `plan` (no request) and a
// `provision` that finds nothing changed (no request), `mapUser`, and opening a connector on
// a fresh instance, after warm-up.
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
  // Warm up (the JIT needs a while), then three rounds; the best and the median round.
  const measure = (calls, fn) => {
    for (let i = 0; i < Math.max(1000, calls / 2); i++) fn();
    const rounds = [];
    for (let r = 0; r < 3; r++) {
      const started = process.hrtime.bigint();
      for (let i = 0; i < calls; i++) fn();
      rounds.push(Number(process.hrtime.bigint() - started) / 1000 / calls);
    }
    rounds.sort((a, b) => a - b);
    return `${rounds[0].toFixed(2)} µs/call (median of 3 rounds ${rounds[1].toFixed(2)})`;
  };
  const plan = measure(planCalls, () => connector.plan(user, 'updated', true));
  const { link } = connector.provision(user, 'created', null);
  const provision = measure(provisionCalls, () => {
    const out = connector.provision(user, 'updated', link);
    if (out.action !== 'unchanged' || out.requests !== 0) throw new Error(`expected unchanged without a request, got ${JSON.stringify(out)}`);
  });
  const map = measure(planCalls, () => connector.mapUser(user));
  const open = measure(200, () => Connector.open(runtime, { base_url: peer.baseUrl, token: peer.token }, { logger: new MemoryLogger() }).close());
  console.log(`node ${process.version}, jco 1.35.0 (instantiation sync), component ${runtime.wasmPath}`);
  console.log(`plan:                  ${plan}, ${planCalls} calls a round`);
  console.log(`provision, no change:  ${provision}, ${provisionCalls} calls a round, 0 requests each`);
  console.log(`mapUser:               ${map}, ${planCalls} calls a round`);
  console.log(`Connector.open+close:  ${open}, 200 a round (a fresh instance each)`);
  connector.close();
} finally {
  await peer.stop();
}
