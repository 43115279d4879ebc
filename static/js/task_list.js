/* The live task list (templates/tasks/task_list.html; what is pushed: tasks_app/live/fragments.py).
 *
 * Nothing moves under the pointer, and the page keeps its rules:
 *  - Default view (no filter, newest first), first page: a new task's row is inserted at the top
 *    and the last row leaves (the page never grows beyond its page size; "Older" then starts at
 *    the row that left). While the pointer is on the table, or the list is paused, new rows are
 *    held and counted ("N new — show"); they go in when the pointer leaves, on Resume or on
 *    "show".
 *  - Any other view (filtered or sorted): the server says, per pushed change, whether the task is
 *    in this view (the list's own filter) and whether the change can move it in the view's sort.
 *    Matches that are new to the page or moved are counted as "N new — show"; "show" loads the
 *    view again from its first page (the filter decides membership, the sort decides position).
 *    Rows on the page are updated in place (marked by the server when they left the view).
 *  - Pause holds every change to the rows (in-place ones too) until Resume.
 *  - A change swapped in while the pointer rests on a row keeps that row where it was on the
 *    screen (the page scrolls by the difference).
 * The list's view (its filters and sort, `data-view` on #task-table) goes to the server when it
 * changes, and with every reconnect, so pushes are judged by the view the page shows.
 * Also here: the phone's "Filters" button, the live total, the view sent with row forms.
 */
