// Identity storage compatible with analytics.js / analytics-next, so a site that switches keeps
// its visitors: ajs_anonymous_id and ajs_user_id cookies on the top-level domain (1 year,
// SameSite=Lax, Secure only when asked, as analytics-next) mirrored in localStorage; traits and
// group properties in localStorage only (they can outgrow a cookie). analytics-next's load options
// apply: cookie {domain, path, sameSite, secure, maxage (days)}, user/group {persist, cookie: {key},
// localStorage: {key}} and disableClientPersistence (memory only). keys() runs once at start.
var TLD, MEM = {}, CO = {}, KEY = {}, NOSTORE = {};
function keys(o) {
  CO = o.cookie || {};
  [["ajs_user_id", "ajs_user_traits", o.user], ["ajs_group_id", "ajs_group_properties", o.group]].forEach(function (k, i) {
    var u = k[2] || {};
    KEY[k[0]] = (u.cookie || {}).key || k[0]; KEY[k[1]] = (u.localStorage || {}).key || k[1];
    if (o.disableClientPersistence || u.persist === false) {
      NOSTORE[k[0]] = NOSTORE[k[1]] = 1;
      if (!i) NOSTORE.ajs_anonymous_id = 1;             // the user's ids go together
    }
  });
}
function key(k) { return KEY[k] || k; }

function cookieGet(k) {
  var m = D.cookie.match(new RegExp("(?:^|; )" + k + "=([^;]*)"));
  if (!m) return null;
  var v = m[1];
  try { v = decodeURIComponent(v); } catch (x) {}
  // analytics.js classic wrote JSON ("%22id%22"); analytics-next writes the raw string.
  if (/^["{[]/.test(v)) try { v = JSON.parse(v); } catch (x) {}
  return v;
}
function cookieWrite(k, v, age, dom) {
  D.cookie = k + "=" + v + "; path=" + (CO.path || "/") + "; max-age=" + age + "; SameSite=" + (CO.sameSite || "Lax") +
    (dom ? "; domain=." + dom : "") + (CO.secure ? "; Secure" : "");
}
// The widest domain that accepts a cookie (example.co.uk, not co.uk); "" for hosts/IPs.
function topDomain() {
  if (TLD != null) return TLD;
  var h = location.hostname, p = h.split(".");
  TLD = "";
  if (p.length < 2 || /^[\d.]+$|:/.test(h)) return TLD;
  for (var i = p.length - 2; i >= 0; i--) {
    var d = p.slice(i).join(".");
    cookieWrite("sb_tld", "1", 10, d);
    if (cookieGet("sb_tld")) { cookieWrite("sb_tld", "", 0, d); return TLD = d; }
  }
  return TLD;
}
function cookieSet(k, v) {
  cookieWrite(k, v == null ? "" : encodeURIComponent(v), v == null ? 0 : (CO.maxage || 365) * 86400, CO.domain || topDomain());
}

// id-like values: cookie first (shared across subdomains), then localStorage, then memory.
// Keys kept in memory only (persist: false, disableClientPersistence) never touch cookies or storage.
function idGet(k) {
  var v = NOSTORE[k] ? null : cookieGet(key(k));
  if (v == null || v === "") v = NOSTORE[k] ? null : lsGet(key(k));
  if (v == null) v = MEM[k];
  return v == null ? null : String(v);
}
function idSet(k, v) { MEM[k] = v; if (!NOSTORE[k]) { cookieSet(key(k), v); lsSet(key(k), v); } }
function objGet(k) { var v = NOSTORE[k] ? null : lsGet(key(k)); return isObj(v) ? v : isObj(MEM[k]) ? MEM[k] : {}; }
function objSet(k, v) { MEM[k] = v; if (!NOSTORE[k]) lsSet(key(k), v); }

function anonymousId(v) {
  if (v !== undefined) idSet("ajs_anonymous_id", v);
  var a = idGet("ajs_anonymous_id");
  if (!a) idSet("ajs_anonymous_id", a = uuid());
  return a;
}
// A different user on the same device gets a new anonymous id (analytics-next's User.id()).
function userId(v) {
  var was = idGet("ajs_user_id");
  if (v !== undefined) { idSet("ajs_user_id", v); if (was != null && v != null && v !== was) idSet("ajs_anonymous_id", null); }
  return idGet("ajs_user_id");
}
function uTraits(v) { if (v !== undefined) objSet("ajs_user_traits", v || {}); return objGet("ajs_user_traits"); }
function groupId(v) { if (v !== undefined) idSet("ajs_group_id", v); return idGet("ajs_group_id"); }
function gTraits(v) { if (v !== undefined) objSet("ajs_group_properties", v || {}); return objGet("ajs_group_properties"); }
function clearId() {
  ["ajs_user_id", "ajs_anonymous_id", "ajs_group_id"].forEach(function (k) { idSet(k, null); });
  objSet("ajs_user_traits", null); objSet("ajs_group_properties", null);
}
