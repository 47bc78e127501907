// The tree (contract v1.2, "The web app, v1.2"): one folder at a time with its breadcrumb, new
// folders, uploads of files and whole folders into the folder shown, search, and the trash.
import { idOf } from "../api.js";
import { quotedName, shownName } from "../format.js";
import { href, navigate } from "../router.js";
import { field, h, nameElement, replace, showMessage } from "../ui/dom.js";
import { FileSection, nameOf } from "./files.js";
import { storageView } from "./storage.js";

/**
 * The folder view. route: {folder}; uploads: the uploads panel; actions: the row actions (download,
 * share, open, rename, move, versions); onChanged(): entries were deleted.
 * Returns {element, folder (a promise of the folder shown), reloadOwn()}.
 */
export function folderView({ api, route, uploads, actions, onChanged }) {
  const folderId = route.folder || "root";
  const crumbs = h("ol", { class: "breadcrumb" });
  const entries = new FileSection({
    id: "my-files", title: "Files", own: true, tree: true,
    actions: { ...actions, remove: (entry) => api.deleteEntry(entry), changed: onChanged },
    emptyText: "This folder is empty. Upload files or a folder, or make a new folder.",
    load: (cursor) => api.entries(folderId, cursor),
  });
  // The root also lists the files others shared with you (sharing stays per file in v1.2).
  const shared = folderId === "root" ? new FileSection({
    id: "shared-files", title: "Shared with me", own: false, actions,
    emptyText: "Nobody has shared a file with you yet.",
    load: (cursor) => api.listShared(cursor),
  }) : null;
  const folder = api.folder(folderId);
  const heading = h("h1", { id: "upload-title", text: folderId === "root" ? "All files" : "…" });
  folder.then((shown) => {
    if (folderId !== "root") replace(heading, nameElement(shown.name, "folder-name"));
    document.title = folderId === "root" ? "Files" : `${shownName(shown.name)} · Files`;
    return fillBreadcrumb(api, crumbs, shown);
  }).catch((error) => {
    replace(heading, "Folder not found");
    showMessage(entries.message, error.status === 404
      ? "This folder does not exist, or it is in the trash."
      : `Could not open this folder: ${error.message}`);
  });

  const placeOf = async () => ({ parent_id: folderId === "root" ? "root" : (await folder).folder_id });
  const element = h("div", { class: "view" },
    h("nav", { class: "crumbs", "aria-label": "Breadcrumb" }, crumbs),
    h("section", { class: "upload-zone", "aria-labelledby": "upload-title" },
      h("div", {},
        heading,
        storageView(),
        h("p", { class: "hint", text: "Pick files or a whole folder, or drop them anywhere on this page: they go into this folder. Interrupted uploads resume: pick the same file again." })),
      h("div", { class: "upload-picker" },
        filePicker("upload-input", "Upload files", false, (files) => uploadHere(uploads, files, placeOf)),
        filePicker("upload-folder-input", "Upload folder", true, (files) => uploadFolder(uploads, files, folder)),
      )),
    toolbar(api, folderId, () => reload()),
    uploads.element,
    entries.element,
    shared ? shared.element : null,
  );
  const reload = async () => {
    const loading = entries.reload();
    const generation = entries.generation;
    await loading;
    entries.addRows(await unfinishedIn(api, await folder), generation);
  };
  reload().catch(() => {});
  if (shared) shared.reload();
  return { element, folder, reloadOwn: () => reload().catch(() => {}) };
}

/**
 * Uploads in progress headed for this folder, as rows after its entries (Incomplete: pick the file
 * again to resume). Entries hold only uploaded files, and GET /files lists uploads in progress among
 * all the user's files, newest first: an upload in progress is recent (the gateway abandons unfinished
 * ones), so the newest page is where they are.
 */
async function unfinishedIn(api, folder) {
  const page = await api.listFiles(null, { limit: 100 });
  const here = (file) => file.parent_id === folder.folder_id || (!folder.parent_id && (!file.parent_id || file.parent_id === "root"));
  return (page.files || []).filter((file) => file.status === "uploading" && here(file));
}

