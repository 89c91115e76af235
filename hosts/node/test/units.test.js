// The library's own pieces without the component: memory limit rewrite, loggers, value
// conversions and origins.
import assert from 'node:assert/strict';
import { test } from 'node:test';

import { ConsoleLogger, limitMemory, originOf } from '../src/index.js';
import { RedactingLogger } from '../src/logger.js';
import { headerPairs, userFromWit, userToWit } from '../src/values.js';

// (module (memory (export "memory") 1) (func (export "grow") (param i32) (result i32) local.get 0 memory.grow))
const MODULE = Uint8Array.from([
  0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00,
  0x01, 0x06, 0x01, 0x60, 0x01, 0x7f, 0x01, 0x7f, // type: (i32) -> i32
  0x03, 0x02, 0x01, 0x00, // func 0: type 0
  0x05, 0x03, 0x01, 0x00, 0x01, // memory: min 1, no max
  0x07, 0x11, 0x02, 0x06, 0x6d, 0x65, 0x6d, 0x6f, 0x72, 0x79, 0x02, 0x00, 0x04, 0x67, 0x72, 0x6f, 0x77, 0x00, 0x00, // exports
  0x0a, 0x08, 0x01, 0x06, 0x00, 0x20, 0x00, 0x40, 0x00, 0x0b, // code: local.get 0; memory.grow 0
]);

test('limitMemory gives the module\'s memory a maximum the guest cannot grow past', async () => {
  const plain = new WebAssembly.Instance(new WebAssembly.Module(MODULE));
  assert.equal(plain.exports.grow(10), 1, 'without a limit it grows');
  const limited = new WebAssembly.Instance(new WebAssembly.Module(limitMemory(MODULE, 4)));
  assert.equal(limited.exports.grow(2), 1);
  assert.equal(limited.exports.grow(1), 3);
  assert.equal(limited.exports.grow(1), -1, 'memory.grow fails at the maximum');
  assert.equal(limited.exports.memory.buffer.byteLength, 4 * 65536);
  const noMemory = MODULE.slice(0, 8);
  assert.equal(limitMemory(noMemory, 4), noMemory);
});

test('loggers: levels filter, unknown levels are refused, secrets are redacted', async () => {
  const lines = [];
  const stream = { write: (s) => lines.push(s) };
  const log = new ConsoleLogger({ level: 'info', stream });
  log.log('debug', 'hidden');
  log.log('warn', 'shown');
  assert.equal(lines.length, 1);
  assert.match(lines[0], /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ warn: shown\n$/);
  assert.throws(() => new ConsoleLogger({ level: 'loud' }), /unknown log level loud/);
  const inner = { got: [], log(l, m) { this.got.push(m); } };
  const r = new RedactingLogger(inner, ['s3cret-token', 'abc']);
  r.log('info', 'Authorization: Bearer s3cret-token (abc)');
  assert.deepEqual(inner.got, ['Authorization: Bearer <redacted> (abc)']);
  const broken = new RedactingLogger({ log() { throw new Error('disk full'); } }, []);
  assert.doesNotThrow(() => broken.log('error', 'x'));
});

test('CMS users convert to the WIT and back, in order, from an object, a Map or pairs', async () => {
  const fields = { name: 'zoë', n: 3.5, ok: false, roles: ['a', 'b'], gone: null };
  const wit = userToWit({ id: '1', fields });
  assert.deepEqual(wit.fields.map(([k, v]) => [k, v.tag]), [['name', 'text'], ['n', 'number'], ['ok', 'boolean'], ['roles', 'text-list'], ['gone', 'null']]);
  assert.equal(wit.active, true);
  assert.deepEqual(userFromWit(wit), { id: '1', fields, active: true });
  assert.deepEqual(userToWit({ id: '1', fields: new Map(Object.entries(fields)) }), wit);
  assert.deepEqual(userToWit({ id: '1', fields: Object.entries(fields) }), wit);
  assert.throws(() => userToWit({ id: '1', fields: { x: { nested: true } } }), /field x: a CMS field is a string, number, boolean, list of strings or null, not Object/);
  assert.throws(() => userToWit({ id: '1', fields: { x: [{}] } }), /only strings/);
  assert.throws(() => userToWit({ id: '1', fields: {}, active: 'yes' }), /active must be a boolean/);
});

test('origins and headers normalise', async () => {
  assert.equal(originOf('HTTPS://Example.COM/scim'), 'https://example.com:443');
  assert.equal(originOf('http://127.0.0.1:8080/x?y'), 'http://127.0.0.1:8080');
  assert.equal(originOf('ftp://example.com/'), null);
  assert.equal(originOf('not a url'), null);
  assert.deepEqual(headerPairs(['A', '1', 'B', '2']), [['A', '1'], ['B', '2']]);
  assert.deepEqual(headerPairs({ a: '1', b: ['2', '3'] }), [['a', '1'], ['b', '2'], ['b', '3']]);
  assert.throws(() => headerPairs([['only-name']]), /not a \[name, value\] pair/);
});
