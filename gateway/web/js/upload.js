// One file's upload: the same chunked, store-verified, resumable flow as `dbx upload`
// (client/upload.py):
//
// 1. Fingerprint the file in a Web Worker (hashing.js).
// 2. Look for an earlier upload of it (GET /files?fingerprint=), then announce it:
//    POST /files answers 201 (new), 200 (resumed: the chunks the store already holds
//    say "uploaded") or status "uploaded" at once (the user already has this content).
// 3. PUT every other chunk straight to the store, PARALLEL at a time, with the
//    presigned URL and signed headers of POST .../upload-urls (fetched in batches, on
//    demand, renewed on 403 or shortly before they expire), retrying with backoff.
//    The bytes never pass through the gateway, which learns from the store.
// 4. POST .../complete (resending any chunk the store says it lacks), then wait until
//    the gateway has verified the file.
//
// Pausing aborts the requests in flight; resuming asks the gateway again. After a
// reload, picking the same file again resumes: step 2 finds the upload and the store
// tells which chunks it has, so only the missing ones are sent.
import { ApiError } from "./api.js";
import { chunkCount, chunkLength } from "./fingerprint.js";
import { quotedName } from "./format.js";
import { hashFile } from "./hashing.js";

export const PARALLEL = 4;
const RETRIES = 6;
const BACKOFF_BASE_MS = 500;
const BACKOFF_MAX_MS = 30_000;
const URL_MARGIN_MS = 30_000; // a URL expiring sooner than this is replaced before use
const URL_BATCH = 16;
const POLL_TIMEOUT_MS = 600_000;
const DIGEST_ERRORS = new Set(["BadDigest", "InvalidDigest", "XAmzContentChecksumMismatch"]);
const MIME_TYPE = /^[A-Za-z0-9][\w.+-]*\/[A-Za-z0-9][\w.+-]*$/;
const SPEED_WINDOW_MS = 5000;
// No byte acknowledged for this long while sending: the upload shows as stalled ("waiting for the
// store"), not with the speed and time left it had, until bytes move again.
const STALL_MS = 10_000;
const STALL_CHECK_MS = 1000;

/** An upload's states, named once: the engine moves between them, the views read them. */
export const State = Object.freeze({
  WAITING: "waiting", // added, not started
  HASHING: "hashing", // fingerprinting in the worker
  STARTING: "starting", // announcing to the gateway
  SENDING: "sending", // chunks on their way to the store
  FINISHING: "finishing", // asking the gateway to complete, waiting for its verification
  PAUSED: "paused", // stopped by the user or by a problem they can fix; Resume goes on
  DONE: "done", // verified and in the user's files
  FAILED: "failed",
  CANCELLED: "cancelled",
});
/** Talking to the gateway or the store: what Pause stops. */
export const TALKING = new Set([State.STARTING, State.SENDING, State.FINISHING]);
/** Working: leaving the page now interrupts the upload. */
export const WORKING = new Set([State.HASHING, ...TALKING]);
/** Over: nothing more happens to it. */
export const OVER = new Set([State.DONE, State.FAILED, State.CANCELLED]);

/** A problem the user can fix and then press Resume (the upload is kept, paused). */
class PauseError extends Error {}
/** The store forgot the multipart upload: announce the file again. */
class StartOver extends Error {}
const NO_MORE = Symbol("no more chunks to send");

export function backoffDelay(attempt) {
  const delay = Math.min(BACKOFF_MAX_MS, BACKOFF_BASE_MS * 2 ** attempt);
  return delay * (0.75 + Math.random() * 0.5);
}

function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

function expiryMs(value) {
  if (typeof value === "number") return value * 1000;
  if (typeof value === "string") {
    const asNumber = Number(value);
    if (Number.isFinite(asNumber)) return asNumber * 1000;
    const parsed = Date.parse(value);
    if (Number.isFinite(parsed)) return parsed;
  }
  return null;
}

function s3Field(xml, name) {
  const match = new RegExp(`<${name}>([^<]*)</${name}>`).exec(xml || "");
  return match ? match[1].trim() : "";
}

const LOOPBACK_HOST = /^(localhost|.+\.localhost|127(\.\d{1,3}){3}|\[::1\])$/i;

