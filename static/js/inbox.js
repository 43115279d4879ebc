/* The HITL inbox's live list keeps the view's rules (templates/approvals/inbox.html).
 *
 * A request pushed over the websocket arrives as a card appended to #hitl-list. Before it lands:
 * a card already on the page is not added twice, and a card the list's filters exclude (agent,
 * organization, deadline window: data-filter-* on the list) is dropped. After it lands, on a list
 * sorted by deadline (data-sort="deadline") it moves to its place: soonest deadline first, none
 * last, ties by request time (what the server's order does). Cards carry data-agent, data-org,
 * data-requested and data-deadline (ISO times) for this.
 */
(function () {
  "use strict";
  if (window.taskdeskInbox) return;

  var arriving = [];

  function time(value) {
    return value ? Date.parse(value) : null;
  }

  function matches(card, list) {
    var filter = list.dataset;
    if (filter.filterAgent && card.dataset.agent !== filter.filterAgent) return false;
    if (filter.filterOrg && card.dataset.org !== filter.filterOrg) return false;
    var due = filter.filterDue;
    if (!due) return true;
    var deadline = time(card.dataset.deadline);
    if (due === "none") return deadline === null;
    if (deadline === null) return false;
    var now = Date.now();
    if (due === "overdue") return deadline <= now;
    var hours = due === "1h" ? 1 : 24;
    return deadline > now && deadline <= now + hours * 3600 * 1000;
  }

  // Deadline order: [has no deadline, deadline, requested at]; a smaller key comes first.
  function before(a, b) {
    var da = time(a.dataset.deadline), db = time(b.dataset.deadline);
    if ((da === null) !== (db === null)) return db === null;
    if (da !== null && da !== db) return da < db;
    return time(a.dataset.requested) < time(b.dataset.requested);
  }

  function place(card, list) {
    var cards = list.querySelectorAll("[data-hitl-card]");
    for (var i = 0; i < cards.length; i++) {
      if (cards[i] !== card && before(card, cards[i])) {
        list.insertBefore(card, cards[i]);
        return;
      }
    }
    var empty = list.querySelector(".hitl-empty");
    list.insertBefore(card, empty);
  }

  document.addEventListener("htmx:oobBeforeSwap", function (evt) {
    var list = evt.detail.target;
    if (!list || list.id !== "hitl-list") return;
    evt.detail.fragment.querySelectorAll("[data-hitl-card]").forEach(function (card) {
      if (document.getElementById(card.id) || !matches(card, list)) card.remove();
      else arriving.push(card.id);
    });
  });

  document.addEventListener("htmx:oobAfterSwap", function (evt) {
    var list = evt.detail.target;
    if (!list || list.id !== "hitl-list") return;
    var ids = arriving;
    arriving = [];
    if (list.dataset.sort !== "deadline") return;
    ids.forEach(function (id) {
      var card = document.getElementById(id);
      if (card && card.parentNode === list) place(card, list);
    });
  });

  window.taskdeskInbox = { matches: matches };
})();
