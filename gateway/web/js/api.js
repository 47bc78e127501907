// The gateway's JSON API (shared/api-contract.md), and its errors as sentences a person can act on.

const BASE = "/dropbox/v1";

export class ApiError extends Error {
  constructor(status, code, message, details = {}) {
    super(message);
    this.status = status;
    this.code = code;
    this.details = details;
  }

  /** The endpoint does not exist on this gateway (an older release): the feature is missing. */
  get unsupported() {
    return this.status === 404 && this.code === "unknown_endpoint";
  }
}

/** Contract error codes whose server text we say differently; anything else shows the server's message. */
const MESSAGES = {
  invalid_credentials: "Wrong username or password.",
  username_taken: "That username is taken. Choose another one, or log in.",
  invitation_required: "New accounts on this server need an invitation code. Fill in the one you were given.",
  invalid_invitation: "That invitation code is unknown, used or expired. Ask for a new one.",
  signup_closed: "New accounts cannot be made here: whoever runs this server creates them.",
  token_revoked: "Your session has ended. Log in again.",
  quota_exceeded: "This file does not fit in your storage quota. Delete some files, then try again.",
  wrong_password: "That password is wrong.",
  password_required: "This link needs a password.",
  store_unavailable: "The storage server is not answering. Try again in a moment.",
  internal_error: "Something went wrong on the server. Try again; if it keeps happening, tell the administrator.",
};

