// The contract's fingerprints (protocol/fingerprints.py in the repository, the same rules):
// a file is cut into chunk_size chunks; a chunk's fingerprint is the hex SHA-256 of its
// bytes; the file's is the hex SHA-256 of the raw chunk digests, concatenated in order
// (for an empty file, the SHA-256 of nothing). Used by the page and by the hashing worker.

export function chunkCount(fileSize, chunkSize) {
  return Math.ceil(fileSize / chunkSize);
}

export function chunkLength(index, fileSize, chunkSize) {
  return Math.min(chunkSize, fileSize - index * chunkSize);
}

export function toHex(bytes) {
  const view = bytes instanceof Uint8Array ? bytes : new Uint8Array(bytes);
  let hex = "";
  for (let i = 0; i < view.length; i += 1) hex += view[i].toString(16).padStart(2, "0");
  return hex;
}

/** The raw chunk digests (Uint8Array each) concatenated, ready for the file fingerprint. */
export function concatDigests(digests) {
  const all = new Uint8Array(digests.length * 32);
  digests.forEach((digest, index) => all.set(digest, index * 32));
  return all;
}

/**
 * The SHA-256 engines, each `async (ArrayBuffer|Uint8Array) -> Uint8Array`, fastest first:
 * - "webcrypto": the browser's own, where the page is a secure context (https, localhost);
 * - "wasm": the vendored hash-wasm (WebAssembly), elsewhere (a plain-http LAN address), several
 *   times faster than JavaScript; the app's policy admits WebAssembly ('wasm-unsafe-eval');
 * - "fallback": the vendored pure-JavaScript @noble/hashes, where WebAssembly cannot run (a browser
 *   with it turned off, as some hardened modes do).
 * The vendored ones are loaded only when needed. "auto" takes the first that works here.
 */
export function webCryptoAvailable() {
  return Boolean(globalThis.crypto && globalThis.crypto.subtle);
}

export async function sha256Engine(name = "auto") {
  if (name === "webcrypto" || (name === "auto" && webCryptoAvailable())) {
    return { name: "webcrypto", digest: async (data) => new Uint8Array(await crypto.subtle.digest("SHA-256", data)) };
  }
  if (name === "wasm" || name === "auto") {
    const engine = await wasmEngine(name === "wasm");
    if (engine) return engine;
  }
  const { sha256 } = await import("../vendor/noble-hashes/sha2.js");
  return { name: "fallback", digest: async (data) => sha256(asBytes(data)) };
}

function asBytes(data) {
  return data instanceof Uint8Array ? data : new Uint8Array(data);
}

/** hash-wasm's SHA-256, or null when WebAssembly cannot run here (unless `required`: then it throws). */
async function wasmEngine(required) {
  let hasher;
  try {
    // A UMD build, vendored unchanged: imported as a module, it puts its API on globalThis.hashwasm.
    await import("../vendor/hash-wasm/sha256.umd.min.js");
    hasher = await globalThis.hashwasm.createSHA256();
  } catch (error) {
    if (required) throw error;
    return null;
  }
  // One hasher, used from start to end with no await in between: digests never interleave.
  return { name: "wasm", digest: async (data) => hasher.init().update(asBytes(data)).digest("binary") };
}
