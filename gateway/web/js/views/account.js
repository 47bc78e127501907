// Signing up, logging in, and the account dialog (change password).
import { field, h, openDialog, showMessage } from "../ui/dom.js";

/**
 * The signed-out page: one form, two buttons. "Log in" uses Username and Password;
 * "Sign up" also needs Email, creates the account and logs in.
 * onSignedIn(tokenAnswer, username) is called after a successful log-in.
 */
export function signedOutView({ api, onSignedIn, notice }) {
  const username = field("Username", { type: "text", name: "username", autocomplete: "username", autocapitalize: "none", spellcheck: "false", required: true });
  const email = field("Email", { type: "email", name: "email", autocomplete: "email" }, "Only to create an account.");
  const password = field("Password", { type: "password", name: "password", autocomplete: "current-password", required: true }, "At least 8 characters.");
  const message = h("div", { class: "message", hidden: true });
  const logIn = h("button", { type: "submit", class: "button primary", text: "Log in", value: "login" });
  const signUp = h("button", { type: "submit", class: "button", text: "Sign up", value: "signup" });
  const form = h("form", { class: "card auth", novalidate: true },
    h("h1", { text: "Welcome" }),
    h("p", { class: "lede", text: "Log in to your files, or create an account." }),
    message,
    username.wrapper, email.wrapper, password.wrapper,
    h("div", { class: "form-actions" }, logIn, signUp),
  );
  if (notice) showMessage(message, notice.text, notice.kind);

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const creating = event.submitter === signUp;
    const name = username.input.value.trim();
    const secret = password.input.value;
    const missing = !name ? username : !secret ? password : creating && !email.input.value.trim() ? email : null;
    if (missing) {
      showMessage(message, `Fill in ${missing.wrapper.querySelector("label").textContent}.`);
      missing.input.focus();
      return;
    }
    logIn.disabled = signUp.disabled = true;
    try {
      if (creating) await api.signUp(name, email.input.value.trim(), secret);
      const token = await api.logIn(name, secret);
      onSignedIn(token, name);
    } catch (error) {
      showMessage(message, error.message);
      (error.status === 409 ? username : password).input.focus();
    } finally {
      logIn.disabled = signUp.disabled = false;
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
