// The public API (analytics.js-compatible). `A` replaces the snippet's stub on window.
var A = {}, EV = {}, DESTS = [], READY = [], PLUGINS = [], DEBUG = lsGet("sb_debug"), LO = {};
var VERSION = "1.0.0";

function log() { if (DEBUG && W.console) console.log.apply(console, ["[switchboard]"].concat([].slice.call(arguments))); }
function on(n, f) { (EV[n] = EV[n] || []).push(f); return A; }
function off(n, f) { EV[n] = (EV[n] || []).filter(function (g) { return f && g !== f && g._f !== f; }); return A; }
function once(n, f) { var g = function () { off(n, g); f.apply(A, arguments); }; g._f = f; return on(n, g); }
function emit(n) {
  var a = [].slice.call(arguments, 1);
  (EV[n] || []).slice().forEach(function (f) { try { f.apply(A, a); } catch (x) { log(x); } });
}

// --- context -------------------------------------------------------------------------------
// The page as the snippet's buffered page context ({__t:"bpc"}) saw it, or as it is now.
function pCtx(b) {
  var l = D.querySelector("link[rel='canonical']");
  b = b || { c: l && l.getAttribute("href"), p: location.pathname, u: location.href, s: location.search, t: D.title, r: D.referrer };
  var url = b.u.split("#")[0], path = b.p;
  if (b.c) { try { var c = new URL(b.c, b.u); url = c.href.indexOf("?") < 0 ? c.href + b.s : c.href; path = c.pathname; } catch (x) {} }
  return { path: path, referrer: b.r, search: b.s, title: b.t, url: url };
}
// context.library.name: the source's library_name setting (C.libraryName) when the bundle has one.
// --- building events (as analytics-next's EventFactory and its page/environment enrichment) ---
// A call's arguments; the snippet's buffered page context ({__t: "bpc"}) is the last one.
function parse(args) {
  var a = [].slice.call(args), last = a[a.length - 1], bpc;
  if (isObj(last) && last.__t == "bpc") bpc = a.pop();
  return { a: a, bpc: bpc, cb: a.filter(isFn)[0] };
}
var EK = "integrations context userId anonymousId timestamp messageId".split(" ");
// options: integrations merge over the load options' (as booleans); userId, anonymousId, timestamp
// and messageId go on the event; context is the base of the event's context, with context.page
// merged over the page as it is (and, for page(), its url/path/search/title/referrer properties);
// any other option is written into context.
// A call the snippet already sent (js_templates/snippet.js.j2, server/ingest/early.py) is rebuilt
// with its ids: bpc.e, the messageId ("sb-<time in ms>-<uuid>", whose time is the event's
// timestamp), bpc.i the userId and bpc.a the anonymousId; the snippet's earlier form, which pasted
// copies still run, wrote bpc.e = {messageId, timestamp, userId}. Such a call goes through the
// pipeline but not to the collector again (SENT keeps its bpc, see deliver); its anonymous id is
// stored unless the visitor has one by now (a queued setAnonymousId runs first). A call with
// options never was.
function make(type, fields, opts, bpc) {
  var s = !opts && bpc && bpc.e;
  if (s) anonymousId(idGet("ajs_anonymous_id") || bpc.a),
    SENT[(opts = str(s) ? { messageId: s, timestamp: +s.split("-")[1], userId: bpc.i } : s).messageId] = bpc;
  opts = opts || {};
  var page = pCtx(bpc), o = opts.context || {}, k, LI = LO.integrations || {}, I = {};
  var c = { library: { name: C.libraryName || "switchboard.js", version: VERSION }, locale: navigator.language,
    screen: { width: screen.width, height: screen.height, density: W.devicePixelRatio } };
  if (DEVICE && CATS.length || lsGet(CK) || MEM[CK]) c.consent = { categoryPreferences: consent() };
  extend(c, o);
  for (k in opts) if (has(opts, k) && EK.indexOf(k) < 0) dset(c, k, opts[k]);
  var props = type == "page" && fields.properties || {}, picked = {};
  for (k in page) if (has(props, k)) picked[k] = props[k];
  c.page = extend({}, page, picked, o.page);
  c.userAgent = navigator.userAgent;
  // Temporal first, as the snippet reads it (Chromium's first Intl call costs 10-20 ms).
  try { c.timezone = W.Temporal ? Temporal.Now.timeZoneId() : Intl.DateTimeFormat().resolvedOptions().timeZone; } catch (x) {}
  // context.campaign from the page's utm_* parameters (utm_campaign is its name), unless given.
  if (!c.campaign) {
    var utm = {}, any;
    (c.page.search || "").replace(/^\?/, "").split("&").forEach(function (kv) {
      var p = kv.split("="), n;
      try {
        n = decodeURIComponent(p[0]);
        if (n.indexOf("utm_") == 0 && n.length > 4) { utm[n == "utm_campaign" ? "name" : n.slice(4)] = decodeURIComponent((p[1] || "").replace(/\+/g, " ")); any = 1; }
      } catch (x) {}
    });
    if (any) c.campaign = utm;
  }
  for (k in LI) I[k] = !!LI[k];
  // analytics-next stores an anonymousId given as an option (it becomes the visitor's id).
  if (opts.anonymousId) anonymousId(String(opts.anonymousId));
  var e = extend({ type: type }, fields, {
    messageId: opts.messageId || "sb-" + Date.now() + "-" + uuid(),
    timestamp: iso(opts.timestamp), anonymousId: s ? bpc.a : anonymousId(),
    context: c, integrations: extend(I, opts.integrations)
  });
  if (!("userId" in e)) e.userId = userId() || opts.userId || null;
  if (type == "page" || type == "screen") {
    e.properties = extend({}, type == "page" ? page : {}, e.properties);
    if (e.name != null) e.properties.name = e.name;
    if (e.category != null) e.properties.category = e.category;
  }
  return e;
}

