// Start-up: take over the snippet's stub (window.analytics or the key named by the script's
// data-global-segment-analytics-key), load the destinations, replay the queued calls in order
// with the page context each call saw; anything a previous page left unsent goes out first.
function start() {
  var script = D.currentScript, key = script && script.getAttribute("data-global-segment-analytics-key") || "analytics";
  var stub = W[key];
  if (stub && stub.initialized) return;               // a second copy of the bundle: keep the first
  var queue = Array.isArray(stub) ? stub.splice(0, stub.length) : [];
  LO = stub && stub._loadOptions || {};
  keys(LO);
  if (LO.disableClientPersistence) NOSTORE[CK] = 1;
  if (LO.initialPageview) queue.unshift(["page"]);
  // context.userAgentData: the low-entropy client hints, or the high-entropy ones the page asked
  // for (events wait for them, as in analytics-next).
  var ua = navigator.userAgentData, hints = LO.highEntropyValuesClientHints;
  if (ua) {
    UAD = ua.toJSON();
    if (hints) UAP = ua.getHighEntropyValues(hints).then(function (v) { UAD = v; }, function () {});
  }
  A._writeKey = C.writeKey; A._loadOptions = LO;
  W[key] = A;
  if (stub) stub.initialized = true;                  // old references forward to A (snippet factory)
  // Listeners, identity overrides and middleware first (as analytics-next), then the calls.
  var first = "on once off debug setAnonymousId addSourceMiddleware addDestinationMiddleware register setConsent".split(" "), initial = true;
  var run = function (c) {
    var m = c[0], args = c.slice(1);
    try {
      if (m == "page" && initial) { initial = false; pageLike("page", args, true); }
      else if (isFn(A[m])) A[m].apply(A, args);
    } catch (x) { log(x); }
  };
  var pick = function (early) { return queue.filter(function (c) { return c && first.indexOf(c[0]) >= 0 == early; }); };
  if (DEVICE) devices();                      // core/32-device.js; those waiting for consent wait
  startT();                                   // earlier pages' unsent events go first
  pick(true).forEach(run);
  emit("initialize", { writeKey: C.writeKey }, LO);
  // ?ajs_uid=…&ajs_event=… (in the search, or after the hash of a hash-routed page) go first; as
  // analytics-next, the page's own calls wait until they are delivered.
  var q = location.search || location.hash.replace(/(?=#).*(?=\?)/, ""), rest = function () { pick(false).forEach(run); readyChk(); };
  if (q.indexOf("ajs_") >= 0 && LO.useQueryString !== false) A.queryString(q).then(rest, rest); else rest();
}
