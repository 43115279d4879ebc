/* Bulk actions on the task list (templates/tasks/task_list.html#bulk-bar, tasks_app/views/bulk.py).
 *
 * The selection lives here, not in the rows: rows are replaced whole by live pushes (a websocket's
 * out-of-band <tr>), by a row's own form and by held rows going in, so after every change to the
 * page's DOM the row checkboxes are set again from the selection (a MutationObserver: before the
 * browser paints, whichever road the row came by). A selection is the rows picked (their ids), or
 * "all N matching this filter" (the list's view, resolved by the server with the list's own
 * filter); it holds while the view stays the same (paging, "show", pushes) and is dropped when
 * the view changes.
 *
 * An act (stop, cancel, retry, set priority, set a metadata key) first asks the server for a
 * preview in the #bulk-dialog (how many change, how many are refused and why); its confirm starts
 * the action in the background and the dialog shows its progress (polled), then its summary.
 */
(function () {
  "use strict";
  if (window.taskdeskBulk) return;

  var selected = new Set(); // row ids (task pks, as strings)
  var all = false; // every task of the view, whatever the page shows
  var viewKey = null; // the view the selection belongs to

  function table() { return document.getElementById("task-table"); }
  function bar() { return document.getElementById("bulk-bar"); }
  function boxes() { return Array.prototype.slice.call(document.querySelectorAll("#task-rows input.row-select")); }
  function currentView() { var t = table(); return t ? t.dataset.view || "" : ""; }

  function sync() {
    if (currentView() !== viewKey) {
      // Another view (filters, sort, a history restore): the selection was of the one before.
      viewKey = currentView();
      selected.clear();
      all = false;
    }
    var rows = boxes();
    var checked = 0;
    rows.forEach(function (box) {
      var on = all || selected.has(box.value);
      if (box.checked !== on) box.checked = on;
      if (on) checked++;
    });
    var page = document.getElementById("bulk-page");
    if (page) {
      page.checked = rows.length > 0 && checked === rows.length;
      page.indeterminate = checked > 0 && checked < rows.length;
    }
    render(rows.length);
  }

  function render(onPage) {
    var b = bar();
    if (!b) return;
    var total = parseInt(b.dataset.total, 10) || 0;
    var exact = b.dataset.totalExact === "1";
    var any = all || selected.size > 0;
    b.hidden = !any;
    var count = b.querySelector("[data-bulk-count]");
    if (count) {
      var text = all
        ? "All " + total.toLocaleString("en-US") + (exact ? "" : "+") + " matching selected"
        : selected.size.toLocaleString("en-US") + " selected";
      if (count.textContent !== text) count.textContent = text;
    }
    var more = b.querySelector("[data-bulk-all]");
    if (more) more.hidden = all || !any || total <= onPage;
    var form = document.getElementById("bulk-selection");
    if (form) {
      form.querySelector("[name=ids]").value = all ? "" : Array.from(selected).join(",");
      form.querySelector("[name=all]").value = all ? "1" : "";
    }
    var t = table();
    if (t) t.classList.toggle("has-selection", any);
  }

  function clear() {
    selected.clear();
    all = false;
    sync();
  }

  document.addEventListener("change", function (evt) {
    var target = evt.target;
    if (target.matches && target.matches("input.row-select")) {
      if (all) {
        // Leaving "all matching": what stays picked is what the page shows checked.
        all = false;
        selected.clear();
        boxes().forEach(function (box) { if (box !== target) selected.add(box.value); });
      }
      if (target.checked) selected.add(target.value);
      else selected.delete(target.value);
      sync();
    } else if (target.id === "bulk-page") {
      if (all && !target.checked) {
        clear();
        return;
      }
      boxes().forEach(function (box) {
        if (target.checked) selected.add(box.value);
        else selected.delete(box.value);
      });
      sync();
    }
  });

  document.addEventListener("click", function (evt) {
    var el = evt.target.closest && evt.target.closest("[data-bulk-all], [data-bulk-clear], [data-bulk-close]");
    if (!el) return;
    if (el.hasAttribute("data-bulk-all")) {
      all = true;
      sync();
    } else if (el.hasAttribute("data-bulk-clear")) {
      clear();
    } else {
      var dialog = document.getElementById("bulk-dialog");
      if (dialog && dialog.contains(el) && dialog.open) dialog.close();
    }
  });

  // --- The dialog: preview, then progress and summary -----------------------------------------
  document.addEventListener("htmx:afterSwap", function (evt) {
    var body = document.getElementById("bulk-dialog-body");
    if (!body || evt.detail.target !== body) return;
    var dialog = document.getElementById("bulk-dialog");
    if (!dialog.open) dialog.showModal();
    if (body.querySelector("[data-bulk-started]")) clear(); // the action runs: its selection is frozen
    var first = body.querySelector("#bulk-reason, [data-bulk-confirm], [data-bulk-close]");
    if (first) first.focus();
    document.querySelectorAll("details.bulk-set[open]").forEach(function (details) { details.open = false; });
  });

  function closed() {
    var dialog = document.getElementById("bulk-dialog");
    var body = document.getElementById("bulk-dialog-body");
    if (!dialog || !body) return;
    var running = body.querySelector("[data-bulk-action]:not([data-state=finished]):not([data-state=canceled]):not([data-state=stopped])");
    var link = document.querySelector("a.bulk-recent");
    if (running && link) {
      // It goes on in the background: keep a way back to its progress.
      link.href = "/bulk/" + running.dataset.bulkAction + "/";
      link.textContent = "Bulk action #" + running.dataset.bulkAction + " running…";
    }
    body.innerHTML = ""; // stops the progress polling
  }

  function watch() {
    var dialog = document.getElementById("bulk-dialog");
    if (dialog) dialog.addEventListener("close", closed);
    viewKey = currentView();
    var main = document.getElementById("main") || document.body;
    new MutationObserver(function (records) {
      for (var i = 0; i < records.length; i++) {
        if (records[i].addedNodes.length) {
          sync();
          return;
        }
      }
    }).observe(main, { childList: true, subtree: true });
    sync();
  }

  window.taskdeskBulk = {
    selected: function () { return all ? "all" : Array.from(selected); },
    clear: clear,
  };

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", watch);
  else watch();
})();
