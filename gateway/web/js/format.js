// Numbers and dates as a person reads them.

const UNITS = ["B", "KB", "MB", "GB", "TB"];

/** 1536 -> "1.5 KB" (powers of 1024, the units people see in file managers). */
export function formatSize(bytes) {
  if (!Number.isFinite(bytes) || bytes < 0) return "";
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < UNITS.length - 1) {
    value /= 1024;
    unit += 1;
  }
  const digits = unit === 0 || value >= 100 ? 0 : 1;
  return `${value.toFixed(digits)} ${UNITS[unit]}`;
}

export function formatSpeed(bytesPerSecond) {
  return bytesPerSecond > 0 ? `${formatSize(bytesPerSecond)}/s` : "";
}

/** Seconds -> "2 h 5 min", "3 min 10 s", "12 s". */
export function formatDuration(seconds) {
  if (!Number.isFinite(seconds) || seconds < 0) return "";
  const s = Math.round(seconds);
  if (s < 60) return `${s} s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m} min ${s % 60} s`;
  return `${Math.floor(m / 60)} h ${m % 60} min`;
}

export function formatDate(iso) {
  const date = new Date(iso);
  if (Number.isNaN(date.getTime())) return "";
  return date.toLocaleString(undefined, { dateStyle: "medium", timeStyle: "short" });
}

/** "application/vnd.openxmlformats-officedocument..." is too long for a column: the subtype's last word. */
export function formatType(mime) {
  if (!mime || mime === "application/octet-stream") return "File";
  const [kind, sub = ""] = mime.split("/");
  const word = sub.split(/[.+-]/).filter(Boolean).pop() || kind;
  return ["image", "video", "audio", "text"].includes(kind) ? `${capitalize(kind)} (${word})` : word.toUpperCase();
}

function capitalize(text) {
  return text.charAt(0).toUpperCase() + text.slice(1);
}

// Characters that do not show but change how a name is shown: control characters, and Unicode's
// bidirectional controls (ALM, LRM, RLM, U+202A-U+202E, U+2066-U+2069). U+202E RIGHT-TO-LEFT
// OVERRIDE shows "photo\u202Egnp.exe" as "photoexe.png"; a name here is shown as "photo�gnp.exe".
const HIDDEN = /[\u0000-\u001f\u007f-\u009f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]/gu;
export const MARK = "\uFFFD";

/**
 * A name, cut where it has hidden characters: [{text}, {hidden: "U+202E"}, {text}, ...] (no empty texts),
 * so that each can be shown as a marked MARK.
 */
export function nameParts(name) {
  const text = String(name ?? "");
  const parts = [];
  let last = 0;
  for (const found of text.matchAll(HIDDEN)) {
    if (found.index > last) parts.push({ text: text.slice(last, found.index) });
    parts.push({ hidden: `U+${found[0].codePointAt(0).toString(16).toUpperCase().padStart(4, "0")}` });
    last = found.index + found[0].length;
  }
  if (last < text.length) parts.push({ text: text.slice(last) });
  return parts;
}

/** A name as plain text shows it (labels): each hidden character as MARK. */
export function shownName(name) {
  return String(name ?? "").replace(HIDDEN, MARK);
}

/** A name inside a sentence: shown as shownName does, isolated (FSI ... PDI) so that a right-to-left name
 *  cannot reorder the words around it. */
export function quotedName(name) {
  return `“\u2068${shownName(name)}\u2069”`;
}

/** What to tell a person about a name with hidden characters; "" when it has none. */
export function hiddenNote(name) {
  const count = nameParts(name).filter((part) => part.hidden).length;
  if (!count) return "";
  const characters = count === 1 ? "an invisible character" : `${count} invisible characters`;
  return `This name contains ${characters} that can change how a name is displayed, shown here as ${MARK}. `
    + "Check that the name is what you expect before you open the file.";
}
