// Delivery to the collector. An event leaves at once; events raised while a request is in
// flight leave together to /b. Every request is a text/plain POST (no CORS preflight) with
// keepalive when it fits the 64 KB keepalive budget; on pagehide, beacons (below).
// Unsent and in-flight events are mirrored in localStorage and resent by the next page; the
// collector dedupes on messageId, so at-least-once is safe.
// WAIT holds, by messageId, what to call once the event's first request has its answer: the
// promise a call returns resolves then (as analytics-next's does after its fetch).
var OUT = [], FLY = [], BUSY = 0, TRIES = 0, TIMER = 0, CHUNK = 64000, KEEP = 200, WAIT = {};

var OUTBOX = "sb_outbox_" + C.writeKey;
function persist() { if (!LO.disableClientPersistence) lsSet(OUTBOX, FLY.concat(OUT).slice(-KEEP)); }
function settle(list, err) {
  list.forEach(function (e) { var f = WAIT[e.messageId]; delete WAIT[e.messageId]; if (f) f(err); });
}
function enqueue(e, done) {
  if (done) WAIT[e.messageId] = done;
  OUT.push(e);
  if (OUT.length > KEEP * 5) OUT.shift();
  persist();
  if (!BUSY && !TIMER) flush();
}
// Take events from the head of OUT up to CHUNK bytes of JSON (at least one event).
function take() {
  var list = [], size = 0;
  while (OUT.length) {
    var n = JSON.stringify(OUT[0]).length + 1;
    if (list.length && size + n > CHUNK) break;
    size += n; list.push(OUT.shift());
  }
  return list;
}
function post(list, done) {
  var one = list.length == 1, body = one ? extend({}, list[0]) : { batch: list };
  body.writeKey = C.writeKey; body.sentAt = iso();
  body = JSON.stringify(body);
  var ok = function (r) { done(r.status, r.headers.get("Retry-After")); }, bad = function () { done(0); };
  try {
    fetch(C.api + "/" + (one ? list[0].type.charAt(0) : "b"), {
      method: "POST", body: body, headers: { "Content-Type": "text/plain" },
      keepalive: body.length < CHUNK, credentials: "omit"
    }).then(ok, bad);
  } catch (x) { setTimeout(bad, 0); }
}
// One request; its outcome decides: success forgets the events, a retryable failure (network
// error, 408, 410, 429, 460, 5xx but 501/505/511) puts them back at the head of the queue and
// backs off (Retry-After on 429), other 4xx drop them.
function send(list) {
  BUSY++; FLY = FLY.concat(list);
  post(list, function (status, after) {
    BUSY--;
    FLY = FLY.filter(function (e) { return list.indexOf(e) < 0; });
    if (status && status < 400) { TRIES = 0; settle(list); }
    else if ((!status || status == 408 || status == 410 || status == 429 || status == 460 ||
        status >= 500 && status != 501 && status != 505 && status != 511) && LO.retryQueue !== false) {
      settle(list);
      OUT = list.concat(OUT);
      persist();
      if (!TIMER) {
        var wait = Math.min(60000, 500 * Math.pow(2, TRIES++)) * (1 + Math.random()), ra = parseFloat(after);
        if (status == 429 && ra >= 0) wait = Math.min(ra, 300) * 1000;
        TIMER = setTimeout(flush, wait);
      }
      return;
    } else {
      settle(list, status);
      emit("error", { type: "delivery", code: "delivery_failure", status: status, events: list });
    }
    persist();
    if (!TIMER) flush();
  });
}
function flush() {
  TIMER = 0;
  if (!BUSY && OUT.length) send(take());
}
// The page is going away. Everything not acknowledged (queued or in flight) leaves as beacons:
// the browser delivers those after the page is gone, while a fetch started now, or one still in
// flight, may be cancelled with the document even with keepalive. The events stay in localStorage
// until acknowledged, so a page restored from the back/forward cache, or the next page, sends them
// again; the collector dedupes on messageId.
function flushAll(e) {
  var keep = OUT, list;
  OUT = e.type == "pagehide" ? FLY.concat(OUT) : OUT.slice();
  while (OUT.length) {
    list = take();
    try { if (navigator.sendBeacon(C.api + "/b", JSON.stringify({ batch: list, writeKey: C.writeKey, sentAt: iso() }))) continue; } catch (x) {}
    post(list, function () {});                       // no beacon (blocked, too big): a keepalive fetch
  }
  OUT = keep;
}
function startT() {
  var saved = lsGet(OUTBOX);
  if (Array.isArray(saved) && saved.length) { OUT = saved.concat(OUT); persist(); flush(); }
  W.addEventListener("pagehide", flushAll);
  // Hidden is the last moment a mobile browser guarantees: what waits in the queue goes too.
  D.addEventListener("visibilitychange", function (e) { if (D.visibilityState == "hidden") flushAll(e); });
  // Back online: what waits for the next backoff step goes now.
  W.addEventListener("online", function () { clearTimeout(TIMER); TRIES = 0; flush(); });
}