/**
 * Why `target` is out of this page's reach, or "" when nothing is known to be wrong: a loopback address
 * handed to a page that came from another address names the browser's own machine (the server was
 * started for its own machine only), and Chromium refuses such requests anyway. Said at once, instead
 * of half a minute of retries ending in "Cannot reach the storage server".
 */
export function outOfReach(page, target) {
  let pageHost;
  let targetUrl;
  try {
    pageHost = new URL(page).hostname;
    targetUrl = new URL(target);
  } catch {
    return "";
  }
  if (LOOPBACK_HOST.test(pageHost) || !LOOPBACK_HOST.test(targetUrl.hostname)) return "";
  return (
    `The storage server's address, ${targetUrl.host}, is a loopback address: it names this computer, ` +
    `not the server at ${pageHost}. The server must be started with the address other machines use ` +
    "(./dev up --address; see the README, \"From other machines\")."
  );
}

function hostOf(url) {
  try {
    return new URL(url).host;
  } catch {
    return url;
  }
}

export class Upload {
  /**
   * file: a File. api: the Api. config: GET /config's answer. onChange(upload): re-render.
   * onFinished(upload): the file turned "uploaded". engine: "auto" | "webcrypto" | "fallback".
   * place: where in the tree it goes (contract v1.2): {parent_id} or {path} (the whole path, missing
   * folders made); none: the root, under its name.
   */
  constructor(file, { api, config, onChange = () => {}, onFinished = () => {}, engine = "auto", place = null }) {
    this.file = file;
    this.place = place;
    this.name = file.name;
    this.size = file.size;
    this.api = api;
    this.chunkSize = config.chunk_size;
    this.maxFileSize = config.max_file_size;
    this.onChange = onChange;
    this.onFinished = onFinished;
    this.engine = engine;
    this.state = State.WAITING;
    this.message = "";
    this.hashedBytes = 0;
    this.hash = null; // {chunks, fingerprint, engine, seconds}
    this.fileId = null;
    this.total = chunkCount(this.size, this.chunkSize);
    this.pending = new Set(); // chunk indexes the store does not hold yet
    this.doneBytes = 0; // bytes of chunks the store holds
    this.inflight = new Map(); // index -> {xhr, loaded}
    this.urls = new Map(); // index -> {url, method, headers, expiresAt}
    this.urlLock = Promise.resolve();
    this.generation = 0; // bumped by pause and cancel: work of an older generation stops
    this.hashAbort = new AbortController();
    this.stats = { chunksSkipped: 0, resumed: false }; // what the view tells of the upload
    this.samples = [];
    this.startedAt = 0;
    this.finishedAt = 0;
    this.lastProgressAt = 0; // when the store (or the network on its way) last took a byte
    this.stalled = false;
    this.stallTimer = null;
  }

  // ---- what the page shows -----------------------------------------------------------

  get sentBytes() {
    let inflight = 0;
    for (const entry of this.inflight.values()) inflight += entry.loaded;
    return Math.min(this.size, this.doneBytes + inflight);
  }

  /** Upload progress in percent; 100 only once the gateway has verified the file. */
  get percent() {
    if (this.state === State.DONE) return 100;
    if (!this.size) return 0;
    return Math.min(99, Math.floor((this.sentBytes / this.size) * 100));
  }

  get hashPercent() {
    return this.size ? Math.floor((this.hashedBytes / this.size) * 100) : 100;
  }

  /** Bytes per second over the last few seconds; 0 while stalled. */
  get speed() {
    if (this.state !== State.SENDING || this.stalled || this.samples.length < 2) return 0;
    const [t0, b0] = this.samples[0];
    const [t1, b1] = this.samples[this.samples.length - 1];
    return t1 > t0 ? ((b1 - b0) * 1000) / (t1 - t0) : 0;
  }

  get secondsLeft() {
    const speed = this.speed;
    return speed > 0 ? (this.size - this.sentBytes) / speed : Infinity;
  }

  get chunksInStore() {
    return this.total - this.pending.size;
  }

  changed() {
    if (this.state === State.SENDING) {
      const now = performance.now();
      this.samples.push([now, this.sentBytes]);
      while (this.samples.length > 2 && now - this.samples[0][0] > SPEED_WINDOW_MS) this.samples.shift();
    }
    this.onChange(this);
  }

  setState(state, message = "") {
    this.state = state;
    this.message = message;
    if (state !== State.SENDING) this.samples = [];
    this.watchForStalls(state === State.SENDING);
    this.changed();
  }

