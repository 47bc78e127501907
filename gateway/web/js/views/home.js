// The signed-in page: the upload picker, the uploads panel, your files and those shared with you.
import { h } from "../ui/dom.js";
import { FileSection } from "./files.js";
import { storageView } from "./storage.js";

/**
 * The files view. api: the Api; uploads: the uploads panel (state.uploads); actions: {download(file,
 * button), share(file), open(file, files)}; onChanged(): files were deleted (the storage used changed).
 * Returns {element, reloadOwn()}.
 */
export function filesView({ api, uploads, actions, onChanged }) {
  const rowActions = { ...actions, remove: (file) => api.deleteFile(file.file_id), changed: onChanged };
  const own = new FileSection({
    id: "my-files", title: "My files", own: true, actions: rowActions,
    emptyText: "No files yet. Upload some with the button above, or drop them on this page.",
    load: (cursor) => api.listFiles(cursor),
  });
  const shared = new FileSection({
    id: "shared-files", title: "Shared with me", own: false, actions: rowActions,
    emptyText: "Nobody has shared a file with you yet.",
    load: (cursor) => api.listShared(cursor),
  });

  const input = h("input", { type: "file", id: "upload-input", multiple: true, class: "file-input" });
  input.addEventListener("change", () => {
    const files = [...input.files];
    // Cleared so that picking the same file again (to resume it) fires "change" again.
    input.value = "";
    if (files.length) uploads.add(files);
  });
  const element = h("div", { class: "view" },
    h("section", { class: "upload-zone", "aria-labelledby": "upload-title" },
      h("div", {},
        h("h1", { id: "upload-title", text: "Your files" }),
        storageView(),
        h("p", { class: "hint", text: "Pick files or drop them anywhere on this page. Interrupted uploads resume: pick the same file again." })),
      h("div", { class: "upload-picker" }, input, h("label", { for: "upload-input", class: "button primary", text: "Upload files" }))),
    uploads.element,
    own.element,
    shared.element,
  );
  own.reload();
  shared.reload();
  return { element, reloadOwn: () => own.reload() };
}
