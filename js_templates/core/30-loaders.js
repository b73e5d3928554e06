// The device-mode loader runtime (see js_templates/CONTRACT.md). Loader files call
// SB.loader(def); every configured destination becomes a Dest that loads the vendor, queues
// calls until the vendor is loaded, and isolates failures: nothing a loader or vendor does can
// stop the core, another destination, delivery to the collector or ready().
var SB = { defs: {}, loader: function (def) { SB.defs[def.slug] = def; } };
// Runs a destination's middleware (destMw, from the extras chunk or the plugin wrapper) once set.
var MWRUN;

function specKey(n) { return String(n).toLowerCase().replace(/[\s_-]+/g, ""); }
// The loader's handler for a Spec event name: case- and separator-insensitive, and two-word
// names match in either order (Order Completed = order_completed = completed_order).
function specH(def, name) {
  var k = specKey(name), ev = def.events || {};
  for (var key in ev) {
    var w = key.toLowerCase().split(/[\s_-]+/);
    if (w.join("") == k || w.length == 2 && w[1] + w[0] == k) return ev[key];
  }
  return null;
}

// cfg: {id, slug, name, names, settings, mw}; env: {user(), log(), done(dest), timeout}
function Dest(cfg, env) {
  this.cfg = cfg; this.s = cfg.settings || {}; this.def = SB.defs[cfg.slug]; this.env = env;
  this.q = []; this.st = 0; this.mw = cfg.mw || []; // st: 0 loading, 1 loaded, 2 failed
  var me = this;
  this.ctx = {
    id: cfg.id, name: cfg.name, user: env.user, log: env.log,
    loadScript: function (src, attrs) {
      var el = D.createElement("script");
      el.async = true; el.src = src;
      for (var a in attrs || {}) el.setAttribute(a, attrs[a]);
      el.addEventListener("error", function () { me.fail("script blocked or failed: " + src); });
      el.addEventListener("load", function () { me.check(); });
      (D.head || D.documentElement).appendChild(el);
      return el;
    }
  };
}
Dest.prototype = {
  start: function () {
    var me = this;
    if (!this.def) return this.fail("no loader");
    try { this.def.load(this.s, this.ctx); } catch (x) { return this.fail(x); }
    this.timer = setTimeout(function () { me.fail("timed out"); }, this.env.timeout || 10000);
    (function poll() { if (!me.check() && !me.st) me.poll = setTimeout(poll, 50); })();
  },
  check: function () {
    if (this.st) return this.st == 1;
    var ok;
    try { ok = !this.def.loaded || this.def.loaded(this.s, this.ctx); } catch (x) { ok = false; }
    if (!ok) return false;
    this.finish(1);
    var q = this.q; this.q = [];
    for (var i = 0; i < q.length; i++) this.call(q[i]);
    return true;
  },
  fail: function (why) {
    if (this.st) return;
    this.q = [];
    this.finish(2);
    this.env.log("destination failed", this.cfg.name, why);
    emit("error", { type: "destination", name: this.cfg.name, reason: String(why) });
  },
  finish: function (st) {
    this.st = st; clearTimeout(this.timer); clearTimeout(this.poll);
    this.env.done(this);
  },
  // Will this destination take event e? (false once failed, or for a skipped initial page)
  takes: function (e, initial) {
    return this.st != 2 && routed(this.cfg.names || [this.cfg.name], e.integrations) &&
      !(initial && this.s.track_initial_page === false);
  },
  send: function (e) {
    var me = this;
    if (this.cfg.filters && !(e = applyFilters(this.cfg.filters, e))) return; // js_templates/filters.js
    if (!this.mw.length) return this.put(e);
    MWRUN(this.mw, e, this.cfg.name).then(function (e) { if (e) me.put(e); }, function (x) { me.env.log("middleware error", me.cfg.name, x); });
  },
  put: function (e) { if (this.st == 1) this.call(e); else if (!this.st) this.q.push(e); },
  call: function (e) {
    var d = this.def, h = e.type == "track" && specH(d, e.event) || d[e.type];
    if (!h) return;
    try { h.call(d, clone(e), this.s, this.ctx); } catch (x) { this.env.log("destination error", this.cfg.name, x); }
  }
};
