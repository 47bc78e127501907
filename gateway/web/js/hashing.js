// The page's side of fingerprinting: one Web Worker per file (hash-worker.js).

/**
 * Fingerprint `file` in a worker. Resolves {chunks, fingerprint, engine, seconds};
 * rejects with an Error whose message a person can read. `signal` (AbortSignal)
 * stops the worker at once.
 */
export function hashFile(file, chunkSize, { engine = "auto", onProgress = () => {}, signal } = {}) {
  return new Promise((resolve, reject) => {
    const worker = new Worker(new URL("./hash-worker.js", import.meta.url), { type: "module" });
    const stop = () => {
      worker.terminate();
      reject(new DOMException("stopped", "AbortError"));
    };
    if (signal) {
      if (signal.aborted) return stop();
      signal.addEventListener("abort", stop, { once: true });
    }
    const finish = () => {
      worker.terminate();
      if (signal) signal.removeEventListener("abort", stop);
    };
    worker.addEventListener("message", (event) => {
      const message = event.data;
      if (message.type === "progress") {
        onProgress(message.bytes);
      } else if (message.type === "done") {
        finish();
        resolve(message);
      } else if (message.type === "error") {
        finish();
        reject(new Error(message.message));
      }
    });
    worker.addEventListener("error", (event) => {
      finish();
      reject(new Error(`The file could not be fingerprinted (${event.message || "worker failed"}).`));
    });
    worker.postMessage({ file, chunkSize, engine });
  });
}
