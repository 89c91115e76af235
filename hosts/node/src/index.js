// scim-provisioner for Node.js: the component through jco, with the same API as the PHP
// library, every call returning a promise. The SQLite directory is the subpath export
// `./sqlite` (src/sqlite.js), so this entry never loads better-sqlite3.
export { Runtime, transpile, defaultWasm, limitMemory, DEFAULT_MEMORY_LIMIT, DEFAULT_DEADLINE_MS } from './runtime.js';
export { Connector } from './connector.js';
export { ScimServer, ScimServerPool, Response } from './server.js';
export { Selector } from './selection.js';
export { FetchTransport, MAX_BODY_BYTES, originOf } from './transport.js';
export { ConsoleLogger, NullLogger, MemoryLogger, LEVELS } from './logger.js';
export {
  ProvisioningError, GuestTrap, DeadlineExceeded, MemoryLimitExceeded, TransportError, DirectoryError, RuntimeSetupError,
  PROVISIONING_CASES, TRANSPORT_CASES, DIRECTORY_CASES,
} from './errors.js';
export { USER_EVENTS } from './values.js';