  /** A byte was taken (upload progress, or a chunk the store answered): not stalled. */
  progressed() {
    this.lastProgressAt = performance.now();
    if (this.stalled) {
      this.stalled = false;
      this.samples = []; // the speed from here on, not averaged with the stall
    }
  }

  /** While sending, look once a second whether bytes stopped moving for STALL_MS. */
  watchForStalls(on) {
    if (on && !this.stallTimer) {
      this.lastProgressAt = performance.now();
      this.stallTimer = setInterval(() => {
        const stalled = performance.now() - this.lastProgressAt > STALL_MS;
        if (stalled !== this.stalled) {
          this.stalled = stalled;
          this.samples = [];
        }
        if (stalled) this.onChange(this); // the seconds waited so far, once a second
      }, STALL_CHECK_MS);
    } else if (!on && this.stallTimer) {
      clearInterval(this.stallTimer);
      this.stallTimer = null;
      this.stalled = false;
    }
  }

  /** Seconds since a byte was last taken (while stalled). */
  get stalledFor() {
    return Math.floor((performance.now() - this.lastProgressAt) / 1000);
  }

  // ---- the controls ----------------------------------------------------------------

  async start() {
    if (this.maxFileSize && this.size > this.maxFileSize) {
      return this.fail(`${quotedName(this.name)} is too large: this server takes files up to ${this.maxFileSize} bytes.`);
    }
    this.startedAt = performance.now();
    this.setState(State.HASHING);
    try {
      this.hash = await hashFile(this.file, this.chunkSize, {
        engine: this.engine,
        signal: this.hashAbort.signal,
        onProgress: (bytes) => {
          this.hashedBytes = bytes;
          this.changed();
        },
      });
    } catch (error) {
      if (error.name !== "AbortError") this.fail(error.message);
      return;
    }
    this.hashedBytes = this.size;
    await this.drive(true);
  }

  pause(message = "Paused.") {
    if (!TALKING.has(this.state)) return;
    this.generation += 1;
    this.abortInflight();
    this.setState(State.PAUSED, message);
  }

  resume() {
    if (this.state !== State.PAUSED) return;
    // Announce again: the gateway asks the store which chunks it holds now.
    this.drive(true);
  }

  async cancel() {
    if (this.state === State.DONE || this.state === State.CANCELLED) return;
    this.generation += 1;
    this.hashAbort.abort();
    this.abortInflight();
    const fileId = this.state === State.FAILED ? null : this.fileId;
    this.setState(State.CANCELLED, "Cancelled.");
    if (fileId) {
      // The gateway aborts the store's multipart upload with the file.
      await this.api.deleteFile(fileId).catch(() => {});
    }
  }

  abortInflight() {
    for (const entry of this.inflight.values()) entry.xhr.abort();
    this.inflight.clear();
  }

  fail(message) {
    this.generation += 1;
    this.abortInflight();
    this.setState(State.FAILED, message);
  }

  // ---- the flow --------------------------------------------------------------------

  /** Announce (when asked), send, complete; turn problems into paused or failed states. */
  async drive(announceFirst) {
    const generation = this.generation;
    try {
      if (announceFirst) await this.announce();
      for (let round = 0; round < 3 && this.state !== State.DONE; round += 1) {
        try {
          if (!(await this.transfer(generation))) return;
          if (generation !== this.generation) return;
          this.setState(State.FINISHING);
          await this.finish(generation);
          return;
        } catch (error) {
          if (!(error instanceof StartOver)) throw error;
          await this.announce();
        }
      }
      if (this.state !== State.DONE) throw new Error("The storage server keeps losing this upload. Try again later.");
    } catch (error) {
      if (generation !== this.generation) return; // paused or cancelled meanwhile
      if (error instanceof ApiError && error.status === 401) {
        this.pause("Your session ended. Log in again, then pick the file again to resume.");
      } else if (error instanceof PauseError || (error instanceof ApiError && (error.status === 0 || error.status >= 500))) {
        this.pause(`${error.message} The upload is paused: press Resume to go on.`);
      } else {
        this.fail(error.message);
      }
    }
  }

