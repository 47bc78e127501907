// The app: signed out (log in, sign up) or signed in, where the route (router.js) says which view
// is shown. This module wires the parts together; what is shown lives in state.js, the views in
// views/, the page-building helpers in ui/, and the upload engine (upload.js) runs apart from them all.
import { Api, idOf } from "./api.js";
import { webCryptoAvailable } from "./fingerprint.js";
import { quotedName } from "./format.js";
import { droppedFiles } from "./drop.js";
import { navigate, same, startRouter } from "./router.js";
import { SessionKeeper, clearSession, loadSession, saveSession, watchOtherTabs } from "./session.js";
import { state, subscribe, update } from "./state.js";
import { h, replace, showMessage } from "./ui/dom.js";
import { openAccountDialog, signedOutView } from "./views/account.js";
import { filesView } from "./views/home.js";
import { openMoveDialog, openRenameDialog, openVersionsDialog } from "./views/entry-dialogs.js";
import { openPreview } from "./views/preview.js";
import { openShareDialog } from "./views/share.js";
import { folderView, searchView, trashView, uploadFolder } from "./views/tree.js";
import { UploadsPanel } from "./views/uploads.js";

const main = document.getElementById("main");
const accountActions = document.getElementById("account-actions");
const notices = document.getElementById("notices");
const dropOverlay = document.getElementById("drop-overlay");

const api = new Api({
  getToken: () => state.session && state.session.token,
  onExpired: () => expired(),
  onUsed: () => keeper.used(),
});

// The session goes on while it is used, in every tab of this browser (session.js).
const keeper = new SessionKeeper({
  renew: () => api.renewToken(),
  working: () => Boolean(state.uploads && state.uploads.busy),
  onRenewed: (answer) => {
    update({ session: saveSession(answer.access_token, state.session.username, answer.expires_in) });
  },
  onExpired: () => expired(),
});

/** What the signed-in page shows now: {route, reloadOwn} of the view in `main`. */
let shown = null;

async function boot() {
  update({ session: loadSession() });
  try {
    update({ config: await api.config() });
  } catch (error) {
    replace(main, h("div", { class: "card" },
      h("h1", { text: "The server is not answering" }),
      h("p", { text: error.message }),
      h("button", { type: "button", class: "button primary", text: "Try again", onclick: () => location.reload() })));
    return;
  }
  if (!state.session) return showSignedOut();
  try {
    await api.me();
    showSignedIn();
  } catch (error) {
    if (error.status !== 401) showSignedOut({ text: error.message, kind: "error" });
  }
}

/** The storage used, from GET /users/me's answer, into the state the storage view reads. */
function showAccount(me) {
  update({ account: { used_bytes: me.used_bytes, quota_bytes: me.quota_bytes ?? null } });
}

function refreshAccount() {
  api.me().then(showAccount, () => {});
}

function expired() {
  if (!state.session) return;
  clearSession();
  update({ session: null });
  if (state.uploads) state.uploads.pauseAll("Your session ended. Log in again, then pick the file again to resume.");
  showSignedOut({ text: "Your session has expired. Log in again.", kind: "error" });
}

function showSignedOut(notice = null) {
  update({ uploads: null, account: null, folder: null });
  shown = null;
  replace(accountActions);
  replace(notices);
  document.title = "Log in · Files";
  replace(main, signedOutView({
    api,
    notice,
    signup: state.config.signup,
    onSignedIn: (token, username) => {
      update({ session: saveSession(token.access_token, username, token.expires_in) });
      showSignedIn({ focusMain: true });
    },
  }));
}

async function logOut() {
  if (state.uploads) state.uploads.pauseAll("Logged out.");
  // Revoke the token on the server (contract v1.1); forget it here whatever the answer.
  const request = api.logOut().catch(() => {});
  await Promise.race([request, new Promise((resolve) => setTimeout(resolve, 3000))]);
  clearSession();
  update({ session: null });
  showSignedOut({ text: "You are logged out.", kind: "info" });
}

/** focusMain: move the keyboard's focus to the main content once it is shown (after logging in, the
 *  form that had it is gone; a screen reader then starts at the files, not at the top of the page). */
