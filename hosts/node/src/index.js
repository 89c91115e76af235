// scim-provisioner for Node.js: the component through jco, with the same API as the PHP library.
export { Runtime, transpile, defaultWasm, limitMemory, DEFAULT_MEMORY_LIMIT, DEFAULT_DEADLINE_MS } from './runtime.js';
export { Connector } from './connector.js';
export { ScimServer, Response } from './server.js';
export { SqliteDirectory } from './directory.js';
export { Selector } from './selection.js';
export { NodeHttpTransport, MAX_BODY_BYTES, originOf } from './transport.js';
export { ConsoleLogger, NullLogger, MemoryLogger, LEVELS } from './logger.js';
export {
  ProvisioningError, GuestTrap, DeadlineExceeded, MemoryLimitExceeded, TransportError, DirectoryError, RuntimeSetupError,
  PROVISIONING_CASES, TRANSPORT_CASES, DIRECTORY_CASES,
} from './errors.js';
export { USER_EVENTS } from './values.js';
