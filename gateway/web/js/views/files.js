// Listings, a page at a time (the API's keyset cursor), loaded when "More" scrolls into view or is
// pressed: the caller's own files and those shared with them (v1.1), or, with the tree (contract
// v1.2), a folder's entries (folders first, each opening the folder) and search results.
import { confirmDialog, h, nameElement, replace, showMessage } from "../ui/dom.js";
import { formatDate, formatSize, formatType, quotedName, shownName } from "../format.js";
import { href } from "../router.js";
import { Selection } from "./selection.js";
import { thumbnailSlot, viewSwitch } from "./thumbnails.js";

const STATUS = { uploaded: "Uploaded", uploading: "Incomplete", failed: "Failed" };

export class FileSection {
  /**
   * title: the heading. load(cursor) -> {files, next_cursor}. own: the caller owns these
   * files (Share and Delete, and selecting several to delete them together). actions: {download(file),
   * share(file), remove(file), changed(), open(file, files)}: open shows a file (its name is a button),
   * with the section's other uploaded files to move to; changed() after files were deleted.
   */
  constructor({ id, title, emptyText, load, own, actions, tree = false, showPaths = false }) {
    this.load = load;
    this.own = own;
    this.tree = tree; // entries of the tree: folder rows, and Rename, Move, Versions; Delete moves to the trash
    this.showPaths = showPaths; // each row says where it is (search results)
    this.actions = actions;
    this.cursor = null;
    this.loading = false;
    this.done = false;
    this.body = h("tbody");
    this.fileOf = new WeakMap(); // row -> its file
    this.generation = 0; // bumped by reload(): pages of an older one are dropped
    this.empty = h("p", { class: "empty", text: emptyText, hidden: true });
    this.message = h("div", { class: "message", hidden: true });
    this.more = h("button", { type: "button", class: "button", text: "More", hidden: true, onclick: () => this.loadMore() });
    const headingId = `${id}-title`;
    this.sort = null; // {key: "name" | "size" | "date", ascending}; null: the server's order
    this.sortHeaders = new Map(); // key -> its th
    this.sortSelect = this.sortControl(id);
    this.selection = own ? new Selection({ onChange: () => this.showSelection() }) : null;
    this.selectionCount = h("span", { class: "selection-count" });
    const chosen = () => this.selection.selected().map(({ file }) => file);
    const downloadSelected = h("button", {
      type: "button", class: "button small", text: "Download selected",
      onclick: () => this.actions.downloadZip(chosen(), downloadSelected),
    });
    this.selectionBar = h("div", { class: "selection-bar", hidden: true },
      this.selectionCount,
      downloadSelected,
      // The tree's entries move together: one folder picker for all of them.
      tree ? h("button", { type: "button", class: "button small", text: "Move selected", onclick: () => this.actions.move(chosen()) }) : null,
      h("button", { type: "button", class: "button small danger", text: "Delete selected", onclick: () => this.removeSelected() }),
    );
    const head = h("div", { class: "files-head" }, h("h2", { id: headingId, text: title }),
      h("div", { class: "sort-choice" }, h("label", { for: this.sortSelect.id, text: "Sort by" }), this.sortSelect));
    this.element = h("section", { class: "files", id, "aria-labelledby": headingId },
      head,
      this.message,
      this.selectionBar,
      this.empty,
      h("div", { class: "table-wrap" },
        h("table", { class: `file-table${own ? " selectable" : ""}`, "aria-labelledby": headingId },
          h("thead", {}, h("tr", {},
            own ? h("th", { scope: "col", class: "col-select" }, this.selection.all) : null,
            this.sortHeader("name", "Name", ""),
            this.sortHeader("size", "Size", "col-size"),
            h("th", { scope: "col", class: "col-type", text: "Type" }),
            this.sortHeader("date", "Date", "col-date"),
            h("th", { scope: "col", class: "col-status", text: "Status" }),
            h("th", { scope: "col", class: "col-actions" }, h("span", { class: "visually-hidden", text: "Actions" })),
          )),
          this.body,
        ),
      ),
      h("div", { class: "more" }, this.more),
    );
    if (own) head.append(viewSwitch()); // one per page: the caller's own files; every section follows it
    // Load the next page as "More" comes into view (scrolling), as well as on a press.
    this.observer = new IntersectionObserver((entries) => {
      if (entries.some((e) => e.isIntersecting)) this.loadMore();
    }, { rootMargin: "200px" });
    this.observer.observe(this.more);
  }

