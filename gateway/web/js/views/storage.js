// Storage used: the bytes the user holds against their quota (GET /users/me: used_bytes, quota_bytes
// with null for no limit), read from state.account, which main.js refreshes after every change.
import { formatSize } from "../format.js";
import { state, subscribe } from "../state.js";
import { h, replace } from "../ui/dom.js";

/** Nearly full (the bar turns to a warning) from this share of the quota on. */
const NEARLY_FULL = 0.9;

export function storageView() {
  const text = h("span", { class: "storage-text" });
  // The text says it all to a screen reader; the bar is for the eye.
  const bar = h("meter", { class: "storage-bar", min: "0", max: "1", "aria-hidden": "true" });
  const element = h("div", { class: "storage", role: "group", "aria-label": "Storage used" }, text, bar);
  const show = () => {
    const account = state.account;
    element.hidden = !account;
    if (!account) return;
    const used = account.used_bytes || 0;
    const quota = account.quota_bytes;
    if (quota) {
      replace(text, `${formatSize(used)} of ${formatSize(quota)} used`);
      bar.value = Math.min(1, used / quota);
      bar.high = NEARLY_FULL;
      bar.hidden = false;
    } else {
      replace(text, `${formatSize(used)} used (no limit)`);
      bar.hidden = true;
    }
  };
  let mounted = false;
  const unsubscribe = subscribe((_, changed) => {
    if (element.isConnected) mounted = true;
    else if (mounted) return unsubscribe(); // its view was replaced
    if (changed.includes("account")) show();
  });
  show();
  return element;
}
