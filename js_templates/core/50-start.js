// Start-up: take over the snippet's stub (window.analytics or the key named by the script's
// data-global-segment-analytics-key), load the destinations, replay the queued calls in order
// with the page context each call saw; anything a previous page left unsent goes out first.
function start() {
  var script = D.currentScript, key = script && script.getAttribute("data-global-segment-analytics-key") || "analytics";
  var stub = W[key];
  if (stub && stub.initialized) return;               // a second copy of the bundle: keep the first
  var queue = Array.isArray(stub) ? stub.splice(0, stub.length) : [];
  LOADOPTS = stub && stub._loadOptions || {};
  A._writeKey = C.writeKey; A._loadOptions = LOADOPTS;
  W[key] = A;
  if (stub) stub.initialized = true;                  // old references forward to A (snippet factory)
  var env = {
    user: function () { return { userId: userId(), anonymousId: anonymousId(), traits: userTraits() }; },
    log: log, done: checkReady, timeout: LOADOPTS.destinationTimeout
  };
  C.destinations.forEach(function (cfg) {
    (cfg.settings.consent_categories || []).forEach(function (c) { if (CATS.indexOf(c) < 0) CATS.push(c); });
    if (routed(cfg.names, LOADOPTS.integrations)) DESTS.push(new Dest(cfg, env));
  });
  // Listeners, identity overrides and middleware first (as analytics-next), then the calls.
  var first = ["on", "once", "off", "debug", "setAnonymousId", "addSourceMiddleware", "register", "setConsent"], initial = true;
  var calls = queue.filter(function (c) { return c && first.indexOf(c[0]) >= 0; })
    .concat(queue.filter(function (c) { return c && first.indexOf(c[0]) < 0; }));
  applyConsent();                                     // destinations waiting for consent wait
  startTransport();                                   // earlier pages' unsent events go first
  calls.forEach(function (c) {
    var m = c[0], args = c.slice(1);
    try {
      if (m == "page" && initial) { initial = false; pageLike("page", args, true); }
      else if (isFn(A[m])) A[m].apply(A, args);
    } catch (x) { log(x); }
  });
  checkReady();
}
