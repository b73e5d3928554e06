// Server-set cookies (docs/bundle.md, "Server-set cookies"): once a day, the collector sets the
// visitor's id cookies again from its own response, so that Safari's 7-day cap on cookies written
// by scripts does not end them (server/ingest/kept_cookies.py says what it checks). Rendered into
// the bundles of sources with server_cookies on only, after the core, and called with the
// collector's /keep URL and the write key. It reads only what the core wrote and how: the
// cookies it set (none yet: next page), its load options' cookie attributes and names, and the
// domain it writes to (the load option, or the widest one the browser accepts, found as the
// core finds it). ES5, as the core.
function (url, writeKey) {
  var s = document.currentScript, A = window[s && s.getAttribute("data-global-segment-analytics-key") || "analytics"];
  if (A && A.ready) A.ready(function () {
    var d = document, o = A._loadOptions || {}, c = o.cookie || {}, u = o.user || {}, g = o.group || {}, now = Date.now(),
      names = [], dom = c.domain, ls, h, p, i, t;
    var has = function (n) { return d.cookie.split("; ").some(function (kv) { return kv.indexOf(n + "=") == 0 && kv.length > n.length + 1; }); };
    try { ls = localStorage; if (ls.sb_kept > now - 864e5) return; } catch (x) { return; }
    if (o.disableClientPersistence) return;
    if (u.persist !== false) names.push("ajs_anonymous_id", (u.cookie || {}).key || "ajs_user_id");
    if (g.persist !== false) names.push((g.cookie || {}).key || "ajs_group_id");
    names = names.filter(has);
    if (!names.length) return;
    if (dom == null) {
      dom = ""; h = location.hostname; p = h.split(".");
      if (p.length > 1 && !/^[\d.]+$|:/.test(h)) for (i = p.length - 2; i >= 0; i--) {
        t = p.slice(i).join(".");
        d.cookie = "sb_tld=1; path=/; max-age=10; domain=." + t;
        if (has("sb_tld")) { d.cookie = "sb_tld=; path=/; max-age=0; domain=." + t; dom = t; break; }
      }
    }
    ls.sb_kept = now;
    fetch(url, { method: "POST", credentials: "include", keepalive: true, body: JSON.stringify({
      writeKey: writeKey, domain: String(dom).replace(/^\./, ""), names: names, path: c.path || "/",
      sameSite: c.sameSite || "Lax", secure: !!c.secure, maxage: c.maxage || 365 }) })["catch"](function () {});
  });
}
