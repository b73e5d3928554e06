// The calls a site makes. Every one returns the instance (analytics.js chains), except ready().
function idish(v) { return typeof v == "string" || typeof v == "number"; }
function obj(v) { return isObj(v) ? v : undefined; }
function track() {
  var p = parse(arguments), a = p.a;
  if (!idish(a[0])) return A;
  dispatch(make("track", { event: String(a[0]), properties: obj(a[1]) || {} }, obj(a[2]), p.bpc), p.cb);
  return A;
}
// ([category], [name], [properties], [options], [callback]) as analytics-next resolves them.
function pageLike(type, args, initial) {
  var p = parse(args), a = p.a, f = {}, s = a.filter(function (x) { return typeof x == "string"; });
  if (s.length > 1) { f.category = s[0]; f.name = s[1]; } else if (s.length) f.name = s[0];
  var o = a.filter(function (x) { return isObj(x) || s.length && x === null; });
  f.properties = o[0] || {};
  dispatch(make(type, f, o[1] || undefined, p.bpc), p.cb, initial);
  return A;
}
function page() { return pageLike("page", arguments); }
function screenCall() { return pageLike("screen", arguments); }
// (id?, traits?, options?, callback?): the id may be left out or null (then the current one stays).
function userArgs(a) {
  var i = idish(a[0]) || a[0] == null ? 1 : 0;
  return { id: idish(a[0]) ? String(a[0]) : undefined, traits: obj(a[i]), opts: obj(a[i + 1]) };
}
function identify() {
  var p = parse(arguments), u = userArgs(p.a);
  if (u.id !== undefined && u.id !== userId()) { if (userId() != null) userTraits({}); userId(u.id); }
  userTraits(extend(userTraits(), u.traits));
  dispatch(make("identify", { userId: userId(), traits: userTraits() }, u.opts, p.bpc), p.cb);
  return A;
}
function group() {
  var p = parse(arguments), g = userArgs(p.a);
  if (!p.a.length) return groupApi;
  if (g.id !== undefined) groupId(g.id);
  groupTraits(extend(groupTraits(), g.traits));
  dispatch(make("group", { groupId: groupId(), traits: groupTraits() }, g.opts, p.bpc), p.cb);
  return A;
}
// (to, from?, options?, callback?); from defaults to the current user or anonymous id.
function alias() {
  var p = parse(arguments), a = p.a, named = idish(a[1]) || a[1] == null;
  if (!idish(a[0])) return A;
  dispatch(make("alias", { userId: String(a[0]), previousId: idish(a[1]) ? String(a[1]) : userId() || anonymousId() },
    obj(named ? a[2] : a[1]), p.bpc), p.cb);
  return A;
}
function accessor(get) { return function (v) { return get(v); }; }
var userApi = {
  id: accessor(userId), anonymousId: accessor(anonymousId),
  traits: function (v) { return userTraits(v === undefined ? undefined : v); }
};
var groupApi = { id: accessor(groupId), traits: function (v) { return groupTraits(v === undefined ? undefined : v); } };

function ready(cb) {
  return new Promise(function (done) {
    var f = function () { if (isFn(cb)) cb(); done(A); };
    if (READY) READY.push(f); else setTimeout(f, 0);
  });
}
function checkReady() {
  if (!READY || DESTS.some(function (d) { return !d.st && !d.w; })) return;
  var r = READY; READY = null;
  r.forEach(function (f) { try { f(); } catch (x) { log(x); } });
  emit("ready");
}
// analytics.js's trackLink/trackForm. Our requests are keepalive, so the click or submit goes
// ahead at once; there is no 300 ms delay to wait for the beacon.
function bind(els, type, ev, props) {
  if (!els) return A;
  if (els.nodeType) els = [els];
  [].slice.call(els).forEach(function (el) {
    el.addEventListener(type, function () {
      track(isFn(ev) ? ev(el) : ev, isFn(props) ? props(el) : props);
    });
  });
  return A;
}
function register() {
  var ps = [].slice.call(arguments);
  return Promise.all(ps.map(function (p) {
    PLUGINS.push(p);
    try { return Promise.resolve(p.load && p.load({}, A)).catch(log); } catch (x) { log(x); }
  })).then(function () { return A; });
}
extend(A, {
  initialized: true, VERSION: VERSION, track: track, page: page, screen: screenCall, identify: identify, group: group,
  alias: alias, ready: ready, on: on, once: once, off: off,
  user: function () { return userApi; },
  setAnonymousId: function (id) { return anonymousId(id == null ? undefined : String(id)); },
  reset: function () { clearIdentity(); emit("reset"); return A; },
  debug: function (v) { DEBUG = v !== false; lsSet("sb_debug", DEBUG || null); return A; },
  trackLink: function (els, ev, props) { return bind(els, "click", ev, props); },
  trackForm: function (els, ev, props) { return bind(els, "submit", ev, props); },
  setConsent: setConsent, getConsent: consent,
  addSourceMiddleware: function (fn) { MW.push(fn); return A; },
  addIntegrationMiddleware: function () { return A; }, addDestinationMiddleware: function () { return A; },
  register: register
});
A.trackClick = A.trackLink; A.trackSubmit = A.trackForm; A.pageview = function (url) { return page({ path: url }); };
// A snippet pasted after the bundle sees `initialize` and leaves the real instance alone;
// analytics.js's push([method, ...args]) and a second load() keep working.
A.initialize = A.load = function () { return A; };
A.push = function (c) { if (c && isFn(A[c[0]])) A[c[0]].apply(A, c.slice(1)); return A; };
