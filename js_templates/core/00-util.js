// Small helpers shared by the core, the extras chunk and the analytics-next plugin wrapper.
// The core is minified by esbuild at development time (`make js`: tools/build_js.py renames its
// local names); the chunk and the plugins by rjsmin at build time, which renames nothing, so
// short names still pay there. `DEVICE` (core only) is esbuild's build-time constant: true in the
// variants with device-mode destinations.
var W = window, D = document, LS = null;
// Reading window.localStorage throws where storage is blocked; lsGet/lsSet catch every other failure.
try { LS = W.localStorage; } catch (x) {}

function isObj(v) { return v !== null && typeof v === "object" && !Array.isArray(v); }
function isFn(v) { return typeof v === "function"; }
function has(o, k) { return {}.hasOwnProperty.call(o, k); }
function extend(t) {
  for (var i = 1; i < arguments.length; i++) {
    var s = arguments[i];
    if (s) for (var k in s) if (has(s, k)) t[k] = s[k];
  }
  return t;
}
function clone(v) { return v === undefined ? v : JSON.parse(JSON.stringify(v)); }
function iso(d) { return (d ? new Date(d) : new Date()).toISOString(); }
function uuid() {
  var c = W.crypto;
  if (c && c.randomUUID) return c.randomUUID();
  // A v4 template: each 0 becomes a random hex digit, the 8 (the variant) one of 8, 9, a, b.
  return "00000000-0000-4000-8000-000000000000".replace(/[08]/g, function (x) {
    var r = c && c.getRandomValues ? c.getRandomValues(new Uint8Array(1))[0] : Math.random() * 256;
    return (x ^ r & (x == 8 ? 3 : 15)).toString(16);
  });
}
// localStorage as JSON; every failure (quota, privacy mode, bad JSON) reads as "nothing there".
function lsGet(k) { try { var v = LS && LS.getItem(k); return v == null ? null : JSON.parse(v); } catch (x) { return null; } }
function lsSet(k, v) { try { if (LS) v == null ? LS.removeItem(k) : LS.setItem(k, JSON.stringify(v)); } catch (x) {} }
// Set a dotted path ("context.page.url"), creating objects on the way (analytics-core's dset).
function dset(o, path, v) {
  var p = String(path).split("."), k;
  while (p.length > 1) { k = p.shift(); o = isObj(o[k]) ? o[k] : o[k] = {}; }
  o[p[0]] = v;
}
