// Signing up, logging in, and the account dialog (change password).
import { field, h, openDialog, showMessage } from "../ui/dom.js";

/**
 * The signed-out page: one form, two buttons. "Log in" uses Username and Password;
 * "Sign up" also needs Email, creates the account and logs in.
 * signup: who may sign up (GET /config's `signup`): "open"; "invite", where the form also asks for
 * an Invitation code; "closed", where it only logs in and says how accounts are made instead.
 * onSignedIn(tokenAnswer, username) is called after a successful log-in.
 */
export function signedOutView({ api, onSignedIn, notice, signup = "open" }) {
  const closed = signup === "closed";
  const username = field("Username", { type: "text", name: "username", autocomplete: "username", autocapitalize: "none", spellcheck: "false", required: true });
  const email = field("Email", { type: "email", name: "email", autocomplete: "email" }, "Only to create an account.");
  const invitation = signup === "invite"
    ? field("Invitation code", { type: "text", name: "invitation", autocomplete: "off", autocapitalize: "none", spellcheck: "false" },
      "Only to create an account: new accounts on this server need one, from whoever runs it.")
    : null;
  const password = field("Password", { type: "password", name: "password", autocomplete: "current-password", required: true }, closed ? null : "At least 8 characters.");
  const message = h("div", { class: "message", hidden: true });
  const logIn = h("button", { type: "submit", class: "button primary", text: "Log in", value: "login" });
  const signUp = closed ? null : h("button", { type: "submit", class: "button", text: "Sign up", value: "signup" });
  const form = h("form", { class: "card auth", novalidate: true },
    h("h1", { text: "Welcome" }),
    h("p", { class: "lede", text: closed ? "Log in to your files." : "Log in to your files, or create an account." }),
    message,
    username.wrapper, closed ? null : email.wrapper, invitation && invitation.wrapper, password.wrapper,
    h("div", { class: "form-actions" }, logIn, signUp),
    closed ? h("p", { class: "hint", text: "New accounts cannot be made here: whoever runs this server creates them." }) : null,
  );
  if (notice) showMessage(message, notice.text, notice.kind);

  const setBusy = (busy) => {
    logIn.disabled = busy;
    if (signUp) signUp.disabled = busy;
  };

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const creating = signUp !== null && event.submitter === signUp;
    const name = username.input.value.trim();
    const secret = password.input.value;
    const code = invitation ? invitation.input.value.trim() : "";
    const missing = !name ? username : !secret ? password
      : creating && !email.input.value.trim() ? email : creating && invitation && !code ? invitation : null;
    if (missing) {
      showMessage(message, `Fill in ${missing.wrapper.querySelector("label").textContent}.`);
      missing.input.focus();
      return;
    }
    setBusy(true);
    try {
      if (creating) await api.signUp(name, email.input.value.trim(), secret, code || null);
      const token = await api.logIn(name, secret);
      onSignedIn(token, name);
    } catch (error) {
      showMessage(message, error.message);
      (error.status === 409 ? username : error.status === 403 && invitation ? invitation : password).input.focus();
    } finally {
      setBusy(false);
    }
  });
  setTimeout(() => username.input.focus(), 0);
  return form;
}

/** The account dialog: who you are, and a password change (contract v1.1). */
export function openAccountDialog({ api, username, onPasswordChanged }) {
  const current = field("Current password", { type: "password", autocomplete: "current-password", required: true });
  const next = field("New password", { type: "password", autocomplete: "new-password", required: true }, "At least 8 characters.");
  const message = h("div", { class: "message", hidden: true });
  const submit = h("button", { type: "submit", class: "button primary", text: "Change password" });
  const form = h("form", { class: "stack", novalidate: true },
    h("h3", { text: "Change password" }),
    h("p", { class: "hint", text: "Every other session of yours is logged out." }),
    message, current.wrapper, next.wrapper, h("div", { class: "form-actions" }, submit));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    if (!current.input.value || !next.input.value) {
      showMessage(message, "Fill in both passwords.");
      return;
    }
    submit.disabled = true;
    try {
      await api.changePassword(current.input.value, next.input.value);
      // Every token issued before, ours too, stops working: log in again with the new one.
      const token = await api.logIn(username, next.input.value);
      onPasswordChanged(token);
      current.input.value = next.input.value = "";
      showMessage(message, "Password changed.", "info");
    } catch (error) {
      if (error.unsupported) showMessage(message, "Changing the password is not available on this server yet.");
      else if (error.status === 403) showMessage(message, "The current password is wrong.");
      else showMessage(message, error.message);
    } finally {
      submit.disabled = false;
    }
  });
  openDialog("Account", h("div", { class: "stack" },
    h("p", {}, "Logged in as ", h("strong", { text: username }), "."),
    form));
  current.input.focus();
}
