#!/usr/bin/env node
// Serves SCIM from a SQLite file through the component's server role (installed as the
// command scim-provisioner-serve; needs the optional peer better-sqlite3):
//   scim-provisioner-serve --database FILE [--listen 127.0.0.1:8080] [--base-path /scim/v2]
// The bearer token comes from env SCIM_TOKEN. Prints one line, `listening BASE_URL`, once ready.
import http from 'node:http';
import { parseArgs } from 'node:util';

import { ConsoleLogger, Runtime, ScimServer } from '../src/index.js';

const { values } = parseArgs({
  options: {
    database: { type: 'string' },
    listen: { type: 'string', default: '127.0.0.1:8080' },
    'base-path': { type: 'string', default: '/scim/v2' },
    'log-level': { type: 'string', default: 'warn' },
  },
});
if (!values.database) {
  console.error('usage: scim-provisioner-serve --database FILE [--listen HOST:PORT] [--base-path /scim/v2]   (token in env SCIM_TOKEN)');
  process.exit(2);
}
const token = process.env.SCIM_TOKEN;
if (!token) {
  console.error('set SCIM_TOKEN to the bearer token clients must present');
  process.exit(2);
}
const [host, port] = values.listen.split(/:(?=\d+$)/);
let SqliteDirectory;
try {
  ({ SqliteDirectory } = await import('../src/sqlite.js'));
} catch (e) {
  console.error(`the SQLite directory needs better-sqlite3 (npm install better-sqlite3): ${e.message}`);
  process.exit(2);
}
const runtime = await Runtime.load();
const directory = SqliteDirectory.open(values.database, runtime);
const logger = new ConsoleLogger({ level: values['log-level'] });
const server = http.createServer();
await new Promise((resolve) => server.listen(Number(port), host, resolve));
const baseUrl = `http://${host}:${server.address().port}${values['base-path']}`;
const scim = await ScimServer.open(runtime, { base_url: baseUrl, token_env: 'SCIM_TOKEN' }, directory, { logger });
server.on('request', scim.listener());
console.log(`listening ${baseUrl}`);
const stop = () => server.close(() => { directory.close(); process.exit(0); });
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