/** The server's message, readable: no `code` quotes, a capital first letter, a full stop. */
function readable(text) {
  const plain = String(text || "").replace(/`/g, "").trim();
  if (!plain) return "";
  const sentence = plain.charAt(0).toUpperCase() + plain.slice(1);
  return /[.!?]$/.test(sentence) ? sentence : `${sentence}.`;
}

function retryText(seconds) {
  const n = Number.parseInt(seconds, 10);
  if (!Number.isFinite(n) || n <= 0) return "Try again in a moment.";
  return n < 90 ? `Try again in ${n} seconds.` : `Try again in ${Math.ceil(n / 60)} minutes.`;
}

export function errorFrom(status, body, retryAfter) {
  const error = (body && typeof body === "object" && body.error) || {};
  const code = typeof error.code === "string" ? error.code : `http_${status}`;
  let message = MESSAGES[code];
  if (!message && status === 429) {
    message = code === "too_many_attempts"
      ? `Too many failed attempts. ${retryText(retryAfter)}`
      : `${readable(error.message) || "Too many requests."} ${retryText(retryAfter)}`;
  }
  if (!message && status >= 500) {
    message = status === 503 ? MESSAGES.store_unavailable : MESSAGES.internal_error;
  }
  if (!message) message = readable(error.message) || `The server refused the request (HTTP ${status}).`;
  return new ApiError(status, code, message, error);
}

export class Api {
  /**
   * getToken() -> the access token or null; onExpired(error): called on a 401 to an authenticated
   * call; onUsed(): called for each authenticated call but the renewal (the session is in use).
   */
  constructor({ getToken, onExpired, onUsed = () => {} }) {
    this.getToken = getToken;
    this.onExpired = onExpired;
    this.onUsed = onUsed;
  }

  async request(method, path, { body, auth = true, renewal = false } = {}) {
    const headers = { Accept: "application/json" };
    const token = auth ? this.getToken() : null;
    if (token && !renewal) this.onUsed();
    if (token) headers.Authorization = `Bearer ${token}`;
    if (body !== undefined) headers["Content-Type"] = "application/json";
    let response;
    try {
      response = await fetch(BASE + path, {
        method,
        headers,
        body: body === undefined ? undefined : JSON.stringify(body),
        cache: "no-store",
        credentials: "omit",
      });
    } catch {
      throw new ApiError(0, "unreachable", "Cannot reach the server. Check your connection, then try again.");
    }
    const text = await response.text().catch(() => "");
    let data = null;
    try {
      data = text ? JSON.parse(text) : null;
    } catch {
      data = null;
    }
    if (response.ok) return data;
    const error = errorFrom(response.status, data, response.headers.get("Retry-After"));
    if (response.status === 401 && token) this.onExpired(error);
    throw error;
  }

  get(path) { return this.request("GET", path); }
  post(path, body) { return this.request("POST", path, { body }); }
  put(path, body) { return this.request("PUT", path, { body }); }
  delete(path) { return this.request("DELETE", path); }

  config() { return this.request("GET", "/config", { auth: false }); }
  signUp(username, email, password, invitation = null) {
    const body = invitation ? { username, email, password, invitation } : { username, email, password };
    return this.request("POST", "/users", { body, auth: false });
  }
  logIn(username, password) {
    return this.request("POST", "/tokens", { body: { username, password }, auth: false });
  }
  me() { return this.get("/users/me"); }
  logOut() { return this.delete("/tokens/current"); }
  renewToken() { return this.request("POST", "/tokens/current/renew", { renewal: true }); }
  changePassword(currentPassword, newPassword) {
    return this.put("/users/me/password", { current_password: currentPassword, new_password: newPassword });
  }

  listFiles(cursor, { fingerprint, limit = 50 } = {}) {
    const query = new URLSearchParams({ limit: String(limit) });
    if (cursor) query.set("cursor", cursor);
    if (fingerprint) query.set("fingerprint", fingerprint);
    return this.get(`/files?${query}`);
  }
  listShared(cursor, { limit = 50 } = {}) {
    const query = new URLSearchParams({ limit: String(limit) });
    if (cursor) query.set("cursor", cursor);
    return this.get(`/files/shared?${query}`);
  }
  file(fileId) { return this.get(`/files/${encodeURIComponent(fileId)}`); }
  deleteFile(fileId) { return this.delete(`/files/${encodeURIComponent(fileId)}`); }
  startUpload(claim) { return this.post("/files", claim); }
  uploadUrls(fileId, chunks) { return this.post(`/files/${encodeURIComponent(fileId)}/upload-urls`, { chunks }); }
  complete(fileId) { return this.post(`/files/${encodeURIComponent(fileId)}/complete`); }

  // The tree (contract v1.2). Folder ids are ids, or "root".
  folder(folderId) { return this.get(`/folders/${encodeURIComponent(folderId)}`); }
  entries(folderId, cursor, { limit = 100 } = {}) {
    const query = new URLSearchParams({ limit: String(limit) });
    if (cursor) query.set("cursor", cursor);
    return this.get(`/folders/${encodeURIComponent(folderId)}/entries?${query}`);
  }
  createFolder(parentId, name) { return this.post("/folders", { parent_id: parentId, name }); }
  renameOrMove(entry, change) {
    const kind = entry.type === "folder" ? "folders" : "files";
    return this.request("PATCH", `/${kind}/${encodeURIComponent(idOf(entry))}`, { body: change });
  }
  deleteEntry(entry) {
    return entry.type === "folder" ? this.delete(`/folders/${encodeURIComponent(entry.folder_id)}`) : this.deleteFile(entry.file_id);
  }
  versions(fileId) { return this.get(`/files/${encodeURIComponent(fileId)}/versions`); }
  restoreVersion(fileId) { return this.post(`/files/${encodeURIComponent(fileId)}/restore`); }
  trash(cursor, { limit = 100 } = {}) {
    const query = new URLSearchParams({ limit: String(limit) });
    if (cursor) query.set("cursor", cursor);
    return this.get(`/trash?${query}`);
  }
  restoreFromTrash(entry) { return this.post(`/trash/${encodeURIComponent(idOf(entry))}/restore`); }
  search(q, { limit = 100 } = {}) {
    return this.get(`/search?${new URLSearchParams({ q, limit: String(limit) })}`);
  }

  /** A zip URL for folders and files (ids, "root" for everything): {url, expires_at, name, size, files}. */
  zip(ids) { return this.post("/zips", { entries: ids }); }

  share(fileId, usernames) { return this.post("/files/share", { file_id: fileId, users: usernames }); }
  shares(fileId) { return this.get(`/files/${encodeURIComponent(fileId)}/shares`); }
  unshare(fileId, username) {
    return this.delete(`/files/${encodeURIComponent(fileId)}/shares/${encodeURIComponent(username)}`);
  }
  links(fileId) { return this.get(`/files/${encodeURIComponent(fileId)}/links`); }
  createLink(fileId, options) { return this.post(`/files/${encodeURIComponent(fileId)}/links`, options); }
  revokeLink(linkId) { return this.delete(`/links/${encodeURIComponent(linkId)}`); }
}

/** The id of a tree entry, folder or file. */
export function idOf(entry) {
  return entry.type === "folder" ? entry.folder_id : entry.file_id;
}
