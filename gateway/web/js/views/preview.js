// The preview dialog: a file opened in the page, named by the file's name, with Previous and Next.
//
// Nothing from a file ever runs in the app's origin. The bytes come from the CDN tier (another
// origin) through the file's signed download URL, which always answers `Content-Disposition:
// attachment`, `X-Content-Type-Options: nosniff` and `Content-Security-Policy: default-src 'none';
// sandbox`, so opening it can only save it. The page then shows them only in ways that cannot run
// script: an `img` (an SVG shown as an image runs none of its script), the browser's own `audio` and
// `video` players, or text (the first 1 MiB, fetched and put in the page as text, never as HTML).
// A PDF shows its first page as an image, made by the gateway's thumbnail worker (the file object's
// `page_url`, gateway/core/thumbnails.py): no PDF viewer opens anyone's file in this origin.
// Anything else (HTML, archives...) gets no preview, only Download.
import { formatSize, shownName } from "../format.js";
import { h, nameElement, openDialog, replace } from "../ui/dom.js";

export const TEXT_PREVIEW_BYTES = 1024 * 1024;

const IMAGE_TYPES = new Set(["image/png", "image/jpeg", "image/gif", "image/webp", "image/avif", "image/bmp",
  "image/svg+xml", "image/x-icon", "image/vnd.microsoft.icon"]);
const IMAGE_EXTENSIONS = new Set(["png", "jpg", "jpeg", "gif", "webp", "avif", "bmp", "svg", "ico"]);
const TEXT_TYPES = new Set(["application/json", "application/xml", "application/javascript", "application/x-sh",
  "application/x-yaml", "application/yaml", "application/toml", "application/sql", "application/x-python"]);
const TEXT_EXTENSIONS = new Set(["txt", "md", "markdown", "csv", "tsv", "log", "json", "xml", "yml", "yaml", "toml",
  "ini", "cfg", "conf", "py", "js", "mjs", "ts", "go", "rs", "c", "h", "cc", "cpp", "hpp", "java", "kt", "rb", "php",
  "sh", "bash", "sql", "css", "html", "htm", "tex", "rst", "diff", "patch"]);
const AUDIO_EXTENSIONS = new Set(["mp3", "ogg", "oga", "opus", "wav", "flac", "m4a", "aac"]);
const VIDEO_EXTENSIONS = new Set(["mp4", "m4v", "webm", "ogv", "mov"]);

function extensionOf(name) {
  const match = /\.([A-Za-z0-9]+)$/.exec(String(name || ""));
  return match ? match[1].toLowerCase() : "";
}

/** How a file is previewed: "image", "pdf", "audio", "video", "text" or null (no preview; download it). */
export function previewKind(file) {
  const type = String(file.file_type || "").toLowerCase().split(";")[0].trim();
  const extension = extensionOf(file.file_name);
  if (IMAGE_TYPES.has(type) || IMAGE_EXTENSIONS.has(extension)) return "image";
  if (type === "application/pdf" || extension === "pdf") return "pdf";
  if (type.startsWith("audio/") || AUDIO_EXTENSIONS.has(extension)) return "audio";
  if (type.startsWith("video/") || VIDEO_EXTENSIONS.has(extension)) return "video";
  if (type.startsWith("text/") || TEXT_TYPES.has(type) || TEXT_EXTENSIONS.has(extension)) return "text";
  return null;
}

/**
 * Open the preview of files[index]. api: the Api (a fresh signed URL per file); files: the files one
 * can move between (Previous, Next, or the arrow keys); download(file, button): the row's download.
 */
