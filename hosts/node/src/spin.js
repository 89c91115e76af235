// Waiting on a SharedArrayBuffer flag for the other side of a guest call (src/guest.js and
// src/guest-worker.js): spin briefly, then sleep in Atomics.wait.

/**
 * How long a wait first spins on the flag before it sleeps in Atomics.wait, in ms. A guest
 * call takes microseconds, but waking a sleeping thread took about 20 µs each way on an idle
 * machine, more than the call itself; spinning this long catches a quick answer awake.
 */
export const SPIN_MS = 0.05;

/**
 * Spins until `flags[index]` is no longer `seen` or `until` (performance.now() time) passes;
 * whether it changed.
 * @param {Int32Array} flags
 * @param {number} index
 * @param {number} seen
 * @param {number} until
 * @returns {boolean}
 */
export function spinUntilChanged(flags, index, seen, until) {
  for (let i = 0; ; i++) {
    if (Atomics.load(flags, index) !== seen) return true;
    // The clock is dearer than the load: read it every 64 turns.
    if ((i & 63) === 63 && performance.now() >= until) return false;
  }
}
