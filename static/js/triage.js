/* Keyboard triage for the HITL inbox: j/k move, a approve, r reject (reason first), e edit payload, ? help.
   Keys are ignored while typing in a field, except Enter in a reason (rejects) and Ctrl+Enter in the
   payload editor (approves the edit), and Esc (leaves the field). */
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

  function select(card) {
    cards().forEach(function (c) { c.classList.toggle("is-current", c === card); });
    if (!card) { currentId = null; return; }
    currentId = card.id;
    currentIndex = cards().indexOf(card);
    card.focus({ preventScroll: true });
    card.scrollIntoView({ block: "nearest" });
  }

  function current() {
    var list = cards();
    var card = currentId && document.getElementById(currentId);
    if (card && list.indexOf(card) >= 0) return card;
    // The focused card left (decided here or by a colleague): take the one now at its place.
    return list.length ? list[Math.min(currentIndex, list.length - 1)] : null;
  }

  function move(step) {
    var list = cards();
    if (!list.length) return;
    var card = currentId && document.getElementById(currentId);
    var index = card ? list.indexOf(card) : -1;
    if (index < 0) index = step > 0 ? Math.min(currentIndex, list.length) - 1 : Math.min(currentIndex, list.length);
    select(list[Math.max(0, Math.min(list.length - 1, index + step))]);
  }

  function openHelp() {
    var dialog = document.getElementById("triage-help");
    if (dialog && !dialog.open) dialog.showModal();
  }

  function click(card, selector) {
    var el = card && card.querySelector(selector);
    if (el) el.click();
  }

  document.addEventListener("keydown", function (event) {
    if (!root() || event.defaultPrevented || event.altKey || event.metaKey) return;
    var target = event.target;
    var card = target.closest && target.closest("[data-hitl-card]");
    if (typing(target)) {
      if (event.key === "Escape" && card) {
        target.blur();
        select(card);
      } else if (event.key === "Enter" && card && target.matches("[data-reason-input]")) {
        event.preventDefault();
        click(card, "[data-reject]");
      } else if (event.key === "Enter" && (event.ctrlKey || event.metaKey) && card && target.matches("[data-amend-input]")) {
        event.preventDefault();
        click(card, "[data-approve]");
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
    if (key !== "a" && key !== "r" && key !== "e") return;
    card = card || current();
    if (!card) return;
    event.preventDefault();
    select(card);
    if (key === "a") {
      click(card, "[data-approve]");
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
    var card = event.target.closest && event.target.closest("[data-hitl-card]");
    if (card && root()) {
      currentId = card.id;
      currentIndex = cards().indexOf(card);
    }
  });

  // After a decision (ours or pushed), keep the keyboard on the card now in the same place.
  function refocus() {
    if (!root()) return;
    var active = document.activeElement;
    if (active && active !== document.body && document.contains(active)) return;
    if (currentId === null) return;
    select(current());
  }
  document.addEventListener("htmx:afterSettle", refocus);
  document.addEventListener("htmx:oobAfterSwap", refocus);
})();
