// The share dialog: share with users by username (and stop sharing), and shared links
// (contract v1.1 "Shared links": create with an optional expiry and password, copy, revoke).
import { field, h, nameElement, openDialog, replace, showMessage } from "../ui/dom.js";
import { formatDate } from "../format.js";

const EXPIRIES = [
  ["", "Never"],
  [String(3600), "In 1 hour"],
  [String(24 * 3600), "In 1 day"],
  [String(7 * 24 * 3600), "In 7 days"],
  [String(30 * 24 * 3600), "In 30 days"],
];

export function openShareDialog(api, file) {
  const people = peopleSection(api, file);
  const links = linksSection(api, file);
  openDialog("Share", h("div", { class: "share-body" },
    h("p", { class: "dialog-subtitle" }, nameElement(file.file_name, "file-name")),
    people.element,
    links.element,
  ));
  people.focus();
  people.load();
  links.load();
}

function peopleSection(api, file) {
  const { wrapper, input } = field("Share with", {
    type: "text", name: "username", autocomplete: "off", autocapitalize: "none", spellcheck: "false", required: true,
  }, "A username; several separated by commas or spaces.");
  const message = h("div", { class: "message", hidden: true });
  const list = h("ul", { class: "people", "aria-label": "Who has access" });
  const known = new Set(file.shared_with || []);

  // Each person with a button "Remove <username>" (the name after the visible word, for screen readers).
  const render = () => {
    replace(list, [...known].sort((a, b) => a.localeCompare(b)).map((username) => h("li", {},
      h("span", { class: "person", text: username }),
      h("button", { type: "button", class: "button small", onclick: () => remove(username) },
        "Remove", h("span", { class: "visually-hidden", text: ` ${username}` })),
    )));
    list.hidden = known.size === 0;
  };

  // Who has access now, as the server says (another tab or dbx may have changed it).
  const load = async () => {
    try {
      const answer = await api.shares(file.file_id);
      known.clear();
      for (const username of answer.shared_with || []) known.add(username);
      render();
    } catch (error) {
      showMessage(message, error.unsupported ? "" : `Could not load who has access: ${error.message}`);
    }
  };

  const remove = async (username) => {
    try {
      await api.unshare(file.file_id, username);
      known.delete(username);
      render();
      showMessage(message, `${username} no longer has access.`, "info");
    } catch (error) {
      showMessage(message, error.message);
    }
  };

  const form = h("form", { class: "inline-form", novalidate: true }, wrapper,
    h("button", { type: "submit", class: "button primary", text: "Share" }));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const names = input.value.split(/[\s,]+/).filter(Boolean);
    if (!names.length) {
      showMessage(message, "Type the username of the person to share with.");
      input.focus();
      return;
    }
    try {
      const answer = await api.share(file.file_id, names);
      for (const username of answer.shared_with || names) known.add(username);
      input.value = "";
      render();
      showMessage(message, `Shared with ${names.join(", ")}.`, "info");
    } catch (error) {
      const unknown = error.details && Array.isArray(error.details.users) ? error.details.users : null;
      showMessage(message, unknown ? `There is no user named ${unknown.join(", ")}. Check the spelling.` : error.message);
    }
  });

  render();
  const element = h("section", { class: "share-section", "aria-labelledby": "people-title" },
    h("h3", { id: "people-title", text: "People" }), form, message,
    h("p", { class: "hint", text: "They see the file under “Shared with me” and can download it. Remove anyone at any time." }),
    list);
  return { element, load, focus: () => input.focus() };
}

