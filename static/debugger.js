// The source debugger: Server-Sent Events from the event log, pause/resume, filters, details.
(function () {
  "use strict";
  var config = JSON.parse(document.getElementById("debugger-config").textContent);
  var rows = document.getElementById("event-rows"), status = document.getElementById("stream-status");
  var pauseButton = document.getElementById("pause"), typeFilter = document.getElementById("filter-type");
  var textFilter = document.getElementById("filter-text"), detail = document.getElementById("event-detail");
  var MAX_ROWS = 500, paused = false, held = [], empty = document.getElementById("debugger-empty");

  function cell(text) { var td = document.createElement("td"); td.textContent = text; return td; }
  function when(iso) { return iso.slice(0, 19).replace("T", " ") + " UTC"; }
  function matches(tr) {
    var t = typeFilter.value, q = textFilter.value.trim().toLowerCase();
    return (!t || tr.dataset.type === t) && (!q || tr.dataset.text.indexOf(q) !== -1);
  }
  function filter() { Array.prototype.forEach.call(rows.children, function (tr) { tr.hidden = !matches(tr); }); }
  function addRow(e, fresh) {
    var tr = document.createElement("tr");
    tr.dataset.id = e.id; tr.dataset.type = e.type; tr.tabIndex = 0;
    tr.dataset.text = [e.type, e.name, e.user, e.message_id].join(" ").toLowerCase();
    var badge = document.createElement("span"); badge.className = "badge"; badge.textContent = e.type;
    var typeCell = document.createElement("td"); typeCell.appendChild(badge);
    tr.append(cell(when(e.received_at)), typeCell, cell(e.name), cell(e.user));
    if (fresh) tr.className = "new";
    tr.hidden = !matches(tr);
    rows.insertBefore(tr, rows.firstChild);
    if (empty) empty.hidden = true;
    while (rows.children.length > MAX_ROWS) rows.removeChild(rows.lastChild);
  }
  // Rows rendered by the server get the same search text.
  Array.prototype.forEach.call(rows.children, function (tr) { tr.dataset.text = tr.textContent.toLowerCase(); });

  function show(tr) {
    Array.prototype.forEach.call(rows.querySelectorAll("[aria-selected]"), function (r) { r.removeAttribute("aria-selected"); });
    tr.setAttribute("aria-selected", "true");
    detail.textContent = "Loading…";
    fetch(config.detail + tr.dataset.id, {headers: {Accept: "application/json"}, credentials: "same-origin"})
      .then(function (r) { return r.json(); })
      .then(function (data) {
        detail.textContent = "";
        var h = document.createElement("h2"); h.textContent = data.type + (data.name ? " · " + data.name : "");
        var routedTitle = document.createElement("h3"); routedTitle.textContent = "Routed to";
        var list = document.createElement("ul");
        if (!data.routed_to.length) { var none = document.createElement("li"); none.textContent = "No destinations on this source."; list.appendChild(none); }
        data.routed_to.forEach(function (d) {
          var li = document.createElement("li"), a = document.createElement("a");
          a.href = d.url; a.textContent = d.name;
          var note = " — " + d.reason;
          if (d.delivery) note += "; delivery: " + d.delivery.status + (d.delivery.last_error ? " (" + d.delivery.last_error + ")" : "");
          li.append(d.routed ? "✓ " : "✗ ", a, note);
          list.appendChild(li);
        });
        var jsonTitle = document.createElement("h3"); jsonTitle.textContent = "Event JSON";
        var pre = document.createElement("pre"); pre.className = "code"; pre.id = "event-json";
        pre.textContent = JSON.stringify(data.event, null, 2);
        detail.append(h, routedTitle, list, jsonTitle, pre);
        // On a phone the pane stacks with the table: bring it into view when it is not.
        var top = detail.getBoundingClientRect().top;
        if (top < 0 || top > window.innerHeight * 0.5) detail.scrollIntoView({block: "start"});
      })
      .catch(function () { detail.textContent = "Could not load this event."; });
  }
  rows.addEventListener("click", function (e) { var tr = e.target.closest("tr"); if (tr) show(tr); });
  rows.addEventListener("keydown", function (e) {
    var tr = e.target.closest("tr"); if (!tr) return;
    if (e.key === "Enter" || e.key === " ") { e.preventDefault(); show(tr); }
    if (e.key === "ArrowDown" && tr.nextElementSibling) tr.nextElementSibling.focus();
    if (e.key === "ArrowUp" && tr.previousElementSibling) tr.previousElementSibling.focus();
  });
  typeFilter.addEventListener("change", filter);
  textFilter.addEventListener("input", filter);
  pauseButton.addEventListener("click", function () {
    paused = !paused;
    pauseButton.textContent = paused ? "Resume" : "Pause";
    pauseButton.setAttribute("aria-pressed", String(paused));
    if (!paused) { held.forEach(function (e) { addRow(e, true); }); held = []; }
    status.textContent = paused ? "Paused: new events are held" : "Live";
  });

  var last = 0;
  Array.prototype.forEach.call(rows.children, function (tr) { last = Math.max(last, Number(tr.dataset.id)); });
  var source = new EventSource(config.stream + "?after=" + last);
  source.addEventListener("open", function () { if (!paused) status.textContent = "Live"; });
  source.addEventListener("error", function () { status.textContent = "Reconnecting…"; });
  source.addEventListener("event", function (message) {
    var e = JSON.parse(message.data);
    if (paused) { held.push(e); status.textContent = "Paused: " + held.length + " new event(s) held"; }
    else addRow(e, true);
  });
})();