(function () {
  "use strict";
  if (window.taskdeskList) return;

  var held = []; // new rows held back (tr elements), oldest first
  var heldChanges = {}; // row id -> newer tr for a row on the page, held while paused
  var news = {}; // row id -> true: tasks new to this view or moved in it
  var paused = false;
  var pointerOn = false; // a mouse pointer rests on the table
  var hoveredRow = null; // id of the row under the mouse pointer
  var anchor = null; // {id, top}: the hovered row's place before a frame swaps
  var judgedView = null; // the view the server judges this page's pushes by

  function table() { return document.getElementById("task-table"); }
  function rows() { return document.getElementById("task-rows"); }
  function view() { var t = table(); return t ? t.dataset.view || "" : ""; }
  function insertsLive() {
    var t = table();
    return !!t && t.dataset.view === "" && t.dataset.firstPage === "1";
  }
  function shown(id) {
    var body = rows();
    var row = body && document.getElementById(id);
    return !!row && body.contains(row);
  }
  function heldIndex(id) {
    for (var i = 0; i < held.length; i++) if (held[i].id === id) return i;
    return -1;
  }
  function count(map) { return Object.keys(map).length; }

  // --- Pushed frames, before htmx swaps them --------------------------------------------------
  function noteNews(marker) {
    var id = marker.dataset.task;
    if (marker.dataset.match !== "1") {
      delete news[id]; // it left the view: nothing new to show for it
      return;
    }
    var filtered = table().dataset.filtered === "1";
    if (marker.dataset.moved === "1" || (filtered && !shown(id))) news[id] = true;
  }

  function installExtension() {
    htmx.defineExtension("live-list", {
      transformResponse: function (text, xhr) {
        if (xhr || !table()) return text;
        var template = document.createElement("template");
        template.innerHTML = text;
        var frame = template.content;
        var changed = false;
        Array.prototype.slice.call(frame.querySelectorAll("template[data-list-news]")).forEach(function (marker) {
          marker.remove();
          changed = true;
          // Judged for another view (the page changed its view a moment ago): not ours to count.
          if (marker.dataset.view === view()) noteNews(marker);
        });
        Array.prototype.slice.call(frame.querySelectorAll('tbody[id^="task-new-"]')).forEach(function (tbody) {
          tbody.remove();
          changed = true;
          var row = tbody.querySelector("tr.task-row");
          if (!row || view() !== "") return; // pushed for the default view; this page shows another
          if (!insertsLive()) {
            news[row.id] = true; // a later page: the first page has it
            return;
          }
          var at = heldIndex(row.id);
          if (at >= 0) held.splice(at, 1);
          held.push(row);
        });
        Array.prototype.slice.call(frame.children).forEach(function (row) {
          if (!row.matches("tr.task-row")) return;
          var at = heldIndex(row.id);
          if (at >= 0) {
            held[at] = row; // a newer state of a row still held
          } else if (paused && shown(row.id) && !document.getElementById(row.id).querySelector("form.inline-edit[data-dirty]")) {
            heldChanges[row.id] = row;
          } else {
            return;
          }
          row.removeAttribute("hx-swap-oob");
          row.remove();
          changed = true;
        });
        return changed ? template.innerHTML : text;
      },
    });
  }

  // --- Applying what was held -----------------------------------------------------------------
  function applyHeld() {
    var body = rows();
    if (!body) return;
    Object.keys(heldChanges).forEach(function (id) {
      var current = document.getElementById(id);
      if (current && body.contains(current)) htmx.swap(current, heldChanges[id].outerHTML, { swapStyle: "outerHTML" });
    });
    heldChanges = {};
    held.forEach(function (row) {
      var current = document.getElementById(row.id);
      if (current) current.remove();
      htmx.swap(body, row.outerHTML, { swapStyle: "afterbegin" });
      var inserted = document.getElementById(row.id);
      if (inserted) {
        inserted.classList.add("is-flash");
        setTimeout(function () { inserted.classList.remove("is-flash"); }, 50);
      }
    });
    held = [];
    var empty = body.querySelector("tr.empty-row");
    if (empty && body.querySelector("tr.task-row")) empty.remove();
    keepPageSize();
    render();
  }

  function flushWhenFree() {
    if (!paused && !pointerOn && (held.length || count(heldChanges))) applyHeld();
  }

  // The page keeps its size: rows pushed past it leave, and "Older" starts at the last row kept.
  function keepPageSize() {
    var t = table();
    var body = rows();
    if (!t || !body) return;
    var size = parseInt(t.dataset.pageSize, 10) || 50;
    var all = body.querySelectorAll("tr.task-row");
    if (all.length > size) {
      for (var i = size; i < all.length; i++) all[i].remove();
      furtherFrom(all[size - 1].dataset.cursor);
    }
    var label = t.querySelector("[data-shown]");
    if (label) label.textContent = Math.min(all.length, size) + " shown";
  }

  function furtherFrom(cursor) {
    var current = document.getElementById("pager-further");
    if (!current || !cursor) return;
    // The list's whole query (its view and its shown columns), continued after the last row.
    var base = table().dataset.listQuery || view();
    var href = "?" + (base ? base + "&" : "") + "after=" + encodeURIComponent(cursor);
    var link = current;
    if (current.tagName !== "A") {
      link = document.createElement("a");
      link.id = "pager-further";
      link.className = "btn";
      link.textContent = current.textContent;
      link.setAttribute("hx-target", "#task-table");
      link.setAttribute("hx-swap", "outerHTML");
      link.setAttribute("hx-push-url", "true");
      current.replaceWith(link);
    }
    link.setAttribute("href", href);
    link.setAttribute("hx-get", href);
    htmx.process(link);
  }

  // --- The bar: total, "N new — show", pause -------------------------------------------------
  function render() {
    var pill = document.getElementById("list-news");
    var waiting = held.length + count(news);
    if (pill) {
      pill.hidden = waiting === 0;
      var label = pill.querySelector("[data-news-count]");
      if (label) label.textContent = waiting + " new";
    }
    var announce = document.getElementById("list-announce");
    var message = waiting ? waiting + (waiting === 1 ? " new task" : " new tasks") + " to show" : "";
    if (announce && announce.textContent !== message) announce.textContent = message;
    var pause = document.getElementById("list-pause");
    if (pause) {
      var holding = held.length + count(heldChanges);
      pause.setAttribute("aria-pressed", paused ? "true" : "false");
      pause.textContent = paused ? "Resume" + (holding ? " (" + holding + " held)" : "") : "Pause";
      pause.classList.toggle("is-paused", paused);
    }
    var t = table();
    if (t) t.classList.toggle("is-holding", paused || (pointerOn && held.length > 0));
    liveTotal();
  }

  // A total the status counters give exactly follows the pushed counts (statuses in the view, or all).
  function liveTotal() {
    var total = document.getElementById("list-total");
    if (!total || !total.hasAttribute("data-live-total")) return;
    var statuses = total.getAttribute("data-live-total").split(" ").filter(Boolean);
    var sum = 0;
    document.querySelectorAll("#status-counts .count[data-status]").forEach(function (chip) {
      if (!statuses.length || statuses.indexOf(chip.dataset.status) >= 0) sum += parseInt(chip.dataset.count, 10) || 0;
    });
    var text = sum.toLocaleString("en-US") + (sum === 1 ? " task" : " tasks");
    if (total.textContent !== text) total.textContent = text;
  }

  document.addEventListener("click", function (evt) {
    var pause = evt.target.closest && evt.target.closest("#list-pause");
    if (!pause) return;
    paused = !paused;
    if (!paused) applyHeld();
    render();
  });

  // "show": held rows go in here; otherwise the link loads the view's first page (htmx).
  document.addEventListener("htmx:confirm", function (evt) {
    if (!evt.detail.elt || evt.detail.elt.id !== "list-news") return;
    if (!held.length && !count(heldChanges)) return;
    evt.preventDefault();
    applyHeld();
  });

  // --- The pointer ------------------------------------------------------------------------------
  document.addEventListener("pointerover", function (evt) {
    if (evt.pointerType !== "mouse") return;
    var inTable = !!(evt.target.closest && evt.target.closest("#task-table table.tasks"));
    var row = inTable ? evt.target.closest("tr.task-row") : null;
    hoveredRow = row ? row.id : null;
    if (inTable !== pointerOn) {
      pointerOn = inTable;
      if (!pointerOn) flushWhenFree();
      render();
    }
  });
  document.documentElement.addEventListener("pointerleave", function () {
    pointerOn = false;
    hoveredRow = null;
    flushWhenFree();
    render();
  });

  document.addEventListener("htmx:wsBeforeMessage", function () {
    var row = pointerOn && hoveredRow && document.getElementById(hoveredRow);
    anchor = row ? { id: hoveredRow, top: row.getBoundingClientRect().top } : null;
  });

  document.addEventListener("htmx:wsAfterMessage", function () {
    flushWhenFree();
    if (anchor) {
      var row = document.getElementById(anchor.id);
      var moved = row ? row.getBoundingClientRect().top - anchor.top : 0;
      if (Math.abs(moved) >= 1) window.scrollBy(0, moved);
      anchor = null;
    }
    render();
  });

  // --- The view: a new table (filters, sort, page) starts afresh and tells the server ---------
  // Each (re)connect carries the view the page shows then; a change while connected is sent.
  function tellView() {
    var current = view();
    if (current !== judgedView && window.taskdeskLive && taskdeskLive.send(JSON.stringify({ view: current }))) {
      judgedView = current;
    }
  }

  function viewChanged() {
    held = [];
    heldChanges = {};
    news = {};
    tellView();
    keepPageSize();
    render();
  }

  document.addEventListener("htmx:afterSettle", function (evt) {
    if (evt.detail.elt && evt.detail.elt.id === "task-table") viewChanged();
  });
  document.addEventListener("htmx:historyRestore", viewChanged);
  // Changed while the socket was being opened with the view before.
  document.addEventListener("htmx:wsOpen", tellView);

  // Row forms say which view their row is shown in (the answer marks a row that left it).
  document.addEventListener("htmx:configRequest", function (evt) {
    var elt = evt.detail.elt;
    if (!elt || !elt.closest || !elt.closest("#task-rows")) return;
    var params = evt.detail.parameters;
    if (params instanceof FormData) params.set("view", view());
    else params.view = view();
  });

  // --- Phones: the filters fold behind one button that says how many are applied ------------
  function appliedFilters() {
    var form = document.getElementById("task-filters");
    var names = {};
    if (form) {
      new FormData(form).forEach(function (value, name) {
        // The sort and the shown columns (saved views' chooser) are not filters.
        if (value !== "" && name !== "sort" && name !== "col" && name !== "cols") {
          names[name.replace(/^updated_(after|before)$/, "updated")] = true;
        }
      });
    }
    var label = document.querySelector("[data-filters-applied]");
    var n = count(names);
    if (label) label.textContent = n ? "· " + n + " applied" : "";
  }

  document.addEventListener("click", function (evt) {
    var toggle = evt.target.closest && evt.target.closest("#filters-toggle");
    if (!toggle) return;
    var open = toggle.getAttribute("aria-expanded") !== "true";
    toggle.setAttribute("aria-expanded", open ? "true" : "false");
    var form = document.getElementById("task-filters");
    if (form) form.classList.toggle("is-open", open);
  });
  document.addEventListener("change", function (evt) {
    if (evt.target.closest && evt.target.closest("#task-filters")) appliedFilters();
  });
  document.addEventListener("input", function (evt) {
    if (evt.target.closest && evt.target.closest("#task-filters")) appliedFilters();
  });

  // For the browser tests and the curious: read-only state.
  window.taskdeskList = {
    held: function () { return held.length + count(heldChanges); },
    news: function () { return count(news); },
    paused: function () { return paused; },
  };

  if (window.htmx) installExtension();
  if (window.taskdeskLive) {
    taskdeskLive.setParam("view", function () {
      judgedView = view();
      return judgedView;
    });
  }
  document.addEventListener("DOMContentLoaded", function () {
    appliedFilters();
    render();
  });
})();
