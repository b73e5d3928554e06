// The rarely used part of the API, in a chunk the core fetches on first use (docs/bundle.md):
// plugins (register, deregister), source and destination middleware, the query-string API,
// trackLink/trackForm (analytics-next loads those on first use too).
// What the core hands over: its instance, its plugin and device-mode destination arrays (changed
// in place), its Context and Cancel classes, the load options, and hook(stage, destMw) that gives
// the core the plugin pipeline and destination middleware.
function extrasApi(A, plugins, dests, Ctx, Cancel, opts, hook) {
  // A stage of the pipeline (core/40-analytics.js): this type's plugins in order; a destination
  // plugin only for calls routed to it. A failing step is logged; in strict stages (before,
  // enrichment) it rejects, which drops the event.
  function stage(ctx, type, strict) {
    var P = Promise.resolve(), e = ctx.event;
    plugins.forEach(function (p) {
      if (p.type != type || !isFn(p[e.type]) || type == "destination" && !routed([p.name].concat(p.alternativeNames || []), e.integrations)) return;
      P = P.then(function () { return p[ctx.event.type](ctx); }).then(null, function (x) {
        ctx.log(x instanceof Cancel ? "warn" : "error", "plugin Error", { plugin: p.name, error: x });
        if (strict) throw x;
      });
    });
    return P;
  }
  hook(stage, destMw);                                // plugins run from now on, and destination middleware
  // Plugins (analytics-next's interface: {name, type, load, isLoaded, track/page/..., unload}).
  // register() and deregister() resolve to a system Context; a plugin whose load() fails is removed.
  function sys() { return new Ctx({ type: "track", event: "system" }); }
  function unplug(p) { var i = plugins.indexOf(p); if (i >= 0) plugins.splice(i, 1); }
  function register() {
    var ctx = sys();
    return Promise.all([].map.call(arguments, function (p) {
      var r, fail = function (x) {
        ctx.log("warn", "Failed to load destination", { plugin: p.name, error: x });
        unplug(p);
      };
      plugins.push(p);
      try { r = Promise.resolve(p.load(ctx, A)).catch(fail); } catch (x) { fail(x); }
      return p.type != "destination" && r;
    })).then(function () { return ctx; });
  }
  function deregister() {
    var ctx = sys();
    return Promise.all([].map.call(arguments, function (n) {
      var p = plugins.filter(function (q) { return q.name === n; })[0];
      if (!p) return ctx.log("warn", "plugin " + n + " not found");
      return Promise.resolve().then(function () { return p.unload && p.unload(ctx, A); })
        .then(function () { unplug(p); },
          function (x) { ctx.log("warn", "Failed to unload destination", { plugin: n, error: x }); });
    })).then(function () { return ctx; });
  }
  // A source middleware is a `before` plugin, as in analytics-next: it gets {payload (a facade over
  // a copy), integrations, next}; next(payload) passes payload.obj on. Not calling next (by the time
  // its promise settles), next(null) or a throw drops the event.
  function middleware(fn) {
    var ap = function (ctx) {
      var called = 0, drop = 0, I = {};
      dests.forEach(function (d) { I[d.cfg.name] = true; });
      return Promise.resolve(fn({ payload: facade(clone(ctx.event)), integrations: I, next: function (p) {
        called = 1; if (p === null) drop = 1; else if (p) ctx.event = p.obj;
      } })).then(function () {
        if (!called || drop) throw new Cancel({ retry: false, type: "middleware_cancellation", reason: "Middleware `next` function skipped" });
      });
    }, p = { name: "Source Middleware " + fn.name, type: "before", version: "0.1.0", isLoaded: function () { return true; } };
    "track page screen identify alias group".split(" ").forEach(function (t) { p[t] = ap; });
    plugins.push(p);
    return A;
  }
  // addDestinationMiddleware(name | "*", ...fns) for the device-mode destinations of this bundle.
  function destMiddleware(name) {
    var fns = [].slice.call(arguments, 1), n = String(name).toLowerCase();
    dests.forEach(function (d) {
      if (n == "*" || (d.cfg.names || [d.cfg.name]).concat(d.cfg.name).some(function (x) { return x.toLowerCase() == n; })) d.mw.push.apply(d.mw, fns);
    });
    return A;
  }
  // The query-string API: ?ajs_aid= sets the anonymous id, ?ajs_uid= identifies (with ajs_trait_*),
  // ?ajs_event= tracks (with ajs_prop_*). useQueryString: false turns it off; {aid, uid} RegExps
  // restrict the ids taken.
  function queryString(q) {
    var a = D.createElement("a"), P = {}, calls = [], o = opts.useQueryString, pat = isObj(o) ? o : {};
    if (o === false) return Promise.resolve([]);
    a.href = q;
    a.search.slice(1).split("&").forEach(function (kv) {
      var s = kv.split("="), v = s[1];
      try { v = decodeURIComponent(v.replace(/\+/g, " ")); } catch (x) {}
      P[s[0]] = v;
    });
    var pick = function (pre) { var r = {}; for (var k in P) if (k.indexOf(pre) == 0) r[k.slice(pre.length)] = P[k]; return r; };
    if (P.ajs_aid && (pat.aid || /.+/).test(P.ajs_aid)) A.setAnonymousId(P.ajs_aid);
    if (P.ajs_uid && (pat.uid || /.+/).test(P.ajs_uid)) calls.push(A.identify(P.ajs_uid, pick("ajs_trait_")));
    if (P.ajs_event) calls.push(A.track(P.ajs_event, pick("ajs_prop_")));
    return Promise.all(calls);
  }
  // analytics.js's trackLink/trackForm. Our requests are keepalive, so the click or submit goes
  // ahead at once; there is no 300 ms delay to wait for the beacon.
  function bind(els, type, ev, props) {
    if (els) [].slice.call(els.nodeType ? [els] : els).forEach(function (el) {
      el.addEventListener(type, function () {
        A.track(isFn(ev) ? ev(el) : ev, isFn(props) ? props(el) : props).catch(function () {});
      });
    });
    return A;
  }
  function link(els, ev, props) { return bind(els, "click", ev, props); }
  function form(els, ev, props) { return bind(els, "submit", ev, props); }
  // Keyed by the analytics method each one is (core/45-api.js makes them lazy under these names).
  return { trackLink: link, trackClick: link, trackForm: form, trackSubmit: form,
    // analytics.js classic's pageview(url): a page call with that path, resolving to the instance.
    pageview: function (url) { return A.page({ path: url }).then(function () { return A; }); },
    register: register, deregister: deregister, addSourceMiddleware: middleware, addDestinationMiddleware: destMiddleware,
    queryString: queryString };
}
