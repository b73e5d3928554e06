// Destination filters in the browser (docs/filters.md). Included in a bundle only when an enabled
// device-mode destination has filters; the server sends each condition already parsed (the JSON
// AST of server/fql.py, through tojson), so this is an evaluator, not a parser, and it follows
// server/fql.py and server/rules.py rule for rule: cloud routing and the browser must agree.
function fqlGet(e, p) {
  for (var i = 0; i < p.length; i++) { if (!isObj(e) || !has(e, p[i])) return undefined; e = e[p[i]]; }
  return e;
}
// JSON equality: a missing field equals null; true is not 1; lists and objects are compared as JSON.
function fqlEq(a, b) {
  if (a === undefined) a = null;
  if (b === undefined) b = null;
  if (typeof a != typeof b) return false;
  return a === null || typeof a != "object" ? a === b : JSON.stringify(a) == JSON.stringify(b);
}
function fqlTruthy(v) { return v !== undefined && v !== null && v !== false && v !== 0 && v !== ""; }
function fqlGlob(p) {
  return new RegExp("^(?:" + p.replace(/[\\^$.*+?()[\]{}|\/]/g, function (c) {
    return c == "*" ? "[\\s\\S]*" : c == "?" ? "[\\s\\S]" : "\\" + c;
  }) + ")$", "u");
}
function fqlEval(n, e) {
  var op = n[0], i, a, b;
  if (op == "lit") return n[1];
  if (op == "path") return fqlGet(e, n[1]);
  if (op == "or") { for (i = 1; i < n.length; i++) if (fqlEval(n[i], e)) return true; return false; }
  if (op == "and") { for (i = 1; i < n.length; i++) if (!fqlEval(n[i], e)) return false; return true; }
  if (op == "not") return !fqlEval(n[1], e);
  if (op == "truthy") return fqlTruthy(fqlEval(n[1], e));
  if (op == "exists") { a = fqlEval(n[1], e); return a !== undefined && a !== null; }
  if (op == "match") { a = fqlEval(n[1], e); return typeof a == "string" && fqlGlob(n[2][1]).test(a); }
  a = fqlEval(n[n.length - 2], e); b = fqlEval(n[n.length - 1], e);
  if (op == "contains") {
    if (typeof a == "string") return typeof b == "string" && a.indexOf(b) >= 0;
    return Array.isArray(a) && a.some(function (x) { return fqlEq(x, b); });
  }
  op = n[1];  // "cmp"
  if (op == "=" || op == "!=") return fqlEq(a, b) == (op == "=");
  if (typeof a != "number" || typeof b != "number") return false;
  return op == "<" ? a < b : op == "<=" ? a <= b : op == ">" ? a > b : a >= b;
}
// 0..9999 from the messageId: FNV-1a over its UTF-16 code units (server/rules.py sample_bucket).
function fqlBucket(m) {
  var h = 0x811c9dc5, s = typeof m == "string" ? m : "";
  for (var i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 0x01000193) >>> 0;
  return h % 10000;
}
// Each root named in fields (properties, traits, context) keeps only the listed paths.
function fqlOnly(e, fields) {
  var roots = {};
  fields.forEach(function (f) {
    var p = f.split("."), r = p[0], src = fqlGet(e[r], p.slice(1)), dst;
    if (!isObj(e[r])) return;
    roots[r] = roots[r] || {};
    if (src === undefined) return;
    dst = roots[r];
    for (var i = 1; i < p.length - 1; i++) dst = dst[p[i]] = isObj(dst[p[i]]) ? dst[p[i]] : {};
    dst[p[p.length - 1]] = src;
  });
  for (var r in roots) e[r] = roots[r];
}
// Run a destination's filters in order: the event to hand to its loader (a copy once changed),
// or null when a filter drops it.
function applyFilters(fs, e) {
  for (var i = 0; i < fs.length; i++) {
    var f = fs[i], hit = fqlEval(f["if"], e);
    if (f.action == "only") { if (!hit) return null; continue; }
    if (!hit) continue;
    if (f.action == "drop" || f.action == "sample" && fqlBucket(e.messageId) >= f.percent * 100) return null;
    if (f.action == "drop_properties") {
      e = clone(e);
      f.fields.forEach(function (p) {
        p = p.split(".");
        var o = fqlGet(e, p.slice(0, -1));
        if (isObj(o)) delete o[p[p.length - 1]];
      });
    } else if (f.action == "allow_properties") { e = clone(e); fqlOnly(e, f.fields); }
  }
  return e;
}
