// Configuration keys: the PHP library's snake_case ones (`base_url`, the same JSON as every
// host) and, beside them, the camelCase spellings a JavaScript caller writes (`baseUrl`).

import { ProvisioningError } from './errors.js';

/**
 * The configuration with every key in its canonical (snake_case) spelling. An unknown key,
 * or one given in both spellings, is an `invalid-config` error.
 * @param {object} config
 * @param {string[]} keys the canonical keys
 * @param {Record<string, string>} camel camelCase spelling -> canonical key
 * @param {string} what `setting` or `server setting`, for the message
 * @returns {Record<string, any>}
 */
export function canonicalKeys(config, keys, camel, what) {
  const out = {};
  for (const [key, value] of Object.entries(config)) {
    const canonical = keys.includes(key) ? key : camel[key];
    if (canonical === undefined) {
      const known = keys.map((k) => {
        const alias = Object.keys(camel).find((c) => camel[c] === k);
        return alias === undefined ? k : `${k} (${alias})`;
      });
      throw ProvisioningError.invalidConfig(`unknown ${what} '${key}'; known: ${known.join(', ')}`);
    }
    if (Object.prototype.hasOwnProperty.call(out, canonical)) {
      throw ProvisioningError.invalidConfig(`${what} ${canonical} is given twice (as ${canonical} and in camelCase)`);
    }
    out[canonical] = value;
  }
  return out;
}
