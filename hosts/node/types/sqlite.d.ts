// Typings of scim-provisioner-node/sqlite (src/sqlite.js): needs the optional peer better-sqlite3.
import type { CmsUserOut, Directory, QueryPage, ResourceKind, Runtime, Search, Selector, StoredResource } from './index.js';

export declare class SqliteDirectory implements Directory {
  /** Opens (creating if needed) a SQLite file; `cmsTable` (default `users`, null for none) keeps each SCIM user as a CMS user. */
  static open(file: string, runtime: Runtime, options?: { cmsTable?: string | null }): SqliteDirectory;
  readonly selector: Selector;
  readonly cmsTable: string | null;
  close(): void;
  cmsUser(id: string): { id: string; name: string; mail: string; fields: Record<string, unknown>; active: boolean } | null;
  get(kind: ResourceKind, id: string): StoredResource | null;
  query(kind: ResourceKind, search: Search): Promise<QueryPage>;
  create(kind: ResourceKind, json: string, cms: CmsUserOut | null): StoredResource;
  replace(kind: ResourceKind, id: string, json: string, cms: CmsUserOut | null, ifVersion: string | null): StoredResource;
  delete(kind: ResourceKind, id: string): boolean;
}
