// The task list's columns chooser and saved views (templates/tasks/saved_views.html).
//
// - Columns: the chooser's checkboxes (name "col", so the form works without JavaScript) are
//   sent as one `cols=a,b` parameter, and not at all while every column is shown, so a list URL
//   (and a saved view) stays short. The table hides the columns the server left out of `cols`.
// - Saved views: after the table is swapped (filters, sort, a page, a view opened), the views'
//   links mark the one being looked at and the menu's forms post the list's current query; both
//   come from the table's data-list-query, the server's canonical form of the list's URL.
(function () {
  "use strict";

  document.addEventListener("htmx:configRequest", function (evt) {
    var elt = evt.detail.elt;
    if (!elt || elt.id !== "task-filters") return;
    var params = evt.detail.parameters;
    var boxes = document.querySelectorAll("[data-columns-chooser] input[type=checkbox][name=col]");
    if (!boxes.length || !(params instanceof FormData)) return;
    var shown = [];
    boxes.forEach(function (box) {
      if (box.checked) shown.push(box.value);
    });
    params.delete("col");
    params.delete("cols");
    if (shown.length < boxes.length) params.append("cols", shown.join(","));
  });

  // The chooser sits beside the title, outside the filter form it belongs to (form=): a box's
  // change does not bubble to the form, so it asks the form to send itself.
  document.addEventListener("change", function (evt) {
    var box = evt.target;
    if (!box.matches || !box.matches("[data-columns-chooser] input[type=checkbox]")) return;
    var form = document.getElementById("task-filters");
    if (form && window.htmx) window.htmx.trigger(form, "submit");
  });

  function syncViews() {
    var table = document.getElementById("task-table");
    var menu = document.getElementById("saved-views");
    if (!table || !menu) return;
    var current = table.dataset.listQuery || "";
    menu.querySelectorAll("[data-view-key]").forEach(function (link) {
      if (link.dataset.viewKey === current) link.setAttribute("aria-current", "page");
      else link.removeAttribute("aria-current");
    });
    menu.querySelectorAll("input[data-list-query]").forEach(function (input) {
      input.value = current;
    });
    var chooser = document.querySelector("[data-columns-chooser]");
    if (chooser) {
      var boxes = chooser.querySelectorAll("input[type=checkbox][name=col]");
      var shown = Array.prototype.filter.call(boxes, function (box) { return box.checked; }).length;
      var label = chooser.querySelector("[data-columns-label]");
      if (label) label.textContent = shown === boxes.length ? "all" : shown + " of " + boxes.length;
    }
  }

  document.addEventListener("htmx:afterSettle", function (evt) {
    var target = evt.detail.target;
    if (target && (target.id === "task-table" || target.id === "saved-views")) syncViews();
  });
  // Back and forward restore the table from htmx's history cache.
  document.addEventListener("htmx:historyRestore", syncViews);
  document.addEventListener("DOMContentLoaded", syncViews);
})();
