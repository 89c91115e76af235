// Not shipped: how a TypeScript user calls the package, checked by `tsc -p types/tsconfig.json`
// (hosts/node/run-tests). It imports by the package's name, so the exports map is checked too.
import http from 'node:http';

import {
  Connector, DirectoryError, FetchTransport, GuestTrap, MemoryLogger, ProvisioningError, Runtime, ScimServer, ScimServerPool, Selector,
  type CmsUserOut, type Directory, type HttpRequest, type HttpResponse, type QueryPage, type ResourceKind, type Search,
  type StoredResource, type Transport,
} from 'scim-provisioner-node';
import { SqliteDirectory } from 'scim-provisioner-node/sqlite';

/** An async directory, as a `pg` pool would back one. */
class MapDirectory implements Directory {
  #rows = new Map<string, StoredResource>();
  async get(_kind: ResourceKind, id: string): Promise<StoredResource | null> {
    return this.#rows.get(id) ?? null;
  }
  async query(_kind: ResourceKind, search: Search): Promise<QueryPage> {
    const all = [...this.#rows.values()];
    return { totalResults: all.length, resources: all.slice(search.startIndex - 1, search.startIndex - 1 + search.count) };
  }
  async create(_kind: ResourceKind, json: string, _cms: CmsUserOut | null): Promise<StoredResource> {
    const r = { id: String(this.#rows.size + 1), version: 'W/"1"', created: '', lastModified: '', json };
    this.#rows.set(r.id, r);
    return r;
  }
  replace(_kind: ResourceKind, id: string, json: string, _cms: CmsUserOut | null, _ifVersion: string | null): StoredResource {
    const r = this.#rows.get(id);
    if (!r) throw new DirectoryError('not-found', id);
    return { ...r, json };
  }
  delete(_kind: ResourceKind, id: string): boolean {
    return this.#rows.delete(id);
  }
}

/** A transport of one's own: async. */
const recording: Transport = {
  async send(request: HttpRequest): Promise<HttpResponse> {
    return { status: 404, headers: [['Content-Type', 'application/scim+json']], body: new TextEncoder().encode(request.url) };
  },
};

export async function example(): Promise<void> {
  const runtime = await Runtime.load({ deadlineMs: 5000 });
  const connector = await Connector.open(runtime, { baseUrl: 'https://scim.example/v2', tokenEnv: 'SCIM_TOKEN', policy: {} }, { logger: new MemoryLogger() });
  const legacy = await Connector.open(runtime, { base_url: 'https://scim.example/v2', token: 't' }, { transport: recording });
  const proxied = await Connector.open(runtime, { baseUrl: 'https://scim.example/v2' }, { transport: new FetchTransport('https://scim.example/v2', { noProxy: 'localhost' }) });
  try {
    const caps = await connector.testConnection();
    const bulk: number | undefined = caps.bulk?.maxOperations;
    const outcome = await connector.provision({ id: '1', fields: { name: 'alice', roles: ['a'] } }, 'created');
    if (outcome.link !== null) await connector.provision({ id: '1', fields: new Map([['name', 'alice']]) }, 'updated', outcome.link);
    const batch = await connector.provisionBatch([{ user: { id: '2', fields: [['name', 'bob']] }, event: 'created' }]);
    for (const r of batch.results) if (r instanceof ProvisioningError) console.log(r.case, r.retry, bulk);
    const plan = await connector.plan({ id: '3', fields: {} }, 'reconcile', false);
    const action: 'create' | 'update' | 'deactivate' | 'reactivate' | 'delete' | 'skip' = plan.action;
    void action;
    // @ts-expect-error an unknown event
    await connector.provision({ id: '1', fields: {} }, 'renamed');
    // @ts-expect-error a call returns a promise, not the outcome
    const notAwaited: { action: string } = connector.provision({ id: '1', fields: {} }, 'created');
    void notAwaited;
  } catch (e) {
    if (e instanceof GuestTrap) console.log(e.kind, e.call);
  } finally {
    connector.close();
    legacy.close();
    proxied.close();
  }
  // @ts-expect-error base_url and baseUrl together
  await Connector.open(runtime, { base_url: 'https://a/', baseUrl: 'https://a/' });

  const server = await ScimServer.open(runtime, { baseUrl: 'http://127.0.0.1:8080/scim/v2', token: 't', maxResults: 100 }, new MapDirectory());
  http.createServer(server.listener()).listen(8080, '127.0.0.1');
  const response = await server.handle({ method: 'GET', path: '/Users', query: 'count=1' });
  console.log(response.status, response.json());

  const pool = await ScimServerPool.open(runtime, { baseUrl: 'http://127.0.0.1:8082/scim/v2', token: 't' }, new MapDirectory(), { size: 4 });
  http.createServer(pool.listener()).listen(8082, '127.0.0.1');
  console.log(pool.size, (await pool.handle({ method: 'GET', path: '/Users' })).status);
  const sqlite = SqliteDirectory.open('/tmp/site.db', runtime);
  const other = await ScimServer.open(runtime, { base_url: 'http://127.0.0.1:8081/scim/v2', token_env: 'SCIM_TOKEN', bulk_max_payload: 1 << 20 }, sqlite);
  const page = await new Selector(runtime).select([{ id: '1', userName: 'a' }], { filter: 'userName eq "a"' });
  console.log(page.totalResults, page.indices, other.basePath);
}
