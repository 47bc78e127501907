// The app: signed out (log in, sign up) or signed in (upload, files, sharing).
import { openAccountDialog, signedOutView } from "./account.js";
import { Api } from "./api.js";
import { h, replace, showMessage } from "./dom.js";
import { FileSection } from "./files.js";
import { quotedName } from "./format.js";
import { webCryptoAvailable } from "./fingerprint.js";
import { clearSession, loadSession, saveSession } from "./session.js";
import { openShareDialog } from "./share.js";
import { UploadsPanel } from "./uploads-view.js";

const main = document.getElementById("main");
const accountActions = document.getElementById("account-actions");
const notices = document.getElementById("notices");
const dropOverlay = document.getElementById("drop-overlay");

const app = {
  session: null,
  config: null,
  uploads: null,
  api: new Api({
    getToken: () => app.session && app.session.token,
    onExpired: () => expired(),
  }),
};

async function boot() {
  app.session = loadSession();
  try {
    app.config = await app.api.config();
  } catch (error) {
    replace(main, h("div", { class: "card" },
      h("h1", { text: "The server is not answering" }),
      h("p", { text: error.message }),
      h("button", { type: "button", class: "button primary", text: "Try again", onclick: () => location.reload() })));
    return;
  }
  if (!app.session) return showSignedOut();
  try {
    await app.api.me();
    showSignedIn();
  } catch (error) {
    if (error.status !== 401) showSignedOut({ text: error.message, kind: "error" });
  }
}

function expired() {
  if (!app.session) return;
  app.session = null;
  clearSession();
  if (app.uploads) app.uploads.pauseAll("Your session ended. Log in again, then pick the file again to resume.");
  showSignedOut({ text: "Your session has expired. Log in again.", kind: "error" });
}

function showSignedOut(notice = null) {
  app.uploads = null;
  replace(accountActions);
  replace(notices);
  document.title = "Log in · Files";
  replace(main, signedOutView({
    api: app.api,
    notice,
    onSignedIn: (token, username) => {
      app.session = saveSession(token.access_token, username, token.expires_in);
      showSignedIn();
    },
  }));
}

async function logOut() {
  if (app.uploads) app.uploads.pauseAll("Logged out.");
  // Revoke the token on the server (contract v1.1); forget it here whatever the answer.
  const api = app.api;
  const request = api.logOut().catch(() => {});
  await Promise.race([request, new Promise((resolve) => setTimeout(resolve, 3000))]);
  app.session = null;
  clearSession();
  showSignedOut({ text: "You are logged out.", kind: "info" });
}

function showSignedIn() {
  const { api, config, session } = app;
  document.title = "Files";
  replace(accountActions,
    h("span", { class: "who", text: session.username }),
    h("button", {
      type: "button", class: "button subtle", text: "Account",
      onclick: () => openAccountDialog({
        api,
        username: session.username,
        onPasswordChanged: (token) => {
          app.session = saveSession(token.access_token, session.username, token.expires_in);
        },
      }),
    }),
    h("button", { type: "button", class: "button", text: "Log out", onclick: logOut }),
  );
  replace(notices);
  if (!webCryptoAvailable()) {
    notices.append(h("p", { class: "notice", role: "note" },
      "This page is not on a secure address (https or localhost), so the browser's fast SHA-256 is unavailable. "
      + "Files are fingerprinted with a slower built-in hasher: uploads work, but large files take longer to start."));
  }

  const actions = {
    download: (file, button) => download(file, button),
    share: (file) => openShareDialog(api, file),
    remove: (file) => api.deleteFile(file.file_id),
  };
  const own = new FileSection({
    id: "my-files", title: "My files", own: true, actions,
    emptyText: "No files yet. Upload some with the button above, or drop them on this page.",
    load: (cursor) => api.listFiles(cursor),
  });
  const shared = new FileSection({
    id: "shared-files", title: "Shared with me", own: false, actions,
    emptyText: "Nobody has shared a file with you yet.",
    load: (cursor) => api.listShared(cursor),
  });
  app.uploads = new UploadsPanel({ api, config, onFinished: () => own.reload() });

  const input = h("input", { type: "file", id: "upload-input", multiple: true, class: "file-input" });
  input.addEventListener("change", () => {
    const files = [...input.files];
    // Cleared so that picking the same file again (to resume it) fires "change" again.
    input.value = "";
    if (files.length) app.uploads.add(files);
  });
  replace(main,
    h("section", { class: "upload-zone", "aria-labelledby": "upload-title" },
      h("div", {},
        h("h1", { id: "upload-title", text: "Your files" }),
        h("p", { class: "hint", text: "Pick files or drop them anywhere on this page. Interrupted uploads resume: pick the same file again." })),
      h("div", { class: "upload-picker" }, input, h("label", { for: "upload-input", class: "button primary", text: "Upload files" }))),
    app.uploads.element,
    own.element,
    shared.element,
  );
  own.reload();
  shared.reload();
}

async function download(file, button) {
  button.disabled = true;
  try {
    // A fresh signed URL on the CDN tier; it answers with Content-Disposition: attachment,
    // so the browser saves the file and this page stays.
    const fresh = await app.api.file(file.file_id);
    if (!fresh.download_url) throw new Error("The file is not completely uploaded yet.");
    window.location.assign(fresh.download_url);
  } catch (error) {
    const section = button.closest("section");
    const region = section && section.querySelector(".message");
    if (region) showMessage(region, `Could not download ${quotedName(file.file_name)}: ${error.message}`);
  } finally {
    button.disabled = false;
  }
}

// Dropping files anywhere on the page uploads them (when logged in).
let dragDepth = 0;
const carriesFiles = (event) => event.dataTransfer && [...event.dataTransfer.types].includes("Files");
document.addEventListener("dragenter", (event) => {
  if (!app.uploads || !carriesFiles(event)) return;
  dragDepth += 1;
  dropOverlay.hidden = false;
});
document.addEventListener("dragleave", () => {
  dragDepth = Math.max(0, dragDepth - 1);
  if (!dragDepth) dropOverlay.hidden = true;
});
document.addEventListener("dragover", (event) => {
  if (app.uploads && carriesFiles(event)) event.preventDefault();
});
document.addEventListener("drop", (event) => {
  dragDepth = 0;
  dropOverlay.hidden = true;
  if (!app.uploads || !carriesFiles(event)) return;
  event.preventDefault();
  const files = [...event.dataTransfer.files];
  if (files.length) app.uploads.add(files);
});
window.addEventListener("beforeunload", (event) => {
  if (app.uploads && app.uploads.busy) event.preventDefault();
});

boot();