function showSignedIn({ focusMain = false } = {}) {
  const { session } = state;
  document.title = "Files";
  replace(accountActions,
    h("span", { class: "who", text: session.username }),
    h("button", {
      type: "button", class: "button subtle", text: "Account",
      onclick: () => openAccountDialog({
        api,
        username: session.username,
        onPasswordChanged: (token) => {
          update({ session: saveSession(token.access_token, session.username, token.expires_in) });
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
  update({
    uploads: new UploadsPanel({
      api,
      config: state.config,
      onFinished: () => {
        if (shown) shown.reloadOwn();
        refreshAccount();
      },
    }),
  });
  refreshAccount();
  shown = null;
  detectTree().then(() => {
    render();
    if (focusMain) main.focus();
  });
}

/**
 * Whether this gateway has the tree (contract v1.2): the app shows folders, the trash and search
 * when it does, and the flat v1.1 lists when it answers the tree's calls with unknown_endpoint.
 */
async function detectTree() {
  if (state.tree !== null) return;
  try {
    await api.folder("root");
    update({ tree: true });
  } catch (error) {
    update({ tree: !error.unsupported });
  }
}

/** Show the view the route names (signed in only). */
function render() {
  if (!state.session || !state.uploads || state.tree === null) return;
  const reload = () => shown && shown.reloadOwn();
  const actions = {
    download: (file, button) => download(file, button),
    downloadZip: (entries, button) => downloadZip(entries, button),
    fetchFile: (fileId) => api.file(fileId),
    share: (file) => openShareDialog(api, file),
    open: (file, files) => openPreview({
      api, files, index: Math.max(0, files.indexOf(file)), download: (shownFile, button) => download(shownFile, button),
    }),
    rename: (entry) => openRenameDialog(api, entry, reload),
    move: (entry) => openMoveDialog(api, entry, reload),
    versions: (file) => openVersionsDialog(api, file, { download, onRestored: () => { reload(); refreshAccount(); } }),
  };
  const route = state.route;
  const common = { api, route, uploads: state.uploads, actions, onChanged: refreshAccount };
  let view;
  if (!state.tree) {
    if (route.view !== "files" || route.folder !== "root") navigate({ view: "files", folder: "root" }, { replace: true });
    view = filesView(common);
  } else if (route.view === "trash") {
    view = trashView(common);
  } else if (route.view === "search") {
    view = searchView(common);
  } else {
    view = folderView(common);
  }
  shown = { route, reloadOwn: view.reloadOwn };
  update({ folder: view.folder || null });
  replace(main, view.element);
}

async function download(file, button) {
  button.disabled = true;
  try {
    // A fresh signed URL on the CDN tier; it answers with Content-Disposition: attachment,
    // so the browser saves the file and this page stays.
    const fresh = await api.file(file.file_id);
    if (!fresh.download_url) throw new Error("The file is not completely uploaded yet.");
    window.location.assign(fresh.download_url);
  } catch (error) {
    sayNear(button, `Could not download ${quotedName(file.file_name)}: ${error.message}`);
  } finally {
    button.disabled = false;
  }
}

/**
 * Download folders and files as one zip: the gateway checks them and answers a signed URL, which
 * answers the zip (Content-Disposition: attachment) as it is built, so this page stays.
 */
async function downloadZip(entries, button) {
  button.disabled = true;
  try {
    const made = await api.zip(entries.map(idOf));
    window.location.assign(made.url);
  } catch (error) {
    sayNear(button, `Could not make the zip: ${error.message}`);
  } finally {
    button.disabled = false;
  }
}

/** Say what went wrong in the message region of the section holding `button`. */
function sayNear(button, text) {
  const section = button.closest("section");
  const region = section && section.querySelector(".message");
  if (region) showMessage(region, text);
}

// A new route (a link, back, forward) shows its view; the uploads panel and its uploads stay.
subscribe((_, changed) => {
  if (changed.includes("session")) keeper.watch(state.session);
  if (changed.includes("route") && shown && !same(shown.route, state.route)) render();
});

// Another tab logged in, renewed the token, logged out or saw the session end: this one follows.
watchOtherTabs((session) => {
  if (!state.config) return; // still booting: boot() reads the session itself
  if (!session) {
    if (!state.session) return;
    if (state.uploads) state.uploads.pauseAll("You logged out in another tab. Log in again, then pick the file again to resume.");
    update({ session: null });
    showSignedOut({ text: "You are logged out.", kind: "info" });
  } else if (state.session && session.username === state.session.username) {
    update({ session });
  } else {
    if (state.uploads) state.uploads.pauseAll("Another account logged in in another tab.");
    update({ session });
    showSignedIn();
  }
});

// A key press or a click is use of the session too.
for (const type of ["keydown", "pointerdown"]) {
  document.addEventListener(type, () => { if (state.session) keeper.used(); }, { capture: true, passive: true });
}

// Dropping files anywhere on the page uploads them (when logged in).
let dragDepth = 0;
const carriesFiles = (event) => event.dataTransfer && [...event.dataTransfer.types].includes("Files");
document.addEventListener("dragenter", (event) => {
  if (!state.uploads || !carriesFiles(event)) return;
  dragDepth += 1;
  dropOverlay.hidden = false;
});
document.addEventListener("dragleave", () => {
  dragDepth = Math.max(0, dragDepth - 1);
  if (!dragDepth) dropOverlay.hidden = true;
});
document.addEventListener("dragover", (event) => {
  if (state.uploads && carriesFiles(event)) event.preventDefault();
});
document.addEventListener("drop", (event) => {
  dragDepth = 0;
  dropOverlay.hidden = true;
  if (!state.uploads || !carriesFiles(event)) return;
  event.preventDefault();
  if (!state.tree) {
    const files = [...event.dataTransfer.files];
    if (files.length) state.uploads.add(files);
    return;
  }
  // Into the folder shown (the root elsewhere), dropped folders with everything in them.
  const uploads = state.uploads;
  const folder = state.folder || api.folder("root");
  droppedFiles(event.dataTransfer).then(async (files) => {
    const loose = files.filter((file) => !file.relativePath);
    const place = { parent_id: (await folder).folder_id };
    if (loose.length) uploads.add(loose, () => place);
    const inFolders = files.filter((file) => file.relativePath);
    if (inFolders.length) await uploadFolder(uploads, inFolders, folder);
  }).catch(() => {});
});
window.addEventListener("beforeunload", (event) => {
  if (state.uploads && state.uploads.busy) event.preventDefault();
});

startRouter((route) => update({ route }));
boot();
