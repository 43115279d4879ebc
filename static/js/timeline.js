/* A task's timeline, live (templates/activity/timeline.html; the fragments of tasks_app/live/fragments.py).
 *
 * - Items pushed for an event arrive on top of #timeline-entries (afterbegin). One already on the
 *   page (a replayed event) replaces its old self instead of coming twice.
 * - The activity log page (data-activity-only) keeps only activity items that match its kind and
 *   search filters (data-filter-kind, data-filter-q: the same fields the server searches are shown
 *   in the item, so the item's text is what is matched).
 * - While the top of the timeline is scrolled out of view, arrivals are counted in the
 *   "N new ↑" pill (#timeline-new); it scrolls back up, and reaching the top clears it. What the
 *   reader looks at stays in place as items are added above it.
 * - "No messages, tool calls or reasoning yet." goes once the first activity item arrives.
 * - <time data-elapsed datetime> ticks every second (a running task or tool call), from the
 *   server's clock (meta[name=server-now]).
 */
(function () {
  "use strict";

  var unseen = 0;
  var atTop = true;

  function timelineList() { return document.getElementById("timeline-entries"); }

  function showPill() {
    var pill = document.getElementById("timeline-new");
    if (!pill) return;
    pill.hidden = unseen === 0;
    var count = pill.querySelector("[data-count]");
    if (count) count.textContent = String(unseen);
    pill.setAttribute("aria-label", unseen + " new " + (unseen === 1 ? "entry" : "entries") + ": back to the newest");
  }

  function watchTop() {
    var top = document.getElementById("timeline-top");
    if (!top || !("IntersectionObserver" in window)) return;
    var margin = topInset();
    new IntersectionObserver(function (entries) {
      atTop = entries[entries.length - 1].isIntersecting;
      if (atTop && unseen) {
        unseen = 0;
        showPill();
      }
    }, { rootMargin: "-" + margin + "px 0px 0px 0px" }).observe(top);
  }

  document.addEventListener("click", function (evt) {
    var pill = evt.target.closest && evt.target.closest("#timeline-new");
    if (!pill) return;
    var top = document.getElementById("timeline-top");
    var panel = top && top.closest("section");
    (panel || top).scrollIntoView({ behavior: "smooth", block: "start" });
  });

  function matchesFilters(item, list) {
    if (list.hasAttribute("data-activity-only") && item.dataset.source !== "activity") return false;
    var kind = list.dataset.filterKind;
    if (kind && item.dataset.kind !== kind) return false;
    var q = list.dataset.filterQ;
    if (q && item.textContent.toLowerCase().indexOf(q) === -1) return false;
    return true;
  }

  document.addEventListener("htmx:oobBeforeSwap", function (evt) {
    var list = evt.detail.target;
    if (!list || list.id !== "timeline-entries" || !evt.detail.fragment) return;
    var arrived = 0;
    Array.prototype.slice.call(evt.detail.fragment.children).forEach(function (item) {
      if (!item.hasAttribute("data-timeline-item") || !matchesFilters(item, list)) {
        item.remove();
        return;
      }
      var old = item.id && document.getElementById(item.id);
      if (old) {
        old.replaceWith(item); // a replayed event: the fresher rendering, where the old one was
        return;
      }
      arrived += 1;
      if (item.dataset.source === "activity" || list.hasAttribute("data-activity-only")) {
        list.querySelectorAll("[data-timeline-empty]").forEach(function (empty) { empty.remove(); });
      }
    });
    if (arrived && !atTop) {
      unseen += arrived;
      showPill();
    }
  });

  // --- Nothing moves under a reader who scrolled away -----------------------------------------
  // A pushed frame may add items above the reader and reflow panels (a header that wraps anew):
  // the first timeline item in view stays where it was on the screen.
  var anchor = null;

  function topInset() {
    var bar = document.querySelector(".topbar");
    return bar && getComputedStyle(bar).position === "sticky" ? bar.offsetHeight : 0;
  }

  document.addEventListener("htmx:wsBeforeMessage", function () {
    anchor = null;
    var list = timelineList();
    if (!list || atTop) return;
    var inset = topInset();
    var items = list.querySelectorAll("[data-timeline-item]");
    for (var i = 0; i < items.length; i++) {
      var top = items[i].getBoundingClientRect().top;
      if (top >= inset) {
        anchor = { el: items[i], top: top };
        return;
      }
    }
  });

  document.addEventListener("htmx:wsAfterMessage", function () {
    if (!anchor) return;
    var el = anchor.el;
    var shift = document.contains(el) ? el.getBoundingClientRect().top - anchor.top : 0;
    anchor = null;
    if (Math.abs(shift) >= 1) window.scrollBy(0, shift);
  });

  // --- Elapsed time ------------------------------------------------------------------------
  var serverMeta = document.querySelector("meta[name=server-now]");
  var skew = serverMeta ? (Date.parse(serverMeta.content) - Date.now()) || 0 : 0;

  function pad(n) { return (n < 10 ? "0" : "") + n; }

  // The same steps as taskdesk.elapsed_text (templatetags/taskdesk.py).
  function elapsedText(seconds) {
    seconds = Math.max(1, Math.floor(seconds));
    if (seconds < 60) return seconds + " s";
    var minutes = Math.floor(seconds / 60);
    if (minutes < 60) return minutes + " m " + pad(seconds % 60) + " s";
    var hours = Math.floor(minutes / 60);
    if (hours < 48) return hours + " h " + pad(minutes % 60) + " m";
    return Math.floor(hours / 24) + " d " + pad(hours % 24) + " h";
  }

  function tickElapsed() {
    var now = Date.now() + skew;
    document.querySelectorAll("time[data-elapsed]").forEach(function (el) {
      var since = Date.parse(el.getAttribute("datetime"));
      if (isNaN(since)) return;
      var text = elapsedText((now - since) / 1000);
      if (el.textContent !== text) el.textContent = text;
    });
  }
  setInterval(tickElapsed, 1000);

  document.addEventListener("DOMContentLoaded", function () {
    watchTop();
    tickElapsed();
  });

  window.taskdeskTimeline = {
    unseen: function () { return unseen; },
    atTop: function () { return atTop; },
  };
})();
