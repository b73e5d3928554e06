// Small progressive enhancements for the web app; every page works without them.
(function () {
  "use strict";
  // Copy buttons: data-copy names the element whose text is copied.
  document.querySelectorAll("button[data-copy]").forEach(function (button) {
    button.addEventListener("click", function () {
      var element = document.getElementById(button.dataset.copy), status = button.nextElementSibling;
      var fallback = function () {
        // No clipboard API (plain http on a non-local host): select the text for Ctrl+C instead.
        var range = document.createRange(); range.selectNodeContents(element);
        var selection = window.getSelection(); selection.removeAllRanges(); selection.addRange(range);
        status.textContent = "Selected: press Ctrl+C (⌘C) to copy";
      };
      if (!navigator.clipboard) { fallback(); return; }
      navigator.clipboard.writeText(element.textContent).then(function () { status.textContent = "Copied"; }, fallback);
    });
  });
  // Forms that ask before they do something destructive.
  document.querySelectorAll("form[data-confirm]").forEach(function (form) {
    form.addEventListener("submit", function (e) { if (!window.confirm(form.dataset.confirm)) e.preventDefault(); });
  });
  // A select that changes the page (the connection mode on the settings form).
  // "Type the name to confirm": the button stays off until the field matches.
  document.querySelectorAll("input[data-must-equal]").forEach(function (input) {
    var button = input.form.querySelector("button[type=submit]");
    var check = function () { button.disabled = input.value.trim() !== input.dataset.mustEqual; };
    input.addEventListener("input", check); check();
  });
  // Busy state: the button that submitted a form is disabled and says what is happening
  // (data-busy, else "Working…") until the next page arrives, so a slow save is not clicked twice.
  // It is disabled just after the submit event, once the browser has taken its name and value.
  document.addEventListener("submit", function (e) {
    var button = e.submitter, form = e.target;
    if (e.defaultPrevented || !button || form.method.toLowerCase() !== "post") return;
    setTimeout(function () {
      button.disabled = true; button.setAttribute("aria-busy", "true");
      if (!button.children.length) { button.dataset.label = button.textContent; button.textContent = button.dataset.busy || "Working…"; }
    }, 0);
  });
  window.addEventListener("pageshow", function () {
    document.querySelectorAll("button[aria-busy=true]").forEach(function (button) {
      button.disabled = false; button.removeAttribute("aria-busy");
      if (button.dataset.label) button.textContent = button.dataset.label;
    });
  });
  document.querySelectorAll("select[data-autosubmit]").forEach(function (select) {
    select.addEventListener("change", function () { select.form.submit(); });
  });
  // Map widgets: add another empty key/value row.
  document.querySelectorAll("button[data-add-row]").forEach(function (button) {
    button.addEventListener("click", function () {
      var rows = document.querySelector('.map-rows[data-map="' + button.dataset.addRow + '"]');
      var last = rows.lastElementChild, copy = last.cloneNode(true), n = rows.children.length + 1;
      copy.querySelectorAll("input").forEach(function (input, i) {
        input.value = "";
        input.setAttribute("aria-label", input.getAttribute("aria-label").replace(/\d+$/, String(n)));
      });
      rows.appendChild(copy);
      copy.querySelector("input").focus();
    });
  });
  // Catalog: filter tiles by name, alias or keyword as you type, and by category.
  var search = document.getElementById("catalog-search"), category = document.getElementById("catalog-category");
  if (search && category) {
    var tiles = document.querySelectorAll("#catalog-tiles .tile"), count = document.getElementById("catalog-count");
    var apply = function () {
      var q = search.value.trim().toLowerCase(), c = category.value, shown = 0;
      tiles.forEach(function (tile) {
        var ok = (!q || (tile.dataset.search || tile.dataset.name).indexOf(q) !== -1) && (!c || tile.dataset.category === c);
        tile.hidden = !ok; if (ok) shown++;
      });
      count.textContent = shown + " of " + tiles.length + " destinations";
      document.getElementById("catalog-empty").hidden = shown !== 0;
    };
    search.addEventListener("input", apply); category.addEventListener("change", apply);
    var wanted = new URLSearchParams(location.search).get("category");
    if (wanted) category.value = wanted;
    apply();
  }
  // Viewers change nothing: their forms that would change something show disabled (the server
  // refuses such a post anyway, with 403). Sign-out and their own password stay usable.
  if (document.body.dataset.role === "viewer") {
    document.querySelectorAll("form[method=post]").forEach(function (form) {
      if (form.classList.contains("signout") || form.id === "change-password") return;
      form.querySelectorAll("input:not([type=hidden]), select, textarea, button").forEach(function (el) {
        el.disabled = true;
        el.title = "Viewers can't change anything";
      });
    });
  }
})();
