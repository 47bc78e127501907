// Thumbnails (issue 25) and the grid view. The gateway makes a thumbnail of an uploaded image or
// PDF in the background (gateway/core/thumbnails.py) and then gives its file object a
// `thumbnail_url`: a signed URL on the CDN tier, like a download's. A row shows it as an img
// (contract v1.2, "everyday use": "an img inside the row, once the thumbnail is made"); a file
// uploaded a moment ago asks again for its file object a few times, less and less often, until
// its thumbnail is there. The grid view shows the same rows as tiles, the thumbnail large.
import { h, replace } from "../ui/dom.js";

// The gateway's rule (gateway/core/thumbnails.py's wants_thumbnail): by type, or by name.
const TYPES = new Set(["image/jpeg", "image/png", "image/webp", "image/gif", "image/heic", "image/heif", "application/pdf"]);
const EXTENSION = /\.(jpe?g|png|webp|gif|heic|heif|pdf)$/i;
// How long after its upload a file without a thumbnail is asked about again, and when.
const WAITING_FOR = 5 * 60 * 1000;
const ASK_AFTER = [500, 1000, 2000, 4000, 8000, 15000, 30000, 60000];
const VIEW_KEY = "files-view";

export function wantsThumbnail(file) {
  const type = (file.file_type || "").split(";")[0].trim().toLowerCase();
  return TYPES.has(type) || EXTENSION.test(file.file_name || "");
}

/**
 * The thumbnail place of a file's row: the image once made, else an empty box that fills itself
 * in when the file was uploaded recently. fetchFile(fileId) -> the file object again.
 */
export function thumbnailSlot(file, fetchFile) {
  const slot = h("span", { class: "thumb" });
  if (file.status !== "uploaded" || !wantsThumbnail(file)) {
    // The grid shows the name's extension in the box (styled text, aria-hidden: the name says it).
    const extension = /\.([A-Za-z0-9]{1,5})$/.exec(file.file_name || "");
    slot.classList.add("thumb-none");
    slot.setAttribute("aria-hidden", "true");
    if (extension) slot.dataset.ext = extension[1].toUpperCase();
    return slot;
  }
  if (file.thumbnail_url) {
    show(slot, file);
  } else if (fetchFile && recentlyUploaded(file)) {
    waitForThumbnail(slot, file, fetchFile);
  }
  return slot;
}

function show(slot, file) {
  const img = h("img", {
    class: "thumb-image", src: file.thumbnail_url, alt: `Thumbnail of ${file.file_name}`,
    loading: "lazy", decoding: "async", draggable: "false",
  });
  // An expired URL (a page left open) or a thumbnail gone with its file: the box stays empty.
  img.addEventListener("error", () => img.remove(), { once: true });
  replace(slot, img);
}

function recentlyUploaded(file) {
  const at = Date.parse(file.completed_at || file.modified_at || file.created_at || "");
  return Number.isFinite(at) && Date.now() - at < WAITING_FOR;
}

async function waitForThumbnail(slot, file, fetchFile) {
  for (const delay of ASK_AFTER) {
    await new Promise((resolve) => setTimeout(resolve, delay));
    if (!slot.isConnected) return; // the row is gone (listed again, deleted)
    try {
      const fresh = await fetchFile(file.file_id);
      if (fresh.thumbnail_url) {
        show(slot, fresh);
        return;
      }
    } catch {
      return; // deleted, unshared, or signed out: nothing to show
    }
  }
}

/**
 * The "List view" / "Grid view" switch: two toggle buttons; the choice is the page's (the root
 * element's data-view, which every files section's style follows) and is remembered in this
 * browser for every folder.
 */
export function viewSwitch() {
  const buttons = {
    list: h("button", { type: "button", class: "button small", text: "List view" }),
    grid: h("button", { type: "button", class: "button small", text: "Grid view" }),
  };
  const choose = (view, remember) => {
    document.documentElement.dataset.view = view;
    for (const [name, button] of Object.entries(buttons)) button.setAttribute("aria-pressed", String(name === view));
    if (remember) {
      try { localStorage.setItem(VIEW_KEY, view); } catch { /* private mode: this page only */ }
    }
  };
  buttons.list.addEventListener("click", () => choose("list", true));
  buttons.grid.addEventListener("click", () => choose("grid", true));
  let saved = "list";
  try { saved = localStorage.getItem(VIEW_KEY) === "grid" ? "grid" : "list"; } catch { /* as above */ }
  choose(saved, false);
  return h("div", { class: "view-switch", role: "group", "aria-label": "View" }, buttons.list, buttons.grid);
}