  async announce() {
    this.setState(State.STARTING);
    const { chunks, fingerprint } = this.hash;
    // An earlier, unfinished upload of this very file (same content, same name)?
    const found = await this.api.listFiles(null, { fingerprint, limit: 100 });
    const earlier = (found.files || []).find((f) => f.file_name === this.name && f.status === "uploading");
    const claim = { file_name: this.name, file_size: this.size, fingerprint, chunk_size: this.chunkSize, chunks };
    if (this.file.type && MIME_TYPE.test(this.file.type)) claim.file_type = this.file.type;
    if (this.place && this.place.parent_id) claim.parent_id = this.place.parent_id;
    else if (this.place && this.place.path) claim.path = this.place.path;
    const file = await this.api.startUpload(claim);
    this.fileId = file.file_id;
    if (file.status === "failed") {
      throw new Error(`The server marked ${quotedName(this.name)} as failed: ${file.failure_reason || "its bytes did not verify"}.`);
    }
    if (file.status === "uploaded") {
      this.pending.clear();
      this.doneBytes = this.size;
      this.stats.chunksSkipped = this.total;
      return this.done("Already in your files: nothing to send.");
    }
    const held = new Set((file.chunks || []).filter((c) => c.status === "uploaded").map((c) => c.index));
    this.pending = new Set();
    for (let index = 0; index < this.total; index += 1) if (!held.has(index)) this.pending.add(index);
    this.stats.resumed = Boolean(earlier) || held.size > 0;
    this.stats.chunksSkipped = held.size;
    this.recountDoneBytes();
  }

  recountDoneBytes() {
    let bytes = 0;
    for (let index = 0; index < this.total; index += 1) {
      if (!this.pending.has(index)) bytes += chunkLength(index, this.size, this.chunkSize);
    }
    this.doneBytes = bytes;
  }

  /** Send every pending chunk; false when paused or cancelled meanwhile. */
  async transfer(generation) {
    if (generation !== this.generation) return false;
    this.setState(State.SENDING, this.stats.resumed ? `Resuming: ${this.chunksInStore} of ${this.total} chunks were already in the store.` : "");
    const queue = [...this.pending].sort((a, b) => a - b);
    let failure = null;
    const worker = async () => {
      while (queue.length && !failure && generation === this.generation) {
        const index = queue.shift();
        try {
          await this.sendChunk(index, generation);
        } catch (error) {
          failure = failure || error;
          // Stop the others at once (their requests end as aborted); the store keeps what arrived.
          this.abortInflight();
        }
      }
    };
    await Promise.all(Array.from({ length: Math.min(PARALLEL, queue.length) }, worker));
    if (failure) throw failure;
    return generation === this.generation;
  }

  async sendChunk(index, generation) {
    let problem = "no answer";
    let unreachable = false;
    for (let attempt = 0; attempt <= RETRIES; attempt += 1) {
      if (generation !== this.generation) return;
      if (attempt) {
        await sleep(backoffDelay(attempt - 1));
        if (generation !== this.generation) return;
      }
      const url = await this.urlFor(index);
      if (url === NO_MORE) {
        this.pending.delete(index);
        return;
      }
      const wrong = outOfReach(globalThis.location?.href || "", url.url);
      if (wrong) {
        this.urls.clear(); // a server started again with the right address hands out new ones
        throw new PauseError(wrong);
      }
      const answer = await this.put(index, url);
      if (answer.aborted || generation !== this.generation) return;
      if (answer.status >= 200 && answer.status < 300) {
        this.pending.delete(index);
        this.urls.delete(index);
        this.doneBytes += chunkLength(index, this.size, this.chunkSize);
        this.progressed();
        this.changed();
        return;
      }
      const code = s3Field(answer.body, "Code");
      unreachable = answer.status === 0;
      problem = unreachable ? "no answer" : `HTTP ${answer.status}${code ? ` ${code}` : ""}`;
      if (answer.status === 404 && code === "NoSuchUpload") throw new StartOver();
      if (answer.status === 400 && DIGEST_ERRORS.has(code)) {
        throw new Error(`${quotedName(this.name)} changed since it was fingerprinted. Pick it again to upload the new version.`);
      }
      if (answer.status === 403) this.urls.delete(index); // expired or refused signature: a fresh URL
    }
    if (unreachable) {
      throw new PauseError(`Cannot reach the storage server at ${hostOf(this.urls.get(index)?.url || "")}. Check your connection.`);
    }
    throw new PauseError(`The storage server refused part ${index + 1} of ${quotedName(this.name)} ${RETRIES + 1} times (${problem}).`);
  }

