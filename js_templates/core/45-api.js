// The calls a site makes, with analytics-next's argument rules and return values: the event
// calls return a promise of the Context (after delivery, and after the callback if one was
// given); on/once/off/debug return the instance.
function str(v) { return typeof v == "string"; }
// track(name | {event, properties}, properties?, options?, callback?)
function track() {
  var p = parse(arguments), a = p.a, o = isObj(a[0]), name = o ? a[0].event : a[0];
  if (!name || !str(name)) return Promise.reject(new Error("Event missing"));
  return dispatch(make("track", { event: name, properties: (o ? a[0].properties : isObj(a[1]) && a[1]) || {} },
    o ? isObj(a[1]) && a[1] : isObj(a[2]) && a[2], p.bpc), p.cb);
}
// ([category], [name], [properties], [options], [callback]): analytics-next's resolvePageArguments.
function pageLike(type, args, initial) {
  var p = parse(args), a = p.a.slice(0, 5), f = {}, s = a.filter(str), o = a.filter(isObj), props = o[0], opts = o[1];
  if (s.length == 1) f.name = str(a[1]) ? a[1] : s[0];
  else if (s.length == 2) { if (str(a[0])) f.category = a[0]; if (str(a[1])) f.name = a[1]; }
  if (o.length == 1 && !isObj(a[2]) && isObj(a[3])) { props = {}; opts = a[3]; }
  f.properties = props || {};
  return dispatch(make(type, f, opts, p.bpc), p.cb, initial);
}
function page() { return pageLike("page", arguments); }
function scrCall() { return pageLike("screen", arguments); }
// (id?, traits?, options?, callback?): analytics-next's resolveUserArguments; a left-out or null id
// keeps the current one.
function userArgs(a) {
  var v = {}, order = ["callback", "options", "traits", "id"];
  for (var i = 0; i < a.length; i++) {
    var x = a[i], c = order.pop();
    if (c == "id") { if (str(x) || typeof x == "number") { v.id = String(x); continue; } if (x == null) continue; c = order.pop(); }
    if ((c == "traits" || c == "options") && (x == null || isObj(x))) v[c] = x;
    if (isFn(x)) break;
  }
  return { id: v.id, traits: v.traits || {}, opts: v.options || {} };
}
function identify() {
  var p = parse(arguments), u = userArgs(p.a), cur = userId(), id = u.id !== undefined ? u.id : cur;
  uTraits(extend(cur == null || cur === id ? uTraits() : {}, u.traits));
  if (u.id) userId(u.id);
  return dispatch(make("identify", { userId: userId(), traits: uTraits() }, u.opts, p.bpc), p.cb);
}
function group() {
  var p = parse(arguments), g = userArgs(p.a);
  if (!p.a.length) return groupApi;
  if (g.id !== undefined) groupId(g.id);
  gTraits(extend(gTraits(), g.traits));
  return dispatch(make("group", { groupId: groupId(), traits: gTraits() }, g.opts, p.bpc), p.cb);
}
// (to, from?, options?, callback?); from defaults to the current user or anonymous id.
function alias() {
  var p = parse(arguments), a = p.a.slice(0, 4).map(function (v) { return typeof v == "number" ? String(v) : v; }), s = a.filter(str);
  if (!s.length) return Promise.reject(new Error("Alias missing"));
  return dispatch(make("alias", { userId: s[0], previousId: s[1] || userId() || anonymousId() },
    a.filter(isObj)[0], p.bpc), p.cb);
}
// Getter-setters (as analytics-next's User and Group): no argument reads, one sets.
var userApi = { id: userId, anonymousId: anonymousId, traits: uTraits };
var groupApi = { id: groupId, traits: gTraits };

// ready(cb): after the destinations loaded (or failed, or wait for consent); cb and the promise
// get one entry per plugin, as analytics-next's.
function ready(cb) {
  return new Promise(function (done) {
    var f = function () { var r = (DEVICE ? PLUGINS.concat(DESTS) : PLUGINS).map(function () {}); if (isFn(cb)) cb(r); done(r); };
    if (READY) READY.push(f); else setTimeout(f, 0);
  });
}
function readyChk() {
  if (!READY || DEVICE && DESTS.some(function (d) { return !d.st && !d.w; })) return;
  var r = READY; READY = null;
  r.forEach(function (f) { try { f(); } catch (x) { log(x); } });
  emit("ready");
}
// The extras chunk (C.extras; plugins, middleware, query string: docs/bundle.md) is fetched on
// first use. Calls that change what later events go through (register, middleware) hold back the
// events made after them until the chunk has run them; if it can't be loaded, those events are
// dropped with an error (fail closed), never sent past a middleware that didn't run.
var XP;
function extras() {
  return XP || (XP = new Promise(function (ok, no) {
    var n = "__sb" + uuid().slice(0, 8), el = D.createElement("script");
    W[n] = function (api) {
      delete W[n];
      ok(api(A, PLUGINS, DESTS, Ctx, Cancel, LO, function (run, mw) { STAGE = run; if (DEVICE) MWRUN = mw; }));
    };
    el.src = C.extras; el.setAttribute("data-sb", n); el.onerror = no;
    (D.head || D.documentElement).appendChild(el);
  }));
}
function lazy(n, gate) {
  return function () {
    var a = arguments, r, p = extras().then(function (E) { r = E[n].apply(A, a); });
    if (gate) UAP = Promise.all([UAP, p]);
    return p.then(function () { return r; });
  };
}
extend(A, {
  initialized: true, VERSION: VERSION, track: track, page: page, screen: scrCall, identify: identify, group: group,
  alias: alias, ready: ready, on: on, once: once, off: off,
  user: function () { return userApi; },
  setAnonymousId: function (id) { return anonymousId(id == null ? undefined : String(id)); },
  reset: function () { clearId(); emit("reset"); },
  debug: function (v) { DEBUG = v !== false; lsSet("sb_debug", DEBUG || null); return A; },
  setConsent: setConsent, getConsent: consent,
  addIntegrationMiddleware: function () {},
  timeout: function (ms) { TIMEOUT = ms; },
  // A snippet pasted after the bundle sees `initialize` and leaves the real instance alone;
  // analytics.js's push([method, ...args]) and a second load() keep working.
  initialize: function () { return A; }
});
A.load = A.initialize;
// The methods of the extras chunk; those that change what later events go through hold them back.
"trackLink trackClick trackForm trackSubmit deregister queryString".split(" ").forEach(function (n) { A[n] = lazy(n); });
"addSourceMiddleware addDestinationMiddleware register pageview".split(" ").forEach(function (n) { A[n] = lazy(n, 1); });
A.push = function (c) { if (c && isFn(A[c[0]])) A[c[0]].apply(A, c.slice(1)); return A; };
