// File listings: the caller's own files and those shared with them, a page at a time
// (the API's keyset cursor, `next_cursor`), loaded when "More" scrolls into view or is pressed.
import { confirmDialog, h, nameElement, replace, showMessage } from "../ui/dom.js";
import { formatDate, formatSize, formatType, quotedName } from "../format.js";

const STATUS = { uploaded: "Uploaded", uploading: "Incomplete", failed: "Failed" };

export class FileSection {
  /**
   * title: the heading. load(cursor) -> {files, next_cursor}. own: the caller owns these
   * files (Share and Delete). actions: {download(file), share(file), remove(file)}.
   */
  constructor({ id, title, emptyText, load, own, actions }) {
    this.load = load;
    this.own = own;
    this.actions = actions;
    this.cursor = null;
    this.loading = false;
    this.done = false;
    this.body = h("tbody");
    this.empty = h("p", { class: "empty", text: emptyText, hidden: true });
    this.message = h("div", { class: "message", hidden: true });
    this.more = h("button", { type: "button", class: "button", text: "More", hidden: true, onclick: () => this.loadMore() });
    const headingId = `${id}-title`;
    this.element = h("section", { class: "files", id, "aria-labelledby": headingId },
      h("h2", { id: headingId, text: title }),
      this.message,
      this.empty,
      h("div", { class: "table-wrap" },
        h("table", { class: "file-table", "aria-labelledby": headingId },
          h("thead", {}, h("tr", {},
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
    const row = h("tr", { dataset: { fileId: file.file_id, status: file.status } },
      h("td", { class: "col-name" },
        nameElement(file.file_name, "file-name"),
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
    return row;
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
      this.empty.hidden = this.body.childElementCount > 0;
      showMessage(this.message, `Deleted ${quotedName(file.file_name)}.`, "info");
    } catch (error) {
      showMessage(this.message, `Could not delete ${quotedName(file.file_name)}: ${error.message}`);
    }
  }
}
