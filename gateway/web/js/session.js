// Where the session lives, and how it is kept going while it is used (README, "The web app";
// SECURITY.md, "Sessions").
//
// The access token is kept in localStorage: every tab of this browser on this origin shares it, so a
// second tab opens signed in, and logging out (or the session ending) in one tab signs every tab out
// (the "storage" event tells the others). Other sites never see it, and, not being a cookie, the
// browser never sends it by itself (no cross-site request forgery). Where localStorage is unavailable
// it is kept in memory only, for this tab.
//
// A token lives GATEWAY_TOKEN_TTL. The SessionKeeper renews it (POST /tokens/current/renew) past
// half its life when the session was used since the token was issued (a request to the gateway, a
// key press or click, an upload working), so an upload that runs for hours keeps its session; a
// session nobody uses is not renewed and ends when its token expires, in every tab.

const KEY = "files.session";
const RETRY_MS = 10_000;
let memory = null;

function storage() {
  try {
    return window.localStorage;
  } catch {
    return null;
  }
}

/** {token, username, expiresAt, issuedAt} or null when there is none or it has expired. */
export function loadSession() {
  let session = memory;
  try {
    const raw = storage()?.getItem(KEY);
    session = raw ? JSON.parse(raw) : storage() ? null : memory;
  } catch {
    session = memory;
  }
  if (!session || typeof session.token !== "string") return null;
  if (session.expiresAt && Date.now() >= session.expiresAt) {
    clearSession();
    return null;
  }
  return session;
}

export function saveSession(token, username, expiresIn) {
  const now = Date.now();
  const session = { token, username, issuedAt: now, expiresAt: expiresIn ? now + expiresIn * 1000 : null };
  memory = session;
  try {
    storage()?.setItem(KEY, JSON.stringify(session));
  } catch {
    // Private mode or storage full: memory only.
  }
  return session;
}

export function clearSession() {
  memory = null;
  try {
    storage()?.removeItem(KEY);
  } catch {
    // nothing stored
  }
}

/** onChange(session or null) whenever another tab saves or clears the session. */
export function watchOtherTabs(onChange) {
  window.addEventListener("storage", (event) => {
    if (event.key === KEY || event.key === null) onChange(loadSession());
  });
}

/**
 * Keeps a session going while it is used. renew() -> a token answer ({access_token, expires_in});
 * working() -> whether something is under way that needs the session (an upload); onRenewed(answer);
 * onExpired() when the token expired unrenewed.
 */
export class SessionKeeper {
  constructor({ renew, working, onRenewed, onExpired }) {
    this.renew = renew;
    this.working = working;
    this.onRenewed = onRenewed;
    this.onExpired = onExpired;
    this.session = null;
    this.timer = null;
    this.usedAt = 0;
    this.renewing = false;
  }

  /** Follow this session (null: none, stop). */
  watch(session) {
    this.session = session;
    this.schedule();
  }

  /** The session was used now (a request, a key press or a click). */
  used() {
    this.usedAt = Date.now();
    if (this.due()) this.check();
  }

  due() {
    const s = this.session;
    return Boolean(s && s.expiresAt && Date.now() >= renewAt(s));
  }

  schedule(delay = null) {
    clearTimeout(this.timer);
    this.timer = null;
    const s = this.session;
    if (!s || !s.expiresAt) return;
    const now = Date.now();
    const wait = delay ?? (now < renewAt(s) ? renewAt(s) - now : s.expiresAt - now);
    this.timer = setTimeout(() => this.check(), Math.max(0, Math.min(wait, s.expiresAt - now)));
  }

  async check() {
    const s = this.session;
    if (!s || !s.expiresAt || this.renewing) return;
    if (Date.now() >= s.expiresAt) {
      this.session = null;
      this.onExpired();
      return;
    }
    const inUse = this.usedAt >= (s.issuedAt || 0) || this.working();
    if (!this.due() || !inUse) return this.schedule();
    this.renewing = true;
    try {
      const answer = await this.renew();
      if (this.session === s) this.onRenewed(answer);
    } catch (error) {
      // A refusal (401) ends the session through the Api; a network problem is tried again.
      if (error.status !== 401 && this.session === s) this.schedule(RETRY_MS);
    } finally {
      this.renewing = false;
    }
  }
}

/** When a token is renewed: half-way through its life. */
function renewAt(session) {
  const issued = session.issuedAt || session.expiresAt;
  return issued + (session.expiresAt - issued) / 2;
}