  /** Load from the first page again; a page still on its way from before is dropped. */
  async reload() {
    this.generation = (this.generation || 0) + 1;
    this.cursor = null;
    this.done = false;
    this.loading = false;
    replace(this.body);
    await this.loadMore(true);
  }

  async loadMore(first = false) {
    if (this.loading || (this.done && !first)) return;
    const generation = this.generation;
    this.loading = true;
    this.more.disabled = true;
    try {
      const page = await this.load(this.cursor);
      if (generation !== this.generation) return;
      for (const entry of page.files || page.entries || []) {
        this.body.append(entry.type === "folder" ? this.folderRow(entry) : this.row(entry));
      }
      this.cursor = page.next_cursor || page.cursor || null;
      this.done = !this.cursor;
      showMessage(this.message, "");
    } catch (error) {
      if (generation === this.generation) showMessage(this.message, `Could not load the list: ${error.message}`);
    } finally {
      if (generation === this.generation) {
        this.loading = false;
        this.more.disabled = false;
        this.more.hidden = this.done;
        this.empty.hidden = this.body.childElementCount > 0;
        this.applySort();
        if (this.selection) this.selection.changed();
      }
    }
  }

  /** A column heading that sorts the rows shown by it: a button, with aria-sort on the heading. */
  sortHeader(key, label, className) {
    const th = h("th", { scope: "col", class: className || null },
      h("button", { type: "button", class: "sort-button", text: label, onclick: () => this.sortBy(key) }));
    this.sortHeaders.set(key, th);
    return th;
  }

  /** "Sort by": the column headings' choice (key and direction) as one select, for where the headings
   *  are not shown (the grid view, a phone's width: the stylesheet shows one or the other). */
  sortControl(id) {
    const select = h("select", { id: `${id}-sort`, class: "sort-select" },
      h("option", { value: "", text: "As listed", disabled: true }),
      SORT_CHOICES.map(([value, text]) => h("option", { value, text })));
    select.value = "";
    select.addEventListener("change", () => {
      const [key, direction] = select.value.split("-");
      this.sortBy(key, direction === "ascending");
    });
    return select;
  }

  /** Sort by `key`, in the given direction; without one, ascending first (names A to Z, smallest,
   *  oldest), and again reverses it (a heading pressed twice). */
  sortBy(key, ascending = null) {
    if (ascending === null) ascending = this.sort && this.sort.key === key ? !this.sort.ascending : true;
    this.sort = { key, ascending };
    const direction = ascending ? "ascending" : "descending";
    for (const [name, th] of this.sortHeaders) {
      if (name === key) th.setAttribute("aria-sort", direction);
      else th.removeAttribute("aria-sort");
    }
    this.sortSelect.value = `${key}-${direction}`;
    this.applySort();
  }

  /** Put the rows shown in the chosen order, folders before files as the listing has them. Rows of
   *  pages loaded later are sorted in as they come. */
  applySort() {
    if (!this.sort) return;
    const { key, ascending } = this.sort;
    const value = SORT_KEYS[key];
    const rows = [...this.body.rows].map((row) => ({ row, entry: this.fileOf.get(row) })).filter(({ entry }) => entry);
    rows.sort((a, b) => {
      const folders = (b.entry.type === "folder") - (a.entry.type === "folder");
      if (folders) return folders;
      const order = compare(value(a.entry), value(b.entry)) || compare(nameOf(a.entry), nameOf(b.entry));
      return ascending ? order : -order;
    });
    this.body.append(...rows.map(({ row }) => row));
  }

