// The app's state, in one place. Views read it from here (never keep copies of their own) and
// subscribe to hear of changes; main.js and the router are what change it.
//
//   config   GET /config's answer (chunk size, limits), once the server has answered
//   session  {token, username, expiresAt} while signed in (session.js keeps it), else null
//   route    where the app is, from the URL (router.js): {view, ...}
//   uploads  the uploads panel while signed in (its engine runs apart from every view)
//   account  {used_bytes, quota_bytes} of the user signed in (GET /users/me), or null
//   tree     whether the gateway has the tree (contract v1.2); null until known
//   folder   a promise of the folder shown (where uploads and drops go), or null

export const state = {
  config: null,
  session: null,
  route: null,
  uploads: null,
  account: null,
  tree: null,
  folder: null,
};

const listeners = new Set();

/** Change some of the state, then tell every listener which keys changed. */
export function update(patch) {
  const changed = Object.keys(patch).filter((key) => state[key] !== patch[key]);
  if (!changed.length) return;
  Object.assign(state, patch);
  for (const listener of [...listeners]) listener(state, changed);
}

/** listener(state, changedKeys) after every update; returns the function that unsubscribes. */
export function subscribe(listener) {
  listeners.add(listener);
  return () => listeners.delete(listener);
}
