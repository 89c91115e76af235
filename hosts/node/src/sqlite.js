// The subpath export `scim-provisioner-node/sqlite`: the SQLite directory, which needs the
// optional peer dependency better-sqlite3 (a native addon). The main entry never loads it.
export { SqliteDirectory } from './directory.js';
