// Where the access token lives: sessionStorage (see README, "The web app").
//
// sessionStorage belongs to this tab and this origin: it survives a reload (so an
// upload can be resumed after one without logging in again) and is gone when the
// tab closes; other tabs and other sites never see it. Not a cookie, so the
// browser never sends it by itself (no cross-site request forgery). The token
// also expires on its own (GATEWAY_TOKEN_TTL), and logging out revokes it on the
// server. Where sessionStorage is unavailable, it is kept in memory only.

const KEY = "files.session";
let memory = null;

function storage() {
  try {
    return window.sessionStorage;
  } catch {
    return null;
  }
}

/** {token, username, expiresAt} or null when there is none or it has expired. */
export function loadSession() {
  let session = memory;
  try {
    const raw = storage()?.getItem(KEY);
    if (raw) session = JSON.parse(raw);
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
  const session = { token, username, expiresAt: expiresIn ? Date.now() + expiresIn * 1000 : null };
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
