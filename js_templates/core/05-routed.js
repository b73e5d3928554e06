// Does a call with integrations option `I` go to a destination answering to `names`?
// (CONTRACT.md §8.) For device-mode loaders (core-device variants, plugin.js.j2) and destination
// plugins (the extras chunk); the core without device-mode destinations doesn't need it.
function routed(names, I) {
  I = I || {};
  for (var i = 0; i < names.length; i++) if (typeof I[names[i]] == "boolean") return I[names[i]];
  return I.All !== false;
}