function linksSection(api, file) {
  const message = h("div", { class: "message", hidden: true });
  const list = h("ul", { class: "links" });
  const expiry = h("select", { id: "link-expiry", name: "expires_in" },
    EXPIRIES.map(([value, label]) => h("option", { value, text: label })));
  const password = field("Password (optional)", { type: "password", name: "link-password", autocomplete: "new-password" });
  const created = h("div", { class: "created-link", hidden: true });
  const create = h("button", { type: "submit", class: "button primary", text: "Create link" });
  const form = h("form", { class: "link-form", novalidate: true },
    h("div", { class: "field" }, h("label", { for: "link-expiry", text: "Expires" }), expiry),
    password.wrapper,
    create);
  // Not labelled by its heading: a control labelled "...link..." would share the name of the `Link` field.
  const element = h("section", { class: "share-section" },
    h("h3", { text: "Links" }),
    h("p", { class: "hint", text: "Anyone with a link can download the file without an account, until it expires or you revoke it." }),
    form, message, created, list);

  const renderLinks = (links) => {
    replace(list, links.map((link) => linkItem(api, link, message, () => load())));
  };

  const load = async () => {
    try {
      const answer = await api.links(file.file_id);
      renderLinks(answer.links || []);
    } catch (error) {
      if (error.unsupported) {
        form.hidden = true;
        showMessage(message, "Shared links are not available on this server yet.", "info");
      } else {
        showMessage(message, `Could not load the links: ${error.message}`);
      }
    }
  };

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const options = {};
    if (expiry.value) options.expires_in = Number(expiry.value);
    if (password.input.value) options.password = password.input.value;
    create.disabled = true;
    try {
      const link = await api.createLink(file.file_id, options);
      password.input.value = "";
      showCreated(created, link.url);
      showMessage(message, "");
      await load();
    } catch (error) {
      const text = error.status === 409 ? "Links can be made once the file is completely uploaded." : error.message;
      showMessage(message, error.unsupported ? "Shared links are not available on this server yet." : text);
    } finally {
      create.disabled = false;
    }
  });
  return { element, load };
}

function showCreated(container, url) {
  const { wrapper, input } = field("Link", { type: "text", readonly: true, value: url, class: "link-url" });
  const copy = h("button", { type: "button", class: "button", text: "Copy", onclick: () => copyText(input, copy) });
  replace(container, h("div", { class: "inline-form" }, wrapper, copy));
  container.hidden = false;
  input.focus();
  input.select();
}

async function copyText(input, button) {
  try {
    await navigator.clipboard.writeText(input.value);
    button.textContent = "Copied";
  } catch {
    // No clipboard API (plain http) or no permission: leave it selected for Ctrl+C.
    input.focus();
    input.select();
    button.textContent = "Press Ctrl+C";
  }
  setTimeout(() => { button.textContent = "Copy"; }, 2000);
}

function linkItem(api, link, message, reload) {
  const urlId = `link-${link.link_id}`;
  const expired = link.expires_at && Date.parse(link.expires_at) <= Date.now();
  const facts = [
    expired ? `expired ${formatDate(link.expires_at)}` : link.expires_at ? `expires ${formatDate(link.expires_at)}` : "never expires",
    link.has_password ? "password" : "no password",
    `${link.download_count || 0} download${link.download_count === 1 ? "" : "s"}`,
  ];
  const revoke = h("button", {
    type: "button", class: "button small danger", text: "Revoke", "aria-describedby": urlId,
    onclick: async () => {
      try {
        await api.revokeLink(link.link_id);
        showMessage(message, "The link no longer works.", "info");
        await reload();
      } catch (error) {
        showMessage(message, error.message);
      }
    },
  });
  const copy = h("button", {
    type: "button", class: "button small", text: "Copy", "aria-describedby": urlId,
    onclick: async () => {
      try {
        await navigator.clipboard.writeText(link.url);
        copy.textContent = "Copied";
      } catch {
        copy.textContent = "Select and copy it";
      }
      setTimeout(() => { copy.textContent = "Copy"; }, 2000);
    },
  });
  // An expired link no longer works: no Copy, and Revoke (to tidy up) stays.
  return h("li", { class: expired ? "expired" : null },
    h("span", { class: "link-text", id: urlId, text: link.url }),
    expired ? h("span", { class: "badge expired", text: "Expired" }) : null,
    h("span", { class: "link-facts", text: facts.join(" · ") }),
    h("span", { class: "row-actions" }, expired ? null : copy, revoke));
}
