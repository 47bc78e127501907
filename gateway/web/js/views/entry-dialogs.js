// The dialogs of a tree entry (contract v1.2): rename (New name, Save), move (a folder picker with
// Move here), and a file's versions (a row per version with Restore and Download).
import { idOf } from "../api.js";
import { formatDate, formatSize, quotedName, shownName } from "../format.js";
import { field, h, nameElement, openDialog, replace, showMessage } from "../ui/dom.js";
import { nameOf } from "./files.js";

/** Rename `entry`; onDone(updated) after the server took the new name. */
export function openRenameDialog(api, entry, onDone) {
  const { wrapper, input } = field("New name", { type: "text", name: "new-name", value: nameOf(entry), autocomplete: "off", required: true });
  const message = h("div", { class: "message", hidden: true });
  const save = h("button", { type: "submit", class: "button primary", text: "Save" });
  const form = h("form", { class: "stack", novalidate: true }, message, wrapper, h("div", { class: "dialog-actions" }, save));
  const dialog = openDialog(`Rename ${shownName(nameOf(entry))}`, form);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const name = input.value.trim();
    if (!name || name === nameOf(entry)) {
      if (!name) showMessage(message, "Type the new name.");
      else dialog.close();
      return;
    }
    save.disabled = true;
    try {
      const updated = await api.renameOrMove(entry, { name });
      dialog.close();
      onDone(updated);
    } catch (error) {
      showMessage(message, error.code === "name_taken" ? `There is already something named ${quotedName(name)} in this folder.` : error.message);
      input.focus();
    } finally {
      save.disabled = false;
    }
  });
  input.focus();
  // Select the name without its extension, as file managers do.
  const dot = entry.type === "folder" ? -1 : input.value.lastIndexOf(".");
  input.setSelectionRange(0, dot > 0 ? dot : input.value.length);
}

/**
 * Move `entries` (one entry, or several selected together): the dialog lists the folders of the folder
 * it shows (each a button that opens it), from the root; Move here moves every entry into the folder
 * shown, one call each, and names any that could not move. onDone() after a move.
 */
export function openMoveDialog(api, entries, onDone) {
  const moving = Array.isArray(entries) ? entries : [entries];
  const ids = new Set(moving.map(idOf));
  const message = h("div", { class: "message", hidden: true });
  const where = h("p", { class: "move-where" });
  const list = h("ul", { class: "folder-list", "aria-label": "Folders" });
  const up = h("button", { type: "button", class: "button small", text: "Up" });
  const moveHere = h("button", { type: "button", class: "button primary", text: "Move here" });
  let at = null; // the folder shown
  const title = moving.length === 1 ? `Move ${shownName(nameOf(moving[0]))}` : `Move ${moving.length} items`;
  const dialog = openDialog(title, h("div", { class: "stack" },
    message, h("div", { class: "move-head" }, where, up), list,
    h("div", { class: "dialog-actions" }, moveHere)));
  const isIn = (entry, folder) => entry.parent_id === folder.folder_id || (!folder.parent_id && entry.parent_id === "root");

  const show = async (folderId) => {
    try {
      const [folder, page] = await Promise.all([api.folder(folderId), api.entries(folderId, null, { limit: 1000 })]);
      at = folder;
      replace(where, "In ", folder.path === "/" ? "All files" : nameElement(folder.path, "folder-path"));
      up.hidden = !folder.parent_id;
      const folders = (page.entries || []).filter((item) => item.type === "folder" && !ids.has(idOf(item)));
      replace(list, folders.map((item) => h("li", {}, h("button", {
        type: "button", class: "button subtle folder-choice", onclick: () => show(item.folder_id),
      }, nameElement(item.name, "folder-name")))));
      if (!folders.length) list.append(h("li", { class: "hint", text: "No folders here." }));
      moveHere.disabled = moving.every((entry) => isIn(entry, folder));
      showMessage(message, "");
    } catch (error) {
      showMessage(message, `Could not list the folders: ${error.message}`);
    }
  };
  up.addEventListener("click", () => at && at.parent_id && show(at.parent_id));
  moveHere.addEventListener("click", async () => {
    if (!at) return;
    moveHere.disabled = true;
    const target = at.parent_id ? at.folder_id : "root";
    const failed = [];
    for (const entry of moving.filter((item) => !isIn(item, at))) {
      try {
        await api.renameOrMove(entry, { parent_id: target });
      } catch (error) {
        failed.push(error.code === "name_taken" ? `${quotedName(nameOf(entry))}: this folder already holds something of that name`
          : error.code === "cycle" ? `${quotedName(nameOf(entry))}: a folder cannot be moved into itself or a folder inside it`
            : `${quotedName(nameOf(entry))}: ${error.message}`);
      }
    }
    if (failed.length < moving.length) onDone();
    if (!failed.length) {
      dialog.close();
      return;
    }
    moveHere.disabled = false;
    showMessage(message, moving.length === 1 ? `Could not move ${failed[0]}.` : `Could not move ${failed.join("; ")}.`);
  });
  show("root");
}

/** A file's versions (the files it replaced, newest first): Restore makes one current again; Download. */
export function openVersionsDialog(api, file, { download, onRestored }) {
  const message = h("div", { class: "message", hidden: true });
  const body = h("tbody");
  const empty = h("p", { class: "empty", text: "No earlier versions.", hidden: true });
  openDialog(`Versions of ${shownName(nameOf(file))}`, h("div", { class: "stack" },
    message, empty,
    h("table", { class: "file-table versions", "aria-label": "Versions" },
      h("thead", {}, h("tr", {},
        h("th", { scope: "col", text: "Date" }),
        h("th", { scope: "col", text: "Size" }),
        h("th", { scope: "col" }, h("span", { class: "visually-hidden", text: "Actions" })))),
      body)));
  api.versions(file.file_id).then((answer) => {
    const versions = answer.versions || [];
    empty.hidden = versions.length > 0;
    replace(body, versions.map((version) => {
      const when = version.modified_at || version.created_at;
      const getIt = h("button", { type: "button", class: "button small", text: "Download", onclick: () => download(version, getIt) });
      const restore = h("button", {
        type: "button", class: "button small", text: "Restore",
        onclick: async () => {
          restore.disabled = true;
          try {
            const current = await api.restoreVersion(version.file_id);
            showMessage(message, `The version of ${formatDate(when)} is current again.`, "info");
            onRestored(current);
          } catch (error) {
            restore.disabled = false;
            showMessage(message, `Could not restore it: ${error.message}`);
          }
        },
      });
      return h("tr", {},
        h("td", {}, h("time", { datetime: when, text: formatDate(when) })),
        h("td", { text: formatSize(version.file_size) }),
        h("td", { class: "col-actions" }, h("div", { class: "row-actions" }, restore, getIt)));
    }));
  }).catch((error) => showMessage(message, `Could not load the versions: ${error.message}`));
}
