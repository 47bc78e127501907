// Where the app is, kept in the URL's fragment, so that back and forward move between places, a
// reload stays where it was and a place can be bookmarked. A fragment never leaves the browser (it is
// not sent to the gateway, nor in a Referer), so the gateway serves one page, `/`, for every place.
//
//   #/        your files (and those shared with you)
//
// parse() and href() are each other's inverse; anything parse() does not know is the files view.

const VIEWS = new Set(["files"]);
const DEFAULT = Object.freeze({ view: "files" });

/** The route a fragment ("#/...") names; the default route for anything unknown. */
export function parse(hash) {
  const [path] = String(hash || "").replace(/^#/, "").split("?");
  const parts = path.split("/").filter(Boolean);
  let view;
  try {
    view = parts.length ? decodeURIComponent(parts[0]) : "files";
  } catch {
    return DEFAULT;
  }
  return VIEWS.has(view) ? { view } : DEFAULT;
}

/** The fragment of a route, for links and for navigate(). */
export function href(route) {
  if (!route || route.view === "files") return "#/";
  return `#/${encodeURIComponent(route.view)}`;
}

export function current() {
  return parse(window.location.hash);
}

/** Go to a route: a new history entry, or in place of the current one with {replace: true}. */
export function navigate(route, { replace = false } = {}) {
  const target = href(route);
  if (window.location.hash === target) return;
  if (replace) window.location.replace(target);
  else window.location.hash = target;
}

/**
 * Call onRoute(route) now and after every change of the fragment (links, navigate(), back, forward).
 * A fragment that is not the route's own (unknown, or spelt differently) is replaced by it, in place.
 */
export function startRouter(onRoute) {
  const follow = () => {
    const route = current();
    if (window.location.hash !== href(route)) {
      window.history.replaceState(window.history.state, "", href(route));
    }
    onRoute(route);
  };
  window.addEventListener("hashchange", follow);
  follow();
  return () => window.removeEventListener("hashchange", follow);
}
