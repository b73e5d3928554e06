// Consent gating (docs/consent.md). A destination whose settings list consent_categories loads
// and gets calls only while every one of them is granted. Preferences persist per device in
// localStorage (sb_consent), like the traits. Once the bundle has categorised destinations or
// preferences were ever set here, every event carries context.consent.categoryPreferences with
// each of the bundle's categories (false unless granted); the caller's own context.consent wins.
// A change of preferences is itself recorded, as Segment's consent tools do, as the track event
// "Segment Consent Preference Updated" (stamped with the new preferences) that goes to the
// collector and the warehouse only (integrations All: false, Warehouse: true): the warehouse
// keeps a dated trail of what each visitor agreed to, and no vendor gets an event it has no
// use for.
var CK = "sb_consent", CATS = [];

function consent() {
  var p = {};
  if (DEVICE) CATS.forEach(function (c) { p[c] = false; });   // categories exist only with destinations
  return extend(p, objGet(CK));
}
function setConsent(p) {
  var c = objGet(CK), was = JSON.stringify(consent());
  if (isObj(p)) for (var k in p) if (has(p, k)) c[k] = p[k] === true;
  objSet(CK, c);
  if (DEVICE) applyC();                              // core/32-device.js
  if (JSON.stringify(consent()) != was) track("Segment Consent Preference Updated", {}, { integrations: { All: false, Warehouse: true } });
  return A;
}
