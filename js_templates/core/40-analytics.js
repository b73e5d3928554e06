// The public API (analytics.js-compatible). `A` replaces the snippet's stub on window.
var A = {}, EV = {}, DESTS = [], READY = [], MW = [], PLUGINS = [], DEBUG = lsGet("sb_debug"), LOADOPTS = {};
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
function canonical() { var c = D.querySelector("link[rel='canonical']"); return c ? c.getAttribute("href") : undefined; }
// The page as the snippet's buffered page context ({__t:"bpc"}) saw it, or as it is now.
function pageContext(b) {
  b = b || { c: canonical(), p: location.pathname, u: location.href, s: location.search, t: D.title, r: D.referrer };
  var url = b.u.split("#")[0], path = b.p;
  if (b.c) { try { var c = new URL(b.c, b.u); url = c.href.indexOf("?") < 0 ? c.href + b.s : c.href; path = c.pathname; } catch (x) {} }
  return { path: path, referrer: b.r, search: b.s, title: b.t, url: url };
}
function campaign(search) {
  var out = {}, any = 0;
  (search || "").replace(/^\?/, "").split("&").forEach(function (kv) {
    var p = kv.split("="), k = decodeURIComponent(p[0] || "");
    if (k.indexOf("utm_") == 0 && k.length > 4) {
      try { out[k == "utm_campaign" ? "name" : k.slice(4)] = decodeURIComponent((p[1] || "").replace(/\+/g, " ")); any = 1; } catch (x) {}
    }
  });
  return any ? out : undefined;
}
function baseContext(page) {
  var tz; try { tz = Intl.DateTimeFormat().resolvedOptions().timeZone; } catch (x) {}
  var c = {
    library: { name: "switchboard.js", version: VERSION }, page: page, userAgent: navigator.userAgent,
    locale: navigator.language, timezone: tz,
    screen: { width: screen.width, height: screen.height, density: W.devicePixelRatio }
  };
  var utm = campaign(page.search);
  if (utm) c.campaign = utm;
  return c;
}

// --- building events -----------------------------------------------------------------------
// A call's arguments; the snippet's buffered page context ({__t: "bpc"}) is the last one.
function parse(args) {
  var a = [].slice.call(args), last = a[a.length - 1], bpc;
  if (isObj(last) && last.__t == "bpc") bpc = a.pop();
  return { a: a, bpc: bpc, cb: a.filter(isFn)[0] };
}
function make(type, fields, opts, bpc) {
  opts = opts || {};
  var page = pageContext(bpc), ctx = baseContext(page);
  for (var k in opts) if (has(opts, k) && ["integrations", "timestamp", "anonymousId", "context", "messageId"].indexOf(k) < 0) ctx[k] = opts[k];
  if (CATS.length || lsGet(CK) || MEM[CK]) ctx.consent = { categoryPreferences: consent() };
  extend(ctx, opts.context);
  var e = extend({ type: type }, fields, {
    messageId: opts.messageId || "sb-" + Date.now() + "-" + uuid(),
    timestamp: iso(opts.timestamp), anonymousId: opts.anonymousId || anonymousId(),
    context: ctx, integrations: extend({}, opts.integrations)
  });
  if (!("userId" in e)) e.userId = userId();
  if (type == "page" || type == "screen") {
    e.properties = extend({}, type == "page" ? page : {}, e.properties);
    if (e.name != null) e.properties.name = e.name;
    if (e.category != null) e.properties.category = e.category;
  }
  return e;
}

// --- the pipeline: source middleware → enrichment plugins → destinations + collector ------
function dispatch(e, cb, initial) {
  var i = 0;
  var next = function (payload) {
    if (!payload || !payload.obj) return;             // a middleware dropped the event
    var mw = MW[i++];
    if (mw) {
      try { return mw({ payload: payload, integrations: {}, next: next }); } catch (x) { log(x); return next(payload); }
    }
    deliver(payload.obj, cb, initial);
  };
  next({ obj: e });
}
function runPlugins(types, e) {
  PLUGINS.forEach(function (p) {
    if (types.indexOf(p.type) >= 0 && isFn(p[e.type])) try { p[e.type]({ event: e }); } catch (x) { log(x); }
  });
}
function deliver(e, cb, initial) {
  runPlugins(["before", "enrichment"], e);
  var p = ((e.context || {}).consent || {}).categoryPreferences, bundled = [];
  var to = DESTS.filter(function (d) { return !d.w && granted(d, p) && d.takes(e, initial); });
  // Destinations served here are switched off for the server's delivery (CONTRACT.md §9).
  var wire = clone(e);
  to.forEach(function (d) { wire.integrations[d.cfg.name] = false; bundled.push(d.cfg.name); });
  if (bundled.length) wire._metadata = { bundled: bundled.sort() };
  enqueue(wire);
  to.forEach(function (d) { d.send(e); });
  runPlugins(["destination", "after"], e);
  log(e.type, e);
  var args = e.type == "track" ? [e.event, e.properties] : e.type == "page" || e.type == "screen" ? [e.category, e.name, e.properties]
    : e.type == "identify" ? [e.userId, e.traits] : e.type == "group" ? [e.groupId, e.traits] : [e.userId, e.previousId];
  emit.apply(null, [e.type].concat(args));
  emit("invoke", e);
  if (cb) setTimeout(function () { cb(e); }, 0);
}
