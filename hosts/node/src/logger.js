// Loggers. The component's levels are trace, debug, info, warn, error; a logger is any
// object with `log(level, message)`.

/** @typedef {'trace'|'debug'|'info'|'warn'|'error'} Level */
/** @typedef {{log(level: Level, message: string): void}} Logger */

export const LEVELS = { trace: 0, debug: 1, info: 2, warn: 3, error: 4 };

/** Writes lines at or above a level to a stream (stderr by default): `2026-11-30T14:00:00Z warn: message`. */
export class ConsoleLogger {
  /** @param {{level?: Level, stream?: {write(s: string): unknown}}} [options] */
  constructor({ level = 'warn', stream = process.stderr } = {}) {
    if (!(level in LEVELS)) throw new TypeError(`unknown log level ${level}; use one of ${Object.keys(LEVELS).join(', ')}`);
    this.min = LEVELS[level];
    this.stream = stream;
  }

  /** @param {Level} level @param {string} message */
  log(level, message) {
    if ((LEVELS[level] ?? LEVELS.info) < this.min) return;
    this.stream.write(`${new Date().toISOString().replace(/\.\d{3}Z$/, 'Z')} ${level}: ${message}\n`);
  }
}

/** Drops everything. */
export class NullLogger {
  log() {}
}

/** Keeps lines in memory (for tests and for hosts that ship logs elsewhere). */
export class MemoryLogger {
  constructor() {
    /** @type {{level: Level, message: string}[]} */
    this.lines = [];
  }

  log(level, message) {
    this.lines.push({ level, message });
  }
}

/**
 * @internal Replaces each secret (4 characters or more) with `<redacted>` in every line, then
 * forwards; a failing logger never breaks a call.
 */
export class RedactingLogger {
  /** @param {Logger} inner @param {string[]} secrets */
  constructor(inner, secrets) {
    if (!inner || typeof inner.log !== 'function') throw new TypeError('a logger is an object with a log(level, message) method');
    this.inner = inner;
    this.secrets = secrets.filter((s) => typeof s === 'string' && s.length >= 4);
  }

  scrub(text) {
    let out = String(text);
    for (const s of this.secrets) out = out.split(s).join('<redacted>');
    return out;
  }

  log(level, message) {
    try {
      this.inner.log(level, this.scrub(message));
    } catch {
      // A logger that fails must not fail the call.
    }
  }
}
