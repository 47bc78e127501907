// Building the page: every string goes in as text (textContent, text nodes,
// attributes), never as HTML. There is no innerHTML anywhere in this app, so a
// file named "<img src=x onerror=alert(1)>.txt" is shown as those characters.
// Names people chose are shown with nameElement: isolated, and in their real order.
import { MARK, hiddenNote, nameParts } from "../format.js";

/**
 * Create an element. props: `class`, `text`, `on<event>` listeners, `dataset`,
 * DOM properties listed in PROPERTIES, anything else as an attribute
 * (null/false: left out, true: present). Children: nodes or strings (as text).
 */
export function h(tag, props = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (value == null || value === false) continue;
    if (key === "class") el.className = value;
    else if (key === "text") el.textContent = value;
    else if (key === "dataset") Object.assign(el.dataset, value);
    else if (key.startsWith("on") && typeof value === "function") el.addEventListener(key.slice(2), value);
    else if (PROPERTIES.has(key)) el[key] = value;
    else el.setAttribute(key, value === true ? "" : String(value));
  }
  append(el, children);
  return el;
}

const PROPERTIES = new Set(["value", "checked", "disabled", "multiple", "hidden"]);

/**
 * A name someone chose (a file's), as an element: a <bdi>, so that a right-to-left name cannot
 * reorder what is around it; each character that would change how it is shown (a bidirectional
 * control such as U+202E, which shows "photo\u202Egnp.exe" as "photoexe.png") shown as a marked
 * MARK with its code point as tooltip, and the element's tooltip says why.
 */
export function nameElement(name, className) {
  return h("bdi", { class: className, title: hiddenNote(name) || null },
    nameParts(name).map((part) => (part.hidden ? h("span", { class: "hidden-char", title: part.hidden, text: MARK }) : part.text)));
}

export function append(parent, children) {
  for (const child of children.flat(Infinity)) {
    if (child == null || child === false) continue;
    parent.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return parent;
}

/** Replace every child of `parent`. */
export function replace(parent, ...children) {
  parent.replaceChildren();
  return append(parent, children);
}

let fieldIds = 0;

/** A labelled input: the label's text is the field's accessible name. */
export function field(label, inputProps = {}, hint = null) {
  const id = inputProps.id || `field-${++fieldIds}`;
  const hintId = hint ? `${id}-hint` : null;
  const input = h("input", { ...inputProps, id, "aria-describedby": hintId });
  const wrapper = h("div", { class: "field" },
    h("label", { for: id, text: label }),
    input,
    hint ? h("p", { class: "hint", id: hintId, text: hint }) : null,
  );
  return { wrapper, input };
}

/** A modal dialog: Esc and the close button close it; focus goes back to the opener. */
export function openDialog(title, body, { onClose } = {}) {
  const opener = document.activeElement;
  const titleId = `dialog-title-${++fieldIds}`;
  const dialog = h("dialog", { class: "dialog", "aria-labelledby": titleId },
    h("div", { class: "dialog-head" },
      h("h2", { id: titleId, text: title }),
      h("button", { type: "button", class: "icon-button", "aria-label": "Close", text: "×", onclick: () => dialog.close() }),
    ),
    body,
  );
  dialog.addEventListener("close", () => {
    dialog.remove();
    if (onClose) onClose();
    if (opener && opener.isConnected) opener.focus();
  });
  document.body.append(dialog);
  dialog.showModal();
  return dialog;
}

/** Ask before doing something that cannot be undone; resolves true when confirmed. */
export function confirmDialog(title, message, confirmLabel) {
  return new Promise((resolve) => {
    let confirmed = false;
    const confirm = h("button", { type: "button", class: "button danger", text: confirmLabel });
    const cancel = h("button", { type: "button", class: "button", text: "Cancel" });
    const dialog = openDialog(title, h("div", {},
      h("p", { text: message }),
      h("div", { class: "dialog-actions" }, cancel, confirm),
    ), { onClose: () => resolve(confirmed) });
    confirm.addEventListener("click", () => { confirmed = true; dialog.close(); });
    cancel.addEventListener("click", () => dialog.close());
    cancel.focus();
  });
}

/** A message region: role alert for problems (read out at once), status for news. */
export function showMessage(region, text, kind = "error") {
  if (!text) {
    replace(region);
    region.hidden = true;
    return;
  }
  region.hidden = false;
  region.className = `message ${kind}`;
  region.setAttribute("role", kind === "error" ? "alert" : "status");
  replace(region, text);
}
