// Identity storage compatible with analytics.js / analytics-next, so a site that switches keeps
// its visitors: ajs_anonymous_id and ajs_user_id cookies on the top-level domain (1 year,
// SameSite=Lax, Secure on https) mirrored in localStorage; traits and group properties in
// localStorage only (they can outgrow a cookie).
var TLD, MEM = {};

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
  D.cookie = k + "=" + v + "; path=/; max-age=" + age + "; SameSite=Lax" +
    (dom ? "; domain=." + dom : "") + (location.protocol == "https:" ? "; Secure" : "");
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
  cookieWrite(k, v == null ? "" : encodeURIComponent(v), v == null ? 0 : 31536000, topDomain());
}

// id-like values: cookie first (shared across subdomains), then localStorage, then memory.
function idGet(k) {
  var v = cookieGet(k);
  if (v == null || v === "") v = lsGet(k);
  if (v == null) v = MEM[k];
  return v == null ? null : String(v);
}
function idSet(k, v) { MEM[k] = v; cookieSet(k, v); lsSet(k, v); }
function objGet(k) { var v = lsGet(k); return isObj(v) ? v : isObj(MEM[k]) ? MEM[k] : {}; }
function objSet(k, v) { MEM[k] = v; lsSet(k, v); }

function anonymousId(v) {
  if (v !== undefined) idSet("ajs_anonymous_id", v);
  var a = idGet("ajs_anonymous_id");
  if (!a) idSet("ajs_anonymous_id", a = uuid());
  return a;
}
function userId(v) { if (v !== undefined) idSet("ajs_user_id", v); return idGet("ajs_user_id"); }
function userTraits(v) { if (v !== undefined) objSet("ajs_user_traits", v || {}); return objGet("ajs_user_traits"); }
function groupId(v) { if (v !== undefined) idSet("ajs_group_id", v); return idGet("ajs_group_id"); }
function groupTraits(v) { if (v !== undefined) objSet("ajs_group_properties", v || {}); return objGet("ajs_group_properties"); }
function clearIdentity() {
  ["ajs_user_id", "ajs_anonymous_id", "ajs_group_id"].forEach(function (k) { idSet(k, null); });
  objSet("ajs_user_traits", null); objSet("ajs_group_properties", null);
}
