// Fingerprints chunks of a file off the page's thread (a module Web Worker), so the page stays
// responsive while gigabytes are read and hashed. Several run at once for one file (hashing.js), each
// hashing every `step`-th chunk from `first`.
//
// In:  {file: File|Blob, chunkSize, engine: "auto"|"webcrypto"|"wasm"|"fallback", first, step}
// Out: {type: "progress", bytes}            bytes hashed so far by this worker, at most every 100 ms
//      {type: "done", digests, engine}      the raw SHA-256 (Uint8Array) of chunks first, first+step, ...
//      {type: "error", message}
import { chunkCount, sha256Engine } from "./fingerprint.js";

// Reads and digests of a worker overlap: a few chunks in flight (each read, then digested) keep the
// disk and the cores busy. Memory: at most WINDOW chunks at a time per worker.
const WINDOW = 2;

self.addEventListener("message", async (event) => {
  const { file, chunkSize, engine: wanted = "auto", first = 0, step = 1 } = event.data;
  try {
    const engine = await sha256Engine(wanted);
    const digests = await hashChunks(file, chunkSize, first, step, engine, throttledProgress());
    self.postMessage({ type: "done", digests, engine: engine.name });
  } catch (error) {
    const message = error && error.name === "NotReadableError"
      ? "The file could not be read. It may have been moved or changed; pick it again."
      : `The file could not be fingerprinted: ${error && error.message ? error.message : error}`;
    self.postMessage({ type: "error", message });
  }
});

function throttledProgress() {
  let bytes = 0;
  let last = 0;
  return (added) => {
    bytes += added;
    const now = performance.now();
    if (now - last >= 100) {
      last = now;
      self.postMessage({ type: "progress", bytes });
    }
  };
}

async function hashChunks(file, chunkSize, first, step, engine, onProgress) {
  const count = chunkCount(file.size, chunkSize);
  const digests = [];
  const inFlight = new Set();
  for (let index = first, mine = 0; index < count; index += step, mine += 1) {
    const start = index * chunkSize;
    const end = Math.min(file.size, start + chunkSize);
    const job = file.slice(start, end).arrayBuffer().then((data) => engine.digest(data)).then((digest) => {
      digests[mine] = digest;
      inFlight.delete(job);
      onProgress(end - start);
    });
    inFlight.add(job);
    if (inFlight.size >= WINDOW) await Promise.race(inFlight);
  }
  await Promise.all(inFlight);
  return digests;
}
