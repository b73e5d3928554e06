// The calls a site makes. Every one returns the instance (analytics.js chains), except ready().
function track(name, props, opts, cb) {
  var p = parse(arguments);
  if (!p.s.length) return A;
  dispatch(make("track", { event: p.s[0], properties: p.o[0] || {} }, p.o[1], p.bpc), p.cb);
  return A;
}
function pageLike(type, args, initial) {
  var p = parse(args), f = { properties: p.o[0] || {} };
  if (p.s.length > 1) { f.category = p.s[0]; f.name = p.s[1]; } else if (p.s.length) f.name = p.s[0];
  dispatch(make(type, f, p.o[1], p.bpc), p.cb, initial);
  return A;
}
function page() { return pageLike("page", arguments); }
function screenCall() { return pageLike("screen", arguments); }
function identify() {
  var p = parse(arguments), a = p.a, id = typeof a[0] == "string" || typeof a[0] == "number" ? String(a[0]) : a[0] === null ? null : undefined;
  var traits = p.o[0], opts = p.o[1];
  if (id !== undefined && id !== userId()) { if (userId() != null) userTraits({}); userId(id); }
  userTraits(extend(userTraits(), traits));
  dispatch(make("identify", { userId: userId(), traits: userTraits() }, opts, p.bpc), p.cb);
  return A;
}
function group() {
  var p = parse(arguments), a = p.a;
  if (!a.length) return groupApi;
  if (typeof a[0] == "string" || typeof a[0] == "number") groupId(String(a[0]));
  groupTraits(extend(groupTraits(), p.o[0]));
  dispatch(make("group", { groupId: groupId(), traits: groupTraits() }, p.o[1], p.bpc), p.cb);
  return A;
}
function alias(to, from) {
  var p = parse(arguments);
  to = p.s[0]; from = p.s[1] || userId() || anonymousId();
  dispatch(make("alias", { userId: to, previousId: from }, p.o[0], p.bpc), p.cb);
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
  if (!READY || DESTS.some(function (d) { return !d.st; })) return;
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
  addSourceMiddleware: function (fn) { MW.push(fn); return A; },
  addIntegrationMiddleware: function () { return A; }, addDestinationMiddleware: function () { return A; },
  register: register
});
A.trackClick = A.trackLink; A.trackSubmit = A.trackForm; A.pageview = function (url) { return page({ path: url }); };
// A snippet pasted after the bundle sees `initialize` and leaves the real instance alone;
// analytics.js's push([method, ...args]) and a second load() keep working.
A.initialize = A.load = function () { return A; };
A.push = function (c) { if (c && isFn(A[c[0]])) A[c[0]].apply(A, c.slice(1)); return A; };
