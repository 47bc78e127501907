// The uploads panel: one item per file, with its progress bar, speed, time left and controls.
import { h, nameElement, replace } from "../ui/dom.js";
import { webCryptoAvailable } from "../fingerprint.js";
import { formatDuration, formatSize, formatSpeed, shownName } from "../format.js";
import { OVER, State, TALKING, Upload, WORKING } from "../upload.js";

// Progress within a state is drawn at most this often. Drawn every frame (with a width transition laid
// out again each frame), a 300 MiB upload's panel cost the page's renderer 1.0-1.1 CPU seconds while
// sending, a sixth of a core that a busy machine then lacked for the sending itself; now 0.3-0.5.
// The bar steps from one drawing to the next, with no transition in between: a transition, even of a
// composited transform, kept the compositor making 60 frames a second for the whole upload (the
// renderer 0.3 and the GPU process 0.25 CPU seconds more per 300 MiB).
const PROGRESS_MS = 250;

export class UploadsPanel {
  constructor({ api, config, onFinished, engine = "auto" }) {
    this.api = api;
    this.config = config;
    this.onFinished = onFinished;
    this.engine = engine;
    this.uploads = new Set();
    this.collapsed = false;
    this.list = h("ul", { class: "upload-list", id: "upload-list" });
    this.summary = h("span", { class: "uploads-summary" });
    this.toggle = h("button", {
      type: "button", class: "button subtle small", text: "Hide", "aria-expanded": "true", "aria-controls": "upload-list",
      "aria-label": "Hide uploads", onclick: () => this.setCollapsed(!this.collapsed),
    });
    this.section = h("section", { class: "uploads", "aria-labelledby": "uploads-title", hidden: true },
      h("div", { class: "section-head" },
        h("h2", { id: "uploads-title", text: "Uploads" }),
        this.summary,
        h("div", { class: "section-tools" },
          h("button", { type: "button", class: "button subtle small", text: "Clear finished", onclick: () => this.clearFinished() }),
          this.toggle),
      ),
      this.list,
    );
    // Progress and finished uploads, said to screen readers (a few words at a time: started, each
    // quarter, waiting for the store, done). In the page before the first upload, as live regions
    // must be to be heard.
    this.live = h("p", { class: "visually-hidden", role: "status" });
    this.element = h("div", { class: "uploads-area" }, this.live, this.section);
  }

  /** Fold the panel to its heading and a one-line summary, or open it again. */
  setCollapsed(collapsed) {
    this.collapsed = collapsed;
    this.list.hidden = collapsed;
    this.section.classList.toggle("collapsed", collapsed);
    this.toggle.setAttribute("aria-expanded", String(!collapsed));
    this.toggle.setAttribute("aria-label", collapsed ? "Show uploads" : "Hide uploads");
    replace(this.toggle, collapsed ? "Show" : "Hide");
    this.renderSummary();
  }

  /** "2 uploading · 1 done": what the folded panel still tells. */
  renderSummary() {
    const all = [...this.uploads];
    const working = all.filter((u) => WORKING.has(u.state)).length;
    const done = all.filter((u) => u.state === State.DONE).length;
    const waiting = all.filter((u) => u.stalled).length;
    const parts = [];
    if (working) parts.push(`${working} uploading`);
    if (waiting) parts.push(`${waiting} waiting for the store`);
    if (done) parts.push(`${done} done`);
    replace(this.summary, parts.join(" · "));
  }

  /**
   * Start uploading each file; several run at once, each with its own chunks in parallel.
   * placeOf(file): where it goes in the tree ({parent_id} or {path}; null: the root).
   */
  add(files, placeOf = () => null) {
    for (const file of files) {
      const upload = new Upload(file, {
        api: this.api,
        config: this.config,
        engine: this.engine,
        place: placeOf(file),
        onChange: () => this.scheduleRender(upload),
        onFinished: () => this.onFinished(upload),
      });
      upload.view = this.createItem(upload);
      this.uploads.add(upload);
      this.list.prepend(upload.view.item);
      this.section.hidden = false;
      this.render(upload);
      upload.start();
    }
  }

  pauseAll(message) {
    for (const upload of this.uploads) upload.pause(message);
  }

  get busy() {
    return [...this.uploads].some((u) => WORKING.has(u.state));
  }

  clearFinished() {
    for (const upload of [...this.uploads]) {
      if (OVER.has(upload.state)) {
        upload.view.item.remove();
        this.uploads.delete(upload);
      }
    }
    this.section.hidden = this.uploads.size === 0;
    this.renderSummary();
  }

