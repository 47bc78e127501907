// File listings: the caller's own files and those shared with them, a page at a time
// (the API's keyset cursor, `next_cursor`), loaded when "More" scrolls into view or is pressed.
import { confirmDialog, h, nameElement, replace, showMessage } from "../ui/dom.js";
import { formatDate, formatSize, formatType, quotedName } from "../format.js";
import { Selection } from "./selection.js";

const STATUS = { uploaded: "Uploaded", uploading: "Incomplete", failed: "Failed" };

export class FileSection {
  /**
   * title: the heading. load(cursor) -> {files, next_cursor}. own: the caller owns these
   * files (Share and Delete, and selecting several to delete them together). actions: {download(file),
   * share(file), remove(file), changed(), open(file, files)}: open shows a file (its name is a button),
   * with the section's other uploaded files to move to; changed() after files were deleted.
   */
  constructor({ id, title, emptyText, load, own, actions }) {
    this.load = load;
    this.own = own;
    this.actions = actions;
    this.cursor = null;
    this.loading = false;
    this.done = false;
    this.body = h("tbody");
    this.fileOf = new WeakMap(); // row -> its file
    this.empty = h("p", { class: "empty", text: emptyText, hidden: true });
    this.message = h("div", { class: "message", hidden: true });
    this.more = h("button", { type: "button", class: "button", text: "More", hidden: true, onclick: () => this.loadMore() });
    const headingId = `${id}-title`;
    this.selection = own ? new Selection({ onChange: () => this.showSelection() }) : null;
    this.selectionCount = h("span", { class: "selection-count" });
    this.selectionBar = h("div", { class: "selection-bar", hidden: true },
      this.selectionCount,
      h("button", { type: "button", class: "button small danger", text: "Delete selected", onclick: () => this.removeSelected() }),
    );
    this.element = h("section", { class: "files", id, "aria-labelledby": headingId },
      h("h2", { id: headingId, text: title }),
      this.message,
      this.selectionBar,
      this.empty,
      h("div", { class: "table-wrap" },
        h("table", { class: `file-table${own ? " selectable" : ""}`, "aria-labelledby": headingId },
          h("thead", {}, h("tr", {},
            own ? h("th", { scope: "col", class: "col-select" }, this.selection.all) : null,
            h("th", { scope: "col", text: "Name" }),
            h("th", { scope: "col", class: "col-size", text: "Size" }),
            h("th", { scope: "col", class: "col-type", text: "Type" }),
            h("th", { scope: "col", class: "col-date", text: "Date" }),
            h("th", { scope: "col", class: "col-status", text: "Status" }),
            h("th", { scope: "col", class: "col-actions" }, h("span", { class: "visually-hidden", text: "Actions" })),
          )),
          this.body,
        ),
      ),
      h("div", { class: "more" }, this.more),
    );
    // Load the next page as "More" comes into view (scrolling), as well as on a press.
    this.observer = new IntersectionObserver((entries) => {
      if (entries.some((e) => e.isIntersecting)) this.loadMore();
    }, { rootMargin: "200px" });
    this.observer.observe(this.more);
  }

  async reload() {
    this.cursor = null;
    this.done = false;
    replace(this.body);
    await this.loadMore(true);
  }

  async loadMore(first = false) {
    if (this.loading || (this.done && !first)) return;
    this.loading = true;
    this.more.disabled = true;
    try {
      const page = await this.load(this.cursor);
      for (const file of page.files || []) this.body.append(this.row(file));
      this.cursor = page.next_cursor || null;
      this.done = !this.cursor;
      showMessage(this.message, "");
    } catch (error) {
      showMessage(this.message, `Could not load the list: ${error.message}`);
    } finally {
      this.loading = false;
      this.more.disabled = false;
      this.more.hidden = this.done;
      this.empty.hidden = this.body.childElementCount > 0;
      if (this.selection) this.selection.changed();
    }
  }

  row(file) {
    const status = STATUS[file.status] || file.status;
    const download = h("button", {
      type: "button", class: "button small", text: "Download",
      disabled: file.status !== "uploaded",
      onclick: () => this.actions.download(file, download),
    });
    const buttons = [download];
    if (this.own) {
      buttons.push(
        h("button", { type: "button", class: "button small", text: "Share", onclick: () => this.actions.share(file) }),
        h("button", { type: "button", class: "button small danger", text: "Delete", onclick: () => this.remove(file, row) }),
      );
    }
    const detail = file.status === "uploading"
      ? `${file.uploaded_chunks} of ${file.total_chunks} chunks; pick the file again to resume`
      : "";
    const name = nameElement(file.file_name, "file-name");
    const row = h("tr", { dataset: { fileId: file.file_id, status: file.status } },
      this.own ? h("td", { class: "col-select" }, this.selection.checkbox({ file, row: () => row }, file.file_name)) : null,
      h("td", { class: "col-name" },
        file.status === "uploaded" && this.actions.open
          ? h("button", { type: "button", class: "name-button", onclick: () => this.actions.open(file, this.openable()) }, name)
          : name,
        !this.own && file.uploaded_by ? h("span", { class: "file-owner", text: `from ${file.uploaded_by}` }) : null,
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

  /** The uploaded files shown, in their order: what a preview moves between. */
  openable() {
    return [...this.body.rows].map((row) => this.fileOf.get(row)).filter((file) => file && file.status === "uploaded");
  }

  async remove(file, row) {
    const confirmed = await confirmDialog(
      "Delete this file?",
      `${quotedName(file.file_name)} will be deleted for you and everyone it is shared with. This cannot be undone.`,
      "Delete",
    );
    if (!confirmed) return;
    try {
      await this.actions.remove(file);
      row.remove();
      this.rowsChanged();
      showMessage(this.message, `Deleted ${quotedName(file.file_name)}.`, "info");
    } catch (error) {
      showMessage(this.message, `Could not delete ${quotedName(file.file_name)}: ${error.message}`);
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

  /** Delete every selected file, after one question; each one that fails is named. */
  async removeSelected() {
    const chosen = this.selection.selected();
    if (!chosen.length) return;
    const what = chosen.length === 1 ? quotedName(chosen[0].file.file_name) : `These ${chosen.length} files`;
    const confirmed = await confirmDialog(
      chosen.length === 1 ? "Delete this file?" : `Delete ${chosen.length} files?`,
      `${what} will be deleted for you and everyone they are shared with. This cannot be undone.`,
      "Delete",
    );
    if (!confirmed) return;
    const failed = [];
    for (const { file, row } of chosen) {
      try {
        await this.actions.remove(file);
        row().remove();
      } catch (error) {
        failed.push(`${quotedName(file.file_name)} (${error.message})`);
      }
    }
    this.rowsChanged();
    const deleted = chosen.length - failed.length;
    if (failed.length) showMessage(this.message, `Deleted ${deleted} of ${chosen.length}. Could not delete ${failed.join(", ")}.`);
    else showMessage(this.message, `Deleted ${deleted} file${deleted === 1 ? "" : "s"}.`, "info");
  }
}
