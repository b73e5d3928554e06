// analytics-next's Context: what every call's promise resolves to and what plugins receive, with
// the same methods (@segment/analytics-core's CoreContext), so plugin code written for Segment
// runs unchanged: ctx.event, id, attempts, updateEvent, cancel, log/logs, stats, failedDelivery,
// isSame, toJSON.
function Cancel(o) { this.retry = o.retry !== false; this.type = o.type || "plugin Error"; this.reason = o.reason || ""; }
function Stats() { this.metrics = []; }
function metric(type) {
  return function (m, v, t) { this.metrics.push({ metric: m, value: v == null ? 1 : v, tags: t || [], type: type, timestamp: Date.now() }); };
}
Stats.prototype = {
  increment: metric("counter"), gauge: metric("gauge"), flush: function () { this.metrics = []; }
};
function Ctx(event, id) { this.event = event; this.id = id || uuid(); this.attempts = 0; this.L = []; this.stats = new Stats(); }
Ctx.prototype = {
  isSame: function (o) { return !!o && o.id === this.id; },
  cancel: function (err) { throw err || new Cancel({ reason: "Context Cancel" }); },
  log: function (level, message, extras) { this.L.push({ level: level, message: message, time: new Date(), extras: extras }); },
  logs: function () { return this.L; },
  // A destination switched off in integrations can't be switched back on through its settings.
  updateEvent: function (path, v) {
    var p = path.split("."), I = this.event.integrations;
    if (!(p[0] == "integrations" && I && I[p[1]] === false)) dset(this.event, path, v);
    return this.event;
  },
  failedDelivery: function () { return this.F; },
  setFailedDelivery: function (o) { this.F = o; },
  flush: function () { this.L = []; this.stats.flush(); },
  toJSON: function () { return { id: this.id, event: this.event, logs: this.L, metrics: this.stats.metrics }; }
};
