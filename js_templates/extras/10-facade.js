// Shared by the extras chunk and the analytics-next plugin wrapper (plugin.js.j2): analytics-next's
// middleware payload and destination middleware. Plain functions over the event, no core state.
// The payload a middleware gets: analytics-next's Facade (the raw event as `obj`, and one getter
// per Segment field), over a copy, so a middleware that doesn't call next() changed nothing.
function facade(o) {
  var f = { obj: o };
  f.json = f.rawEvent = function () { return f.obj; };
  "type event userId anonymousId timestamp messageId name category groupId previousId properties traits context integrations"
    .split(" ").forEach(function (k, i) { f[k] = function () { return f.obj[k] || (i > 9 ? {} : f.obj[k]); }; });
  f.options = f.context;
  return f;
}

// Destination middleware (addDestinationMiddleware), as analytics-next applies it: each gets a
// facade over a copy; next(payload) passes payload.obj on, next(null) or no next() drops the
// event for this destination only, a throw too (fail closed). Resolves to the event or null.
function destMw(list, e, name) {
  var P = Promise.resolve(e);
  list.forEach(function (fn) {
    P = P.then(function (ev) {
      var out = null;
      return ev && Promise.resolve(fn({ payload: facade(clone(ev)), integration: name, next: function (p) { out = p ? p.obj : null; } }))
        .then(function () { return out; });
    });
  });
  return P;
}