/** Fill the breadcrumb: All files, then each folder from the root to `folder` (the last one is the page). */
async function fillBreadcrumb(api, list, folder) {
  const chain = [];
  for (let at = folder; at && at.parent_id; at = await api.folder(at.parent_id)) chain.unshift(at);
  const link = (text, id, current) => h("li", {}, h("a", {
    href: href({ view: "files", folder: id }), "aria-current": current ? "page" : null,
  }, text));
  replace(list,
    link("All files", "root", chain.length === 0),
    chain.map((item, index) => link(nameElement(item.name, "crumb-name"), item.folder_id, index === chain.length - 1)));
}

function filePicker(id, label, directory, onFiles) {
  const input = h("input", { type: "file", id, multiple: true, class: "file-input" });
  if (directory) input.webkitdirectory = true;
  input.addEventListener("change", () => {
    const files = [...input.files];
    // Cleared so that picking the same file again (to resume it) fires "change" again.
    input.value = "";
    if (files.length) onFiles(files);
  });
  return [input, h("label", { for: id, class: `button${directory ? "" : " primary"}`, text: label })];
}

async function uploadHere(uploads, files, placeOf) {
  const place = await placeOf();
  uploads.add(files, () => place);
}

/**
 * Upload a folder's files with their subfolders, below `folder` (a promise of the folder shown):
 * each file's path is the folder's path, then the file's path inside what was picked or dropped
 * (webkitRelativePath, or `relativePath` that drop.js gives dropped files). The gateway makes the
 * missing folders.
 */
export async function uploadFolder(uploads, files, folder) {
  const base = (await folder).path.replace(/\/$/, "");
  uploads.add(files, (file) => {
    const inside = file.relativePath || file.webkitRelativePath || file.name;
    return { path: `${base}/${inside}` };
  });
}

/** New folder, Trash and Search: the tools above a folder's entries. */
function toolbar(api, folderId, reload) {
  const message = h("div", { class: "message", hidden: true });
  const { wrapper, input } = field("Folder name", { type: "text", name: "folder-name", autocomplete: "off", required: true });
  const create = h("form", { class: "inline-form new-folder", hidden: true, novalidate: true },
    wrapper, h("button", { type: "submit", class: "button primary", text: "Create" }),
    h("button", { type: "button", class: "button", text: "Cancel", onclick: () => { create.hidden = true; newFolder.focus(); } }));
  const newFolder = h("button", { type: "button", class: "button", text: "New folder", onclick: () => {
    create.hidden = false;
    input.value = "";
    input.focus();
  } });
  create.addEventListener("submit", async (event) => {
    event.preventDefault();
    const name = input.value.trim();
    if (!name) {
      showMessage(message, "Type a name for the new folder.");
      input.focus();
      return;
    }
    try {
      const made = await api.createFolder(folderId, name);
      create.hidden = true;
      showMessage(message, `Made the folder ${quotedName(made.name)}.`, "info");
      await reload();
    } catch (error) {
      showMessage(message, error.code === "name_taken" ? `There is already something named ${quotedName(name)} here.` : error.message);
      input.focus();
    }
  });
  return h("div", { class: "toolbar" },
    h("div", { class: "toolbar-row" },
      newFolder,
      trashLink(),
      searchForm()),
    create, message);
}

function trashLink() {
  return h("a", { class: "button subtle", href: href({ view: "trash" }), text: "Trash" });
}

/** The search field: a search landmark holding a searchbox labelled Search; the results are a route. */
export function searchForm(q = "") {
  const input = h("input", { type: "search", id: "search-input", name: "q", value: q, "aria-label": "Search", placeholder: "Search your files", autocomplete: "off" });
  const form = h("form", { class: "search-form", role: "search" }, input,
    h("button", { type: "submit", class: "button", text: "Find" }));
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const text = input.value.trim();
    navigate(text ? { view: "search", q: text } : { view: "files", folder: "root" });
  });
  return form;
}

