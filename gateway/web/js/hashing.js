// The page's side of fingerprinting: a few Web Workers per file (hash-worker.js), each hashing every
// n-th chunk, since chunk fingerprints do not depend on each other. One worker reads and hashes at
// about one core's pace; the upload cannot start before the last chunk is hashed (POST /files carries
// every fingerprint), so the other cores help while they are otherwise idle.
import { chunkCount, concatDigests, sha256Engine, toHex } from "./fingerprint.js";

const MAX_WORKERS = 4;

/** Workers for one file: one per core the browser admits to, at most MAX_WORKERS. */
export function hashWorkers() {
  return Math.max(1, Math.min(MAX_WORKERS, globalThis.navigator?.hardwareConcurrency || 1));
}

/**
 * Fingerprint `file`. Resolves {chunks, fingerprint, engine, seconds}; rejects with an Error whose
 * message a person can read. `signal` (AbortSignal) stops the workers at once. `onProgress(bytes)`:
 * bytes hashed so far, all workers together.
 */
export function hashFile(file, chunkSize, { engine = "auto", workers = hashWorkers(), onProgress = () => {}, signal } = {}) {
  const started = performance.now();
  const count = chunkCount(file.size, chunkSize);
  const step = Math.max(1, Math.min(workers, count));
  const running = [];
  const hashed = new Array(step).fill(0);
  return new Promise((resolve, reject) => {
    const fail = (error) => {
      for (const worker of running) worker.terminate();
      if (signal) signal.removeEventListener("abort", stop);
      reject(error);
    };
    const stop = () => fail(new DOMException("stopped", "AbortError"));
    if (signal) {
      if (signal.aborted) return stop();
      signal.addEventListener("abort", stop, { once: true });
    }
    const share = (first) => new Promise((done, failed) => {
      const worker = new Worker(new URL("./hash-worker.js", import.meta.url), { type: "module" });
      running.push(worker);
      worker.addEventListener("message", (event) => {
        const message = event.data;
        if (message.type === "progress") {
          hashed[first] = message.bytes;
          onProgress(hashed.reduce((a, b) => a + b, 0));
        } else if (message.type === "done") {
          worker.terminate();
          done(message);
        } else if (message.type === "error") {
          failed(new Error(message.message));
        }
      });
      worker.addEventListener("error", (event) => {
        failed(new Error(`The file could not be fingerprinted (${event.message || "worker failed"}).`));
      });
      worker.postMessage({ file, chunkSize, engine, first, step });
    });
    Promise.all(Array.from({ length: step }, (_, first) => share(first)))
      .then(async (answers) => {
        const digests = new Array(count);
        answers.forEach((answer, first) => answer.digests.forEach((digest, j) => { digests[first + j * step] = digest; }));
        const whole = await (await sha256Engine(answers[0].engine)).digest(concatDigests(digests));
        if (signal) signal.removeEventListener("abort", stop);
        resolve({
          chunks: digests.map(toHex),
          fingerprint: toHex(whole),
          engine: answers[0].engine,
          seconds: (performance.now() - started) / 1000,
        });
      })
      .catch(fail);
  });
}