  createItem(upload) {
    const fill = h("div", { class: "bar-fill" });
    const bar = h("div", {
      class: "bar",
      role: "progressbar",
      "aria-label": `Upload of ${shownName(upload.name)}`,
      "aria-valuemin": "0",
      "aria-valuemax": "100",
      "aria-valuenow": "0",
    }, fill);
    const status = h("p", { class: "upload-status" });
    const pause = h("button", { type: "button", class: "button small", text: "Pause", onclick: () => upload.pause() });
    const resume = h("button", { type: "button", class: "button small", text: "Resume", onclick: () => upload.resume() });
    const cancel = h("button", { type: "button", class: "button small", text: "Cancel", onclick: () => upload.cancel() });
    const item = h("li", { class: "upload-item" },
      h("div", { class: "upload-head" },
        nameElement(upload.name, "upload-name"),
        h("span", { class: "upload-size", text: formatSize(upload.size) }),
      ),
      bar,
      h("div", { class: "upload-foot" }, status, h("div", { class: "upload-actions" }, pause, resume, cancel)),
    );
    return { item, bar, fill, status, pause, resume, cancel, pending: false, timer: null, drawnState: null, drawnAt: 0 };
  }

  /**
   * Progress events come many times a second: a new state is drawn at the next frame, progress
   * within a state at most every PROGRESS_MS.
   */
  scheduleRender(upload) {
    const view = upload.view;
    if (!view) return;
    const newState = upload.state !== view.drawnState;
    if (view.pending && !(newState && view.timer)) return;
    clearTimeout(view.timer);
    view.timer = null;
    view.pending = true;
    const draw = () => requestAnimationFrame(() => {
      view.pending = false;
      this.render(upload);
    });
    const wait = newState ? 0 : view.drawnAt + PROGRESS_MS - performance.now();
    if (wait > 0) {
      view.timer = setTimeout(() => {
        view.timer = null;
        draw();
      }, wait);
    } else {
      draw();
    }
  }

  render(upload) {
    const view = upload.view;
    view.drawnState = upload.state;
    view.drawnAt = performance.now();
    const percent = upload.state === State.HASHING ? 0 : upload.percent;
    view.bar.setAttribute("aria-valuenow", String(percent));
    view.bar.setAttribute("aria-valuetext", upload.stalled ? `${percent}%, waiting for the store` : `${percent}%`);
    // Moved, not resized: a transform is composited, a width would be laid out again.
    view.fill.style.transform = `translateX(${(upload.state === State.HASHING ? upload.hashPercent : percent) - 100}%)`;
    view.item.dataset.state = upload.state;
    replace(view.status, statusText(upload));
    const active = TALKING.has(upload.state);
    view.pause.hidden = !active;
    view.resume.hidden = upload.state !== State.PAUSED;
    view.cancel.hidden = OVER.has(upload.state);
    this.renderSummary();
    this.announce(upload);
  }

  /** Say what changed for a screen reader: a new state, the next quarter done, a stall and its end. */
  announce(upload) {
    const view = upload.view;
    const name = shownName(upload.name);
    let text = null;
    if (upload.state !== view.saidState) {
      view.saidState = upload.state;
      text = {
        [State.SENDING]: `Uploading ${name}.`,
        [State.DONE]: `${name} uploaded.`,
        [State.PAUSED]: `${name} paused. ${upload.message}`,
        [State.FAILED]: `${name} failed. ${upload.message}`,
        [State.CANCELLED]: `${name} cancelled.`,
      }[upload.state] || null;
    } else if (upload.state === State.SENDING) {
      const quarter = Math.floor(upload.percent / 25) * 25;
      if (upload.stalled !== Boolean(view.saidStalled)) {
        view.saidStalled = upload.stalled;
        text = upload.stalled ? `${name}: waiting for the store.` : `${name}: sending again.`;
      } else if (quarter > (view.saidPercent || 0)) {
        view.saidPercent = quarter;
        text = `${name}: ${quarter}% sent.`;
      }
    }
    if (text) replace(this.live, text);
  }
}

function statusText(upload) {
  switch (upload.state) {
    case State.WAITING:
      return "Waiting…";
    case State.HASHING: {
      const slow = upload.engine === "fallback" || !webCryptoAvailable();
      return `Fingerprinting… ${upload.hashPercent}%${slow ? " (slower built-in hasher)" : ""}`;
    }
    case State.STARTING:
      return "Checking what the server already has…";
    case State.SENDING: {
      const parts = [`${formatSize(upload.sentBytes)} of ${formatSize(upload.size)}`];
      const speed = upload.speed;
      if (upload.stalled) {
        // Honest: no speed or time left while nothing moves; it goes on by itself once bytes do.
        parts.push(`Waiting for the store… nothing taken for ${formatDuration(upload.stalledFor)}`);
      } else if (speed > 0) {
        parts.push(formatSpeed(speed), `${formatDuration(upload.secondsLeft)} left`);
      }
      parts.push(`${upload.chunksInStore} of ${upload.total} chunks sent`);
      return [upload.message, parts.join(" · ")].filter(Boolean).join(" ");
    }
    case State.FINISHING:
      return "Verifying…";
    case State.PAUSED:
      return upload.message || "Paused.";
    case State.DONE: {
      if (upload.message) return upload.message;
      const seconds = (upload.finishedAt - upload.startedAt) / 1000;
      const resumed = upload.stats.chunksSkipped
        ? ` (resumed: ${upload.stats.chunksSkipped} of ${upload.total} chunks were already in the store)`
        : "";
      return `Uploaded in ${formatDuration(seconds)}${resumed}.`;
    }
    default:
      return upload.message;
  }
}
