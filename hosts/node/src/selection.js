// The component's own filter engine (WIT `selection.select`) on an instance of its own, for
// directories that cannot run a SCIM filter or sort themselves (SqliteDirectory beyond its
// SQL fast paths). The PHP host calls the same Rust code natively (scimp_select).

import { DirectoryError } from './errors.js';
import { NullLogger, RedactingLogger } from './logger.js';
import { Session } from './session.js';

const U32 = 0xffffffff;

function u32(n, name) {
  if (!Number.isInteger(n) || n < 0) throw new TypeError(`search.${name} is a whole number`);
  return Math.min(n, U32);
}

/**
 * Filters, sorts and pages resources with the component's own code, so a Node directory never
 * disagrees with the guest on what a filter, a sort or a page means.
 *
 * It runs on a dedicated instance: the server's instance is in the middle of its `handle`
 * call while it asks the directory (a component instance is not re-entrant), and `select`
 * imports nothing. After a trap the next call gets a fresh instance, as every session does.
 */
export class Selector extends Session {
  /**
   * @param {import('./runtime.js').Runtime} runtime
   * @param {{logger?: import('./logger.js').Logger}} [options]
   */
  constructor(runtime, { logger } = {}) {
    super(runtime, new RedactingLogger(logger ?? new NullLogger(), []));
  }

  /**
   * Which of `resources` `search` selects.
   * @param {Array<string|object>} resources SCIM JSON as a client sees it (with `id` and
   *   `meta`), as text or as objects
   * @param {{filter?: string|null, startIndex?: number, count?: number, sortBy?: string|null, sortDescending?: boolean}} search
   * @returns {Promise<{totalResults: number, indices: number[]}>} the page, as indices into `resources`, in order
   * @throws {DirectoryError} `invalid-filter` for a filter that does not parse; `other` for a
   *   resource that is not JSON or a bad `sortBy`
   * @throws {import('./errors.js').GuestTrap}
   */
  async select(resources, search) {
    if (!Array.isArray(resources)) throw new TypeError('resources is an array');
    if (search === null || typeof search !== 'object') throw new TypeError('search is {filter, startIndex, count, sortBy, sortDescending}');
    const texts = resources.map((r) => (typeof r === 'string' ? r : JSON.stringify(r)));
    const wit = {
      filter: search.filter ?? undefined,
      startIndex: u32(search.startIndex ?? 1, 'startIndex'),
      count: u32(search.count ?? U32, 'count'),
      sortBy: search.sortBy ?? undefined,
      sortDescending: Boolean(search.sortDescending),
    };
    const out = await this.invoke('select', [texts, wit]);
    const indices = Array.from(out.indices, Number);
    if (indices.some((i) => i >= texts.length)) throw new DirectoryError('other', 'the filter engine returned an index out of range');
    return { totalResults: Number(out.totalResults), indices };
  }

  /** @protected The selection interface has no resource to open: its functions are free. */
  openCall() {
    return null;
  }

  /** @protected */
  errorFromWit(payload) {
    return DirectoryError.fromWit(payload);
  }

  toJSON() {
    return { selector: true };
  }
}