  /** A fresh presigned request for chunk `index`, fetched with a batch of others. */
  urlFor(index) {
    const fresh = (entry) => entry && (entry.expiresAt === null || entry.expiresAt - Date.now() > URL_MARGIN_MS);
    if (fresh(this.urls.get(index))) return Promise.resolve(this.urls.get(index));
    const run = async () => {
      if (fresh(this.urls.get(index))) return this.urls.get(index);
      const others = [...this.pending].filter((i) => i !== index && !this.inflight.has(i) && !fresh(this.urls.get(i)));
      const wanted = [index, ...others.sort((a, b) => a - b)].slice(0, URL_BATCH);
      let answer;
      try {
        answer = await this.api.uploadUrls(this.fileId, wanted);
      } catch (error) {
        if (error instanceof ApiError && error.status === 409) return NO_MORE; // the file is no longer uploading
        throw error;
      }
      for (const item of answer.urls || []) {
        this.urls.set(item.index, {
          url: item.url,
          method: (item.method || "PUT").toUpperCase(),
          headers: item.headers || {},
          expiresAt: expiryMs(item.expires_at),
        });
      }
      return this.urls.get(index) || NO_MORE;
    };
    const result = this.urlLock.then(run, run);
    this.urlLock = result.catch(() => {});
    return result;
  }

  /** PUT one chunk with XMLHttpRequest (fetch reports no upload progress). */
  put(index, request) {
    return new Promise((resolve) => {
      const start = index * this.chunkSize;
      const body = this.file.slice(start, start + chunkLength(index, this.size, this.chunkSize));
      const xhr = new XMLHttpRequest();
      const entry = { xhr, loaded: 0 };
      const settle = (answer) => {
        if (this.inflight.get(index) === entry) this.inflight.delete(index);
        resolve(answer);
      };
      xhr.open(request.method, request.url);
      for (const [name, value] of Object.entries(request.headers)) xhr.setRequestHeader(name, value);
      xhr.upload.addEventListener("progress", (event) => {
        if (event.loaded > entry.loaded) this.progressed();
        entry.loaded = event.loaded;
        this.changed();
      });
      xhr.addEventListener("load", () => settle({ status: xhr.status, body: xhr.responseText }));
      xhr.addEventListener("error", () => settle({ status: 0, body: "" }));
      xhr.addEventListener("timeout", () => settle({ status: 0, body: "" }));
      xhr.addEventListener("abort", () => settle({ aborted: true }));
      this.inflight.set(index, entry);
      xhr.send(body);
    });
  }

  /** Ask the gateway to finish; resend what the store lacks; wait until verified. */
  async finish(generation) {
    for (let round = 0; round < 3; round += 1) {
      let file;
      try {
        file = await this.api.complete(this.fileId);
      } catch (error) {
        if (!(error instanceof ApiError)) throw error;
        if (error.code === "upload_gone") throw new StartOver();
        if (error.status === 422) throw new Error(`${quotedName(this.name)} did not verify: ${error.message}`);
        const missing = error.status === 409 ? error.details.missing : null;
        if (!Array.isArray(missing) || !missing.length) throw error;
        for (const index of missing) this.pending.add(index);
        this.recountDoneBytes();
        if (!(await this.transfer(generation))) return;
        this.setState(State.FINISHING);
        continue;
      }
      return this.waitUntilVerified(file, generation);
    }
    throw new PauseError("The storage server still lacks some parts.");
  }

  async waitUntilVerified(file, generation) {
    const deadline = Date.now() + POLL_TIMEOUT_MS;
    let delay = 100;
    while (file.status === "uploading") {
      if (Date.now() > deadline) throw new PauseError("The server has not finished verifying the file yet.");
      await sleep(delay);
      delay = Math.min(2000, delay * 2);
      if (generation !== this.generation) return;
      file = await this.api.file(this.fileId);
    }
    if (file.status !== "uploaded") {
      throw new Error(`${quotedName(this.name)} did not verify: ${file.failure_reason || "the stored bytes did not match"}.`);
    }
    this.done();
  }

  done(message = "") {
    this.finishedAt = performance.now();
    this.setState(State.DONE, message);
    this.onFinished(this);
  }
}
