// Where the app is, kept in the URL's fragment, so that back and forward move between places, a
// reload stays where it was and a place can be bookmarked. A fragment never leaves the browser (it is
// not sent to the gateway, nor in a Referer), so the gateway serves one page, `/`, for every place.
//
//   #/                   your files: the root folder (and the files shared with you)
//   #/folder/<id>        a folder of yours
//   #/trash              what you deleted
//   #/search?q=<text>    your files and folders whose name holds the text
//
// parse() and href() are each other's inverse; anything parse() does not know is the root folder.

const ROOT = Object.freeze({ view: "files", folder: "root" });
const ID = /^[A-Za-z0-9_-]{1,64}$/;

function decoded(part) {
  try {
    return decodeURIComponent(part);
  } catch {
    return null;
  }
}

/** The route a fragment ("#/...") names; the root folder for anything unknown. */
export function parse(hash) {
  const text = String(hash || "").replace(/^#/, "");
  const [path, query = ""] = text.split("?");
  const parts = path.split("/").filter(Boolean).map(decoded);
  if (parts.includes(null)) return ROOT;
  if (parts.length === 2 && parts[0] === "folder" && ID.test(parts[1])) {
    return parts[1] === "root" ? ROOT : { view: "files", folder: parts[1] };
  }
  if (parts.length === 1 && parts[0] === "trash") return { view: "trash" };
  if (parts.length === 1 && parts[0] === "search") {
    let q = "";
    try {
      q = new URLSearchParams(query).get("q") || "";
    } catch {
      q = "";
    }
    return q.trim() ? { view: "search", q } : ROOT;
  }
  return ROOT;
}

/** The fragment of a route, for links and for navigate(). */
export function href(route) {
  if (!route) return "#/";
  if (route.view === "trash") return "#/trash";
  if (route.view === "search") return `#/search?${new URLSearchParams({ q: route.q })}`;
  if (route.view === "files" && route.folder && route.folder !== "root") {
    return `#/folder/${encodeURIComponent(route.folder)}`;
  }
  return "#/";
}

/** Two routes name the same place. */
export function same(a, b) {
  return href(a) === href(b);
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