// --- the pipeline: before plugins (source middleware among them) → enrichment → destinations
// (device-mode loaders, destination plugins, the collector) → after plugins. A before or
// enrichment step that throws or cancels drops the event: it is never sent unmodified.
// Plugins exist only once the extras chunk has run (register, middleware): it sets STAGE, the
// function that runs a stage's plugins (js_templates/extras/20-api.js); until then a stage is empty.
var TIMEOUT = 300, UAD, UAP = Promise.resolve(), SENT = {}, STAGE;
function stage(ctx, type, strict) { return STAGE ? STAGE(ctx, type, strict) : Promise.resolve(); }
function dispatch(e, cb, initial) {
  var ctx = new Ctx(e), t0 = Date.now();
  // Offline without a retry queue, analytics-next drops the event; so do we.
  var P = navigator.onLine === false && LO.retryQueue === false ? Promise.resolve() :
    UAP.then(function () { if (UAD) e.context.userAgentData = UAD; return stage(ctx, "before", 1); })
      .then(function () { return stage(ctx, "enrichment", 1); })
      .then(function () { return deliver(ctx, initial); }, function (x) {
        ctx.setFailedDelivery({ reason: x });
        if (!(x instanceof Cancel)) emit("error", { code: "plugin_error", reason: x, ctx: ctx });
      });
  return P.then(function () {
    // The callback waits for delivery, and at least analytics.timeout() ms (300) from the call.
    return cb && new Promise(function (r) { setTimeout(r, TIMEOUT - Date.now() + t0); })
      .then(function () { try { cb(ctx); } catch (x) { log(x); } });
  }).then(function () {
    e = ctx.event;
    var args = e.type == "track" ? [e.event, e.properties] : e.type == "page" || e.type == "screen" ? [e.category, e.name, e.properties]
      : e.type == "identify" ? [e.userId, e.traits] : e.type == "group" ? [e.groupId, e.traits] : [e.userId, e.previousId];
    emit.apply(null, [e.type].concat(args));
    emit("invoke", e);
    return ctx;
  });
}
function deliver(ctx, initial) {
  var e = ctx.event, wire = clone(e), all = [stage(ctx, "destination")], to;
  if (DEVICE) to = routeTo(e, wire, initial);       // core/32-device.js
  // integrations {"Segment.io": false}: the event stays in the browser (a call's All: false doesn't
  // count; at load, All: false without "Segment.io": true keeps every event here, as analytics-next).
  // A call the snippet sent early: unless its answer says the collector refused it (the source
  // gained consent categories or filters since the snippet was pasted), the snippet calls bpc.f
  // when that answer comes, and the event leaves from here after all.
  var L = LO.integrations || {}, on = L["Segment.io"], b = SENT[e.messageId];
  if (b && b.e) b.f = function () { enqueue(wire); };
  else if ((e.integrations || {})["Segment.io"] !== false && on !== false && (on || L.All !== false)) all.push(new Promise(function (r) {
    enqueue(wire, function (err) { if (err) ctx.setFailedDelivery({ reason: err }); r(); });
    if (navigator.onLine === false) r();             // queued for when the browser is back
  }));
  if (DEVICE) to.forEach(function (d) { d.send(e); });
  log(e.type, e);
  return Promise.all(all).then(function () { return stage(ctx, "after"); });
}
