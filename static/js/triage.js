/* Keyboard triage for the HITL inbox: j/k select, a approve, r reject (reason first), t answer (the
   answer field first), 1-9 choose the agent's nth option, d dismiss, e edit payload, u undo, ? help.
   A key acts only on the request the user selected (j/k or a click; the selection is framed and
   announced); with nothing selected a deciding key only says so. When the selected request
   leaves the list (decided here or by a colleague) nothing is selected until j/k or a click, so a
   key never lands on a request the user did not choose. Approve and reject count down with an
   Every decision counts down with an Undo first (static/js/decisions.js).
   Keys are ignored while typing in a field, except Enter in a reason (rejects), Enter in the answer
   (sends it; Shift+Enter is a new line), Ctrl+Enter in the payload editor (approves the edit), and
   Esc (leaves the field). */
(function () {
  "use strict";
  if (window.taskdeskTriage) return;
  window.taskdeskTriage = true;

  var currentId = null;
  var currentIndex = 0;

  function root() { return document.querySelector("[data-triage]"); }
  function cards() { return Array.prototype.slice.call(document.querySelectorAll("#hitl-list [data-hitl-card]")); }

  function typing(el) {
    if (!el) return false;
    var tag = el.tagName;
    return tag === "INPUT" || tag === "TEXTAREA" || tag === "SELECT" || el.isContentEditable;
  }

  function status(message) {
    var box = document.getElementById("triage-status");
    if (box) box.textContent = message;
  }

  function describe(card) {
    var link = card.querySelector(".hitl-card__task");
    return link ? link.textContent.trim() : card.id;
  }

  function select(card, focus) {
    cards().forEach(function (c) {
      var on = c === card;
      c.classList.toggle("is-current", on);
      if (on) c.setAttribute("aria-current", "true");
      else c.removeAttribute("aria-current");
    });
    if (!card) {
      currentId = null;
      status("Nothing selected: j / k or a click selects a request.");
      return;
    }
    currentId = card.id;
    currentIndex = cards().indexOf(card);
    var options = card.querySelectorAll("[data-option]").length;
    var choose = options ? ", 1" + (options > 1 ? "–" + Math.min(options, 9) : "") + " chooses an option" : "";
    status("Selected: " + describe(card) + ". a approves, r rejects, t answers" + choose + ", d dismisses, e edits.");
    if (focus !== false) {
      card.focus({ preventScroll: true });
      card.scrollIntoView({ block: "nearest" });
    }
  }

  // The selected card, only while it is still a pending card on the page.
  function selected() {
    var card = currentId && document.getElementById(currentId);
    return card && cards().indexOf(card) >= 0 ? card : null;
  }

  function move(step) {
    var list = cards();
    if (!list.length) return;
    var card = selected();
    var index = card ? list.indexOf(card) : -1;
    // Nothing selected (yet, or the selection left): start from the place it was.
    if (index < 0) index = step > 0 ? Math.min(currentIndex, list.length) - 1 : Math.min(currentIndex, list.length);
    select(list[Math.max(0, Math.min(list.length - 1, index + step))]);
  }

  function openHelp() {
    var dialog = document.getElementById("triage-help");
    if (dialog && !dialog.open) dialog.showModal();
  }

  function click(card, selector) {
    var el = card && card.querySelector(selector);
    if (el && !el.disabled) el.click();
  }

  function toast(message) {
    var box = document.getElementById("toast");
    if (!box) return;
    box.textContent = message;
    box.hidden = false;
    clearTimeout(toast.timer);
    toast.timer = setTimeout(function () { box.hidden = true; }, 4000);
  }

  document.addEventListener("keydown", function (event) {
    if (!root() || event.defaultPrevented || event.altKey || event.metaKey) return;
    var target = event.target;
    var inCard = target.closest && target.closest("[data-hitl-card]");
    if (typing(target)) {
      if (event.key === "Escape" && inCard) {
        target.blur();
        select(inCard);
      } else if (event.key === "Enter" && inCard && target.matches("[data-reason-input]")) {
        event.preventDefault();
        click(inCard, "[data-reject]");
      } else if (event.key === "Enter" && !event.shiftKey && inCard && target.matches("[data-answer-input]")) {
        event.preventDefault();
        click(inCard, "[data-respond]");
      } else if (event.key === "Enter" && (event.ctrlKey || event.metaKey) && inCard && target.matches("[data-amend-input]")) {
        event.preventDefault();
        click(inCard, "[data-approve]");
      }
      return;
    }
    if (event.ctrlKey) return;
    if (document.querySelector("dialog[open]") && event.key !== "?") return;
    var key = event.key;
    if (key === "j" || key === "k") {
      event.preventDefault();
      move(key === "j" ? 1 : -1);
      return;
    }
    if (key === "?") {
      event.preventDefault();
      openHelp();
      return;
    }
    if (key === "u") {
      event.preventDefault();
      var undone = window.taskdeskDecisions && window.taskdeskDecisions.undo(selected());
      if (!undone) toast("Nothing to undo.");
      return;
    }
    var option = /^[1-9]$/.test(key) ? key : null;
    if (!option && ["a", "r", "t", "e", "d"].indexOf(key) < 0) return;
    event.preventDefault();
    var card = selected();
    if (!card) {
      toast("Select a request first (j / k or a click).");
      status("Nothing selected: j / k or a click selects a request.");
      return;
    }
    if (card.dataset.queued) {
      var verbs = window.taskdeskDecisions ? window.taskdeskDecisions.verbs(card.dataset.queued) : ["Deciding", "decided"];
      toast("This request is already being " + verbs[1] + "; u undoes it.");
      return;
    }
    if (option) {
      var button = card.querySelector('[data-option="' + option + '"]');
      if (button) button.click();
      else toast("This request offers no option " + option + ".");
    } else if (key === "a") {
      click(card, "[data-approve]");
    } else if (key === "d") {
      click(card, "[data-dismiss]");
    } else if (key === "t") {
      var answer = card.querySelector("[data-answer-input]");
      if (answer) answer.focus();
    } else if (key === "r") {
      card.classList.add("is-rejecting");
      var reason = card.querySelector("[data-reason-input]");
      if (reason) reason.focus();
    } else if (key === "e") {
      var amend = card.querySelector("[data-hitl-amend]");
      if (amend) amend.open = true;
      var editor = card.querySelector("[data-amend-input]");
      if (editor) editor.focus();
    }
  });

  document.addEventListener("click", function (event) {
    if (event.target.closest && event.target.closest("[data-triage-help-open]")) openHelp();
    var card = event.target.closest && event.target.closest("#hitl-list [data-hitl-card]");
    if (card && root() && card !== selected()) select(card, false);
  });

  // After a swap (our decision answered, or a pushed one), the frame follows the selection; a
  // selection that left the list is cleared, never moved to a neighbour.
  function resync() {
    if (!root()) return;
    var card = selected();
    if (currentId !== null && !card) select(null);
    else if (card && !card.classList.contains("is-current")) select(card, false);
  }
  document.addEventListener("htmx:afterSettle", resync);
  document.addEventListener("htmx:oobAfterSwap", resync);
  document.addEventListener("DOMContentLoaded", function () { if (root()) select(null); });
})();