  row(file) {
    const status = STATUS[file.status] || file.status;
    const download = this.button("Download", file, () => this.actions.download(file, download));
    download.disabled = file.status !== "uploaded";
    const buttons = [download];
    if (this.own) {
      buttons.push(this.button("Share", file, () => this.actions.share(file)));
      if (this.tree) buttons.push(...this.treeButtons(file), this.button("Versions", file, () => this.actions.versions(file)));
      buttons.push(this.button("Delete", file, () => this.remove(file, row), "danger"));
    }
    const detail = file.status === "uploading"
      ? `${file.uploaded_chunks} of ${file.total_chunks} chunks; pick the file again to resume`
      : "";
    const name = nameElement(file.file_name, "file-name");
    const row = h("tr", { dataset: { fileId: file.file_id, status: file.status } },
      this.own ? h("td", { class: "col-select" }, this.selection.checkbox({ file, row: () => row }, file.file_name)) : null,
      h("td", { class: "col-name" },
        h("span", { class: "name-line" },
          thumbnailSlot(file, this.actions.fetchFile),
          file.status === "uploaded" && this.actions.open
            ? h("button", { type: "button", class: "name-button", onclick: () => this.actions.open(file, this.openable()) }, name)
            : name),
        !this.own && file.uploaded_by ? h("span", { class: "file-owner", text: `from ${file.uploaded_by}` }) : null,
        this.where(file),
        h("span", { class: "file-meta", text: `${formatSize(file.file_size)} · ${formatDate(file.created_at)}` }),
      ),
      h("td", { class: "col-size", text: formatSize(file.file_size) }),
      h("td", { class: "col-type", text: formatType(file.file_type), title: file.file_type }),
      h("td", { class: "col-date" }, h("time", { datetime: file.created_at, text: formatDate(file.created_at) })),
      h("td", { class: "col-status" },
        h("span", { class: `badge ${file.status}`, text: status }),
        detail ? h("span", { class: "file-detail", text: detail }) : null,
      ),
      h("td", { class: "col-actions" }, h("div", { class: "row-actions" }, buttons)),
    );
    this.fileOf.set(row, file);
    return row;
  }

  /** Rows for files that are not in the pages loaded (uploads in progress), once each; none when the
   *  list was reloaded since `generation` (they were looked up for an older one). */
  addRows(files, generation) {
    if (generation !== this.generation) return;
    const shown = new Set([...this.body.rows].map((row) => row.dataset.fileId).filter(Boolean));
    for (const file of files) if (!shown.has(file.file_id)) this.body.append(this.row(file));
    this.empty.hidden = this.body.childElementCount > 0;
    this.applySort();
    if (this.selection) this.selection.changed();
  }

  /** A folder's row: its name a link that opens it; Rename, Move and Delete (to the trash). */
  folderRow(folder) {
    const row = h("tr", { class: "folder-row", dataset: { folderId: folder.folder_id } },
      this.own ? h("td", { class: "col-select" }, this.selection.checkbox({ file: folder, row: () => row }, folder.name)) : null,
      h("td", { class: "col-name" },
        h("a", { class: "folder-link", href: href({ view: "files", folder: folder.folder_id }) },
          h("span", { class: "folder-icon", "aria-hidden": "true" }), nameElement(folder.name, "file-name")),
        this.where(folder),
        h("span", { class: "file-meta", text: `Folder · ${formatDate(folder.modified_at || folder.created_at)}` }),
      ),
      h("td", { class: "col-size" }),
      h("td", { class: "col-type", text: "Folder" }),
      h("td", { class: "col-date" }, h("time", { datetime: folder.modified_at || folder.created_at, text: formatDate(folder.modified_at || folder.created_at) })),
      h("td", { class: "col-status" }),
      h("td", { class: "col-actions" }, h("div", { class: "row-actions" }, this.own ? [
        this.zipButton(folder),
        ...this.treeButtons(folder),
        this.button("Delete", folder, () => this.remove(folder, row), "danger"),
      ] : null)),
    );
    this.fileOf.set(row, folder);
    return row;
  }

  /** A row's button: `label` shown, and for screen readers the entry's name after it ("Download
   *  report.pdf"), so that a list of rows is not a list of identical "Download" buttons; the name
   *  starts with the label, as the contract's names and the label-in-name rule ask. */
  button(label, entry, onclick, kind = "") {
    return h("button", {
      type: "button", class: `button small${kind ? ` ${kind}` : ""}`, text: label,
      "aria-label": `${label} ${shownName(nameOf(entry))}`, onclick,
    });
  }

  /** A folder's Download: the folder and all it holds as one zip. */
  zipButton(folder) {
    const button = h("button", {
      type: "button", class: "button small", text: "Download",
      "aria-label": `Download ${shownName(folder.name)} as a zip`,
      onclick: () => this.actions.downloadZip([folder], button),
    });
    return button;
  }

  treeButtons(entry) {
    return [this.button("Rename", entry, () => this.actions.rename(entry)), this.button("Move", entry, () => this.actions.move(entry))];
  }

