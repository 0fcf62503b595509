// Proof of work for anonymous joins in attack mode, solved with WebCrypto.
//
// The server (townhall/admission/proof_of_work.py) hands out a signed
// challenge token and a difficulty in bits. We look for a solution such that
//
//   SHA-256(ASCII bytes of  challenge + ":" + solution)
//
// starts with `bits` zero bits (bytes in order, most significant bit first).
// Solutions are 0, 1, 2, ... written in base 36 (lower case), exactly as the
// Python solver counts, so both find the same first answer. Keep the two in
// step: the server checks one hash, and any difference in these bytes means
// every browser answer is refused.
//
// crypto.subtle.digest runs off the main thread, so the page stays responsive;
// hashing a batch at once keeps the promise overhead small.

const encoder = new TextEncoder();
const DEFAULT_BATCH = 256;
const DEFAULT_MAX_ATTEMPTS = 2 ** 26;

/** True if `digest` (a Uint8Array) starts with `bits` zero bits. */
export function hasLeadingZeroBits(digest, bits) {
  let i = 0;
  for (; bits >= 8; bits -= 8, i += 1) {
    if (digest[i] !== 0) return false;
  }
  return bits === 0 || digest[i] >> (8 - bits) === 0;
}

/**
 * Finds a solution for `challenge` at difficulty `bits`.
 * @param {string} challenge the challenge token, as the server sent it
 * @param {number} bits leading zero bits required
 * @param {{signal?: AbortSignal, maxAttempts?: number, batch?: number,
 *          onProgress?: (attempts: number) => void}} [options]
 * @returns {Promise<string>} the solution to send back with the challenge
 */
export async function solve(challenge, bits, options = {}) {
  const {
    signal,
    maxAttempts = DEFAULT_MAX_ATTEMPTS,
    batch = DEFAULT_BATCH,
    onProgress,
  } = options;
  const prefix = `${challenge}:`;
  for (let start = 0; start < maxAttempts; start += batch) {
    signal?.throwIfAborted();
    const count = Math.min(batch, maxAttempts - start);
    const candidates = new Array(count);
    const digests = new Array(count);
    for (let i = 0; i < count; i += 1) {
      candidates[i] = (start + i).toString(36);
      digests[i] = crypto.subtle.digest('SHA-256', encoder.encode(prefix + candidates[i]));
    }
    const results = await Promise.all(digests);
    for (let i = 0; i < count; i += 1) {
      if (hasLeadingZeroBits(new Uint8Array(results[i]), bits)) return candidates[i];
    }
    onProgress?.(start + count);
  }
  throw new Error(`no proof-of-work solution within ${maxAttempts} attempts`);
}