/** Search results: the caller's folders and files whose name holds q, each saying where it is. */
export function searchView({ api, route, actions, onChanged }) {
  const results = new FileSection({
    id: "my-files", title: `Results for “${route.q}”`, own: true, tree: true, showPaths: true,
    actions: { ...actions, remove: (entry) => api.deleteEntry(entry), changed: onChanged },
    emptyText: "Nothing of yours has a name holding this.",
    load: async () => ({ entries: (await api.search(route.q)).entries || [], cursor: null }),
  });
  document.title = `Search · Files`;
  const element = h("div", { class: "view" },
    h("nav", { class: "crumbs", "aria-label": "Breadcrumb" },
      h("ol", { class: "breadcrumb" }, h("li", {}, h("a", { href: href({ view: "files", folder: "root" }), text: "All files" })))),
    h("h1", { text: "Search" }),
    h("div", { class: "toolbar" }, h("div", { class: "toolbar-row" }, trashLink(), searchForm(route.q))),
    results.element);
  results.reload();
  return { element, reloadOwn: () => results.reload() };
}

/** The trash: what was deleted, newest first, each with Restore (back where it was). */
export function trashView({ api, onChanged }) {
  const message = h("div", { class: "message", hidden: true });
  const body = h("tbody");
  const empty = h("p", { class: "empty", text: "The trash is empty.", hidden: true });
  const more = h("button", { type: "button", class: "button", text: "More", hidden: true, onclick: () => load() });
  let cursor = null;

  const row = (entry) => {
    const restore = h("button", { type: "button", class: "button small", text: "Restore", "aria-label": `Restore ${shownName(nameOf(entry))}` });
    const tr = h("tr", { dataset: { id: idOf(entry) } },
      h("td", { class: "col-name" }, nameElement(nameOf(entry), "file-name"),
        h("span", { class: "file-where", text: `was ${entry.path}` })),
      h("td", { class: "col-type", text: entry.type === "folder" ? "Folder" : "File" }),
      h("td", { class: "col-date" }, h("time", { datetime: entry.deleted_at, text: `deleted ${new Date(entry.deleted_at).toLocaleString()}` })),
      h("td", { class: "col-actions" }, h("div", { class: "row-actions" }, restore)));
    restore.addEventListener("click", async () => {
      restore.disabled = true;
      try {
        const back = await api.restoreFromTrash(entry);
        tr.remove();
        empty.hidden = body.childElementCount > 0;
        showMessage(message, `Restored ${quotedName(nameOf(back))} to ${back.path}.`, "info");
        onChanged();
      } catch (error) {
        restore.disabled = false;
        showMessage(message, `Could not restore ${quotedName(nameOf(entry))}: ${error.message}`);
      }
    });
    return tr;
  };

  const load = async () => {
    more.disabled = true;
    try {
      const page = await api.trash(cursor);
      for (const entry of page.entries || []) body.append(row(entry));
      cursor = page.cursor || null;
    } catch (error) {
      showMessage(message, `Could not load the trash: ${error.message}`);
    } finally {
      more.disabled = false;
      more.hidden = !cursor;
      empty.hidden = body.childElementCount > 0;
    }
  };
  document.title = "Trash · Files";
  const element = h("div", { class: "view" },
    h("nav", { class: "crumbs", "aria-label": "Breadcrumb" },
      h("ol", { class: "breadcrumb" }, h("li", {}, h("a", { href: href({ view: "files", folder: "root" }), text: "All files" })))),
    h("section", { class: "files", id: "trash", "aria-labelledby": "trash-title" },
      h("h1", { id: "trash-title", text: "Trash" }),
      h("p", { class: "hint", text: "Deleted files and folders stay here for a while, then are deleted for good. Restore puts them back where they were." }),
      message, empty,
      h("div", { class: "table-wrap" }, h("table", { class: "file-table", "aria-labelledby": "trash-title" },
        h("thead", {}, h("tr", {},
          h("th", { scope: "col", text: "Name" }),
          h("th", { scope: "col", class: "col-type", text: "Type" }),
          h("th", { scope: "col", class: "col-date", text: "Deleted" }),
          h("th", { scope: "col", class: "col-actions" }, h("span", { class: "visually-hidden", text: "Actions" })))),
        body)),
      h("div", { class: "more" }, more)));
  load();
  return { element, reloadOwn: () => {} };
}
