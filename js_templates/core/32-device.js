// The core's side of device-mode destinations (in the bundle only when the source has some:
// tools/build_js.py builds the core with and without them; DEVICE is its build-time constant).
// Each configured destination becomes a Dest (30-loaders.js), gated by consent (35-consent.js).
function devices() {
  var env = {
    user: function () { return { userId: userId(), anonymousId: anonymousId(), traits: uTraits() }; },
    log: log, done: readyChk, timeout: LO.destinationTimeout
  };
  C.destinations.forEach(function (cfg) {
    (cfg.settings.consent_categories || []).forEach(function (c) { if (CATS.indexOf(c) < 0) CATS.push(c); });
    if (routed(cfg.names, LO.integrations)) DESTS.push(new Dest(cfg, env));
  });
  applyC();
}
function granted(d, p) { return (d.s.consent_categories || []).every(function (c) { return isObj(p) && p[c] === true; }); }
// Destinations waiting for consent have w = 1 (ready() does not wait for them); those granted
// now start loading. A started destination stays started: withdrawal is applied per event.
function applyC() {
  var p = consent();
  DESTS.filter(function (d) { return d.w !== 0 && !(d.w = granted(d, p) ? 0 : 1); })
    .forEach(function (d) { d.start(); });
}
// The destinations event e goes to in the browser. They are switched off for the server's
// delivery in `wire`, the copy sent to the collector (CONTRACT.md §9).
function routeTo(e, wire, initial) {
  var p = ((e.context || {}).consent || {}).categoryPreferences, bundled = [];
  var to = DESTS.filter(function (d) { return !d.w && granted(d, p) && d.takes(e, initial); });
  var WI = wire.integrations = wire.integrations || {};
  to.forEach(function (d) { WI[d.cfg.name] = false; bundled.push(d.cfg.name); });
  if (bundled.length) wire._metadata = { bundled: bundled.sort() };
  return to;
}