export function openPreview({ api, files, index, download }) {
  let at = index;
  let generation = 0;
  const stage = h("div", { class: "preview-stage" });
  const position = h("p", { class: "preview-position" });
  const previous = h("button", { type: "button", class: "button", text: "Previous", onclick: () => move(-1) });
  const next = h("button", { type: "button", class: "button", text: "Next", onclick: () => move(1) });
  const downloadButton = h("button", { type: "button", class: "button primary", text: "Download",
    onclick: () => download(files[at], downloadButton) });
  const dialog = openDialog(shownName(files[at].file_name), h("div", { class: "preview" },
    stage,
    h("div", { class: "dialog-actions preview-actions" }, previous, position, next, downloadButton),
  ), { onClose: () => { generation += 1; } });
  dialog.classList.add("preview-dialog");
  const title = dialog.querySelector("h2");

  const move = (step) => {
    const target = at + step;
    if (target < 0 || target >= files.length) return;
    at = target;
    show();
  };
  dialog.addEventListener("keydown", (event) => {
    if (event.target instanceof HTMLElement && event.target.closest("audio, video")) return;
    if (event.key === "ArrowLeft") move(-1);
    else if (event.key === "ArrowRight") move(1);
  });

  const show = async () => {
    const mine = ++generation;
    const file = files[at];
    replace(title, nameElement(file.file_name, "file-name"));
    replace(position, `${at + 1} of ${files.length}`);
    const focused = document.activeElement;
    previous.disabled = at === 0;
    next.disabled = at === files.length - 1;
    // A button disabled under the keyboard's focus would drop it out of the dialog: hand it on.
    if (focused === previous && previous.disabled) (next.disabled ? downloadButton : next).focus();
    if (focused === next && next.disabled) (previous.disabled ? downloadButton : previous).focus();
    replace(stage, h("p", { class: "hint", text: "Loading…" }));
    let body;
    try {
      body = await previewOf(api, file);
    } catch (error) {
      body = h("p", { class: "message error", role: "alert", text: `Could not show this file: ${error.message}` });
    }
    if (mine === generation) replace(stage, body);
  };
  show();
  return dialog;
}

async function previewOf(api, file) {
  const kind = previewKind(file);
  if (!kind) {
    return h("p", { class: "hint", text: "There is no preview for this kind of file. Download it to open it." });
  }
  const fresh = await api.file(file.file_id);
  const url = fresh.download_url;
  if (!url) throw new Error("the file is not completely uploaded yet.");
  const name = shownName(file.file_name);
  if (kind === "pdf") return pdfPreview(fresh, name);
  if (kind === "image") return h("img", { class: "preview-image", src: url, alt: name });
  if (kind === "audio") return h("audio", { class: "preview-media", src: url, controls: true, preload: "metadata" });
  if (kind === "video") return h("video", { class: "preview-media", src: url, controls: true, preload: "metadata" });
  return textPreview(url, fresh.file_size);
}

/** A PDF's first page, as an image; until the gateway has made it (or when it cannot), words that say so. */
function pdfPreview(file, name) {
  if (!file.page_url) {
    return h("p", { class: "hint", text: "There is no preview of this PDF yet. Download it to open it." });
  }
  const note = h("p", { class: "hint", text: "The first page. Download the PDF to read all of it." });
  const page = h("img", { class: "preview-image preview-page", src: file.page_url, alt: `Page 1 of ${name}` });
  page.addEventListener("error", () => replace(note, "The first page could not be shown. Download the PDF to open it."),
    { once: true });
  return h("div", { class: "preview-pdf" }, page, note);
}

/** The first TEXT_PREVIEW_BYTES of a text file, as text: a <pre> whose content is set as text only. */
async function textPreview(url, size) {
  if (!size) return h("p", { class: "hint", text: "This file is empty." });
  let response;
  try {
    response = await fetch(url, {
      headers: { Range: `bytes=0-${TEXT_PREVIEW_BYTES - 1}` },
      credentials: "omit",
      cache: "no-store",
    });
  } catch {
    throw new Error("the download server did not answer.");
  }
  if (!response.ok) throw new Error(`the download server answered HTTP ${response.status}.`);
  const bytes = new Uint8Array(await response.arrayBuffer()).slice(0, TEXT_PREVIEW_BYTES);
  const text = new TextDecoder("utf-8", { fatal: false }).decode(bytes);
  const cut = size > TEXT_PREVIEW_BYTES;
  return h("div", { class: "preview-text-wrap" },
    cut ? h("p", { class: "hint", text: `The first ${formatSize(TEXT_PREVIEW_BYTES)} of ${formatSize(size)}.` }) : null,
    h("pre", { class: "preview-text", tabindex: "0", text }));
}