  /** Where an entry is, for search results: its folder's path. */
  where(entry) {
    if (!this.showPaths || !entry.path) return null;
    const folder = entry.path.slice(0, entry.path.lastIndexOf("/")) || "/";
    return h("span", { class: "file-where", text: `in ${folder}` });
  }

  /** The uploaded files shown, in their order: what a preview moves between. */
  openable() {
    return [...this.body.rows].map((row) => this.fileOf.get(row))
      .filter((file) => file && file.type !== "folder" && file.status === "uploaded");
  }

  /** What deleting does, in a sentence, for `what` (a quoted name, or "These 3 items"). */
  deleteText(what, many) {
    return this.tree
      ? `${what} will go to the trash, and ${many ? "their" : "its"} shares and links end. You can restore ${many ? "them" : "it"} from Trash.`
      : `${what} will be deleted for you and everyone ${many ? "they are" : "it is"} shared with. This cannot be undone.`;
  }

  async remove(entry, row) {
    const kind = entry.type === "folder" ? "folder" : "file";
    const confirmed = await confirmDialog(`Delete this ${kind}?`, this.deleteText(quotedName(nameOf(entry)), false), "Delete");
    if (!confirmed) return;
    try {
      await this.actions.remove(entry);
      row.remove();
      this.rowsChanged();
      showMessage(this.message, `Deleted ${quotedName(nameOf(entry))}.`, "info");
    } catch (error) {
      showMessage(this.message, `Could not delete ${quotedName(nameOf(entry))}: ${error.message}`);
    }
  }

  rowsChanged() {
    this.empty.hidden = this.body.childElementCount > 0;
    if (this.selection) this.selection.changed();
    if (this.actions.changed) this.actions.changed();
  }

  showSelection() {
    const count = this.selection.selected().length;
    this.selectionBar.hidden = count === 0;
    replace(this.selectionCount, `${count} selected`);
  }

  /** Delete every selected entry, after one question; each one that fails is named. */
  async removeSelected() {
    const chosen = this.selection.selected();
    if (!chosen.length) return;
    const single = chosen.length === 1;
    const noun = chosen.every(({ file }) => file.type !== "folder") ? "files" : "items";
    const what = single ? quotedName(nameOf(chosen[0].file)) : `These ${chosen.length} ${noun}`;
    const confirmed = await confirmDialog(
      single ? `Delete this ${chosen[0].file.type === "folder" ? "folder" : "file"}?` : `Delete ${chosen.length} ${noun}?`,
      this.deleteText(what, !single),
      "Delete",
    );
    if (!confirmed) return;
    const failed = [];
    for (const { file, row } of chosen) {
      try {
        await this.actions.remove(file);
        row().remove();
      } catch (error) {
        failed.push(`${quotedName(nameOf(file))} (${error.message})`);
      }
    }
    this.rowsChanged();
    const deleted = chosen.length - failed.length;
    if (failed.length) showMessage(this.message, `Deleted ${deleted} of ${chosen.length}. Could not delete ${failed.join(", ")}.`);
    else showMessage(this.message, `Deleted ${deleted} ${noun === "files" && deleted === 1 ? "file" : noun === "items" && deleted === 1 ? "item" : noun}.`, "info");
  }
}

const SORT_CHOICES = [
  ["name-ascending", "Name, A to Z"], ["name-descending", "Name, Z to A"],
  ["size-ascending", "Size, smallest first"], ["size-descending", "Size, largest first"],
  ["date-ascending", "Date, oldest first"], ["date-descending", "Date, newest first"],
];
const COLLATOR = new Intl.Collator(undefined, { numeric: true, sensitivity: "base" });
const SORT_KEYS = {
  name: (entry) => nameOf(entry),
  size: (entry) => (entry.type === "folder" ? -1 : entry.file_size ?? 0),
  // The date each row shows: a file's upload, a folder's last change.
  date: (entry) => Date.parse(entry.type === "folder" ? entry.modified_at || entry.created_at : entry.created_at) || 0,
};

function compare(a, b) {
  return typeof a === "string" ? COLLATOR.compare(a, b) : a - b;
}

/** An entry's name: a folder's, or a file's (v1.1 file objects have only file_name). */
export function nameOf(entry) {
  return entry.type === "folder" ? entry.name : entry.name ?? entry.file_name;
}
