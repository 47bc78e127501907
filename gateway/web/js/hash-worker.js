// Fingerprints a file off the page's thread (a module Web Worker), so the page
// stays responsive while gigabytes are read and hashed.
//
// In:  {file: File|Blob, chunkSize, engine: "auto"|"webcrypto"|"fallback"}
// Out: {type: "progress", bytes}            bytes hashed so far, at most every 100 ms
//      {type: "done", chunks, fingerprint, engine, seconds}
//      {type: "error", message}
import { chunkCount, concatDigests, sha256Engine, toHex } from "./fingerprint.js";

// Reads and WebCrypto digests both run off this thread: a few chunks in flight
// (each read, then digested) keep the disk and the cores busy. Memory: at most
// WINDOW chunks at a time.
const WINDOW = 4;

self.addEventListener("message", async (event) => {
  const { file, chunkSize, engine: wanted = "auto" } = event.data;
  try {
    const started = performance.now();
    const engine = await sha256Engine(wanted);
    const digests = await hashChunks(file, chunkSize, engine, throttledProgress());
    const whole = await engine.digest(concatDigests(digests));
    self.postMessage({
      type: "done",
      chunks: digests.map(toHex),
      fingerprint: toHex(whole),
      engine: engine.name,
      seconds: (performance.now() - started) / 1000,
    });
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

async function hashChunks(file, chunkSize, engine, onProgress) {
  const count = chunkCount(file.size, chunkSize);
  const digests = new Array(count);
  const inFlight = new Set();
  for (let index = 0; index < count; index += 1) {
    const start = index * chunkSize;
    const end = Math.min(file.size, start + chunkSize);
    const job = file.slice(start, end).arrayBuffer().then((data) => engine.digest(data)).then((digest) => {
      digests[index] = digest;
      inFlight.delete(job);
      onProgress(end - start);
    });
    inFlight.add(job);
    if (inFlight.size >= WINDOW) await Promise.race(inFlight);
  }
  await Promise.all(inFlight);
  return digests;
}
