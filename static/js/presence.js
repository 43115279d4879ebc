// Presence on a task's page, the client half of tasks_app/live/presence.py.
//
// - Beats: while the page's socket is open it says every 3 s, and at once when it changes,
//   which field this person is editing (the panel holding the focused control: status,
//   priority, result, metadata or the decision), or none. Who they are the server knows from
//   the session; the page never says.
// - Notes: the server pushes #presence (the others here, by initials, with data-name and
//   data-editing); this file puts "<name> is editing" at the top of each panel someone edits,
//   as text, and again after any swap of that panel (a pushed event re-renders panels).
(function () {
  "use strict";

  var BEAT_MS = 3000;
  var PANELS = {
    "panel-status": "status",
    "panel-priority": "priority",
    "panel-result": "result",
    "panel-metadata": "metadata",
    "panel-hitl": "decision",
  };
  var editing = null;
  var sent = undefined;

  function fieldOf(element) {
    for (var node = element; node && node !== document; node = node.parentNode) {
      if (node.id && PANELS[node.id]) return PANELS[node.id];
    }
    return null;
  }

  function send(force) {
    if (!window.taskdeskLive) return;
    if (!force && sent === editing) return;
    if (window.taskdeskLive.send(JSON.stringify({ presence: { editing: editing } }))) sent = editing;
  }

  document.addEventListener("focusin", function (evt) {
    if (!evt.target.matches || !evt.target.matches("input, textarea, select")) return;
    editing = fieldOf(evt.target);
    send(false);
  });
  document.addEventListener("focusout", function () {
    // Focus moving within the same panel keeps the field; leaving it ends the note.
    setTimeout(function () {
      var active = document.activeElement;
      editing = active && active.matches && active.matches("input, textarea, select") ? fieldOf(active) : null;
      send(false);
    }, 0);
  });

  document.addEventListener("htmx:wsOpen", function () {
    setTimeout(function () { send(true); }, 0);
  });
  setInterval(function () { send(true); }, BEAT_MS);

  function applyNotes() {
    document.querySelectorAll("[data-presence-note]").forEach(function (note) { note.remove(); });
    var byField = {};
    document.querySelectorAll("#presence [data-editing]").forEach(function (person) {
      var field = person.dataset.editing;
      if (!field) return;
      (byField[field] = byField[field] || []).push(person.dataset.name);
    });
    Object.keys(PANELS).forEach(function (panelId) {
      var names = byField[PANELS[panelId]];
      var panel = document.getElementById(panelId);
      if (!names || !panel) return;
      var note = document.createElement("p");
      note.className = "presence-note";
      note.dataset.presenceNote = "";
      note.setAttribute("role", "status");
      note.textContent = names.join(", ") + (names.length > 1 ? " are" : " is") + " editing this";
      var head = panel.querySelector(".panel-head");
      if (head) head.insertAdjacentElement("afterend", note);
      else panel.prepend(note);
    });
  }

  document.addEventListener("htmx:wsAfterMessage", applyNotes);
  document.addEventListener("htmx:afterSettle", applyNotes);
})();
