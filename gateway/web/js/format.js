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
