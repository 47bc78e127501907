// Selecting several rows of a list: a checkbox per row labelled "Select <name>", a "Select all"
// checkbox, Shift+click for a range, and the keyboard: Space toggles the focused row's checkbox,
// ArrowUp / ArrowDown move between rows' checkboxes, and Shift with an arrow selects on the way.
import { shownName } from "../format.js";
import { h } from "../ui/dom.js";

export class Selection {
  /** onChange(selection) after every change. */
  constructor({ onChange }) {
    this.onChange = onChange;
    this.items = new Map(); // checkbox -> item
    this.anchor = null; // the checkbox a Shift+click range starts from
    this.all = h("input", { type: "checkbox", class: "select-box", "aria-label": "Select all" });
    this.all.addEventListener("change", () => this.setAll(this.all.checked));
  }

  /** The checkbox of one row, for `item` (whose name labels it). */
  checkbox(item, name) {
    const box = h("input", { type: "checkbox", class: "select-box", "aria-label": `Select ${shownName(name)}` });
    this.items.set(box, item);
    box.addEventListener("click", (event) => {
      if (event.shiftKey && this.anchor && this.anchor.isConnected && this.anchor !== box) {
        this.setRange(this.anchor, box, box.checked);
      }
      this.anchor = box;
      this.changed();
    });
    box.addEventListener("keydown", (event) => {
      if (event.key !== "ArrowDown" && event.key !== "ArrowUp") return;
      event.preventDefault();
      const boxes = this.boxes();
      const target = boxes[boxes.indexOf(box) + (event.key === "ArrowDown" ? 1 : -1)];
      if (!target) return;
      if (event.shiftKey) {
        box.checked = true;
        target.checked = true;
        this.anchor = this.anchor || box;
        this.changed();
      }
      target.focus();
    });
    return box;
  }

  /** The checkboxes of the rows still shown, in their order. */
  boxes() {
    const shown = [...this.items.keys()].filter((box) => box.isConnected);
    for (const box of this.items.keys()) if (!box.isConnected) this.items.delete(box);
    return shown.sort((a, b) => (a.compareDocumentPosition(b) & Node.DOCUMENT_POSITION_FOLLOWING ? -1 : 1));
  }

  setRange(from, to, checked) {
    const boxes = this.boxes();
    const [start, end] = [boxes.indexOf(from), boxes.indexOf(to)].sort((a, b) => a - b);
    if (start < 0) return;
    for (const box of boxes.slice(start, end + 1)) box.checked = checked;
  }

  setAll(checked) {
    for (const box of this.boxes()) box.checked = checked;
    this.changed();
  }

  /** The items selected, in the rows' order. */
  selected() {
    return this.boxes().filter((box) => box.checked).map((box) => this.items.get(box));
  }

  changed() {
    const boxes = this.boxes();
    const count = boxes.filter((box) => box.checked).length;
    this.all.checked = count > 0 && count === boxes.length;
    this.all.indeterminate = count > 0 && count < boxes.length;
    this.onChange(this);
  }
}
