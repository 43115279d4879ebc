/* Every decision (approve, reject, an answer, an option, dismiss) waits a few seconds before it is
 * sent, with an Undo (inbox and task page).
 *
 * A decision form (form.hitl-form) is intercepted at htmx:confirm: the card shows a countdown and
 * a tray entry offers Undo. When the countdown ends the request is issued as htmx would have;
 * Undo cancels it and nothing reaches the server. A page left during a countdown sends the
 * decision on its way out (fetch keepalive), so a decision the user did not undo is never lost.
 * A decision the server will refuse anyway (a reject without a reason, an edit that is not JSON)
 * is sent at once: the refusal shows in place and nothing is decided. The clicked button's value
 * (approve, reject, respond, dismiss, option:<the option>) rides along as a hidden `action`.
 */
(function () {
  "use strict";
  if (window.taskdeskDecisions) return;

  var SECONDS = 5;
  var queued = []; // {form, action, timer, tick, entry, card, remaining}

  function tray() {
    var box = document.getElementById("undo-tray");
    if (!box) {
      box = document.createElement("div");
      box.id = "undo-tray";
      box.className = "undo-tray";
      box.setAttribute("role", "status");
      box.setAttribute("aria-live", "polite");
      document.body.appendChild(box);
    }
    return box;
  }

  function say(message) {
    var box = document.getElementById("toast");
    if (!box) return;
    box.textContent = message;
    box.hidden = false;
    clearTimeout(say.timer);
    say.timer = setTimeout(function () { box.hidden = true; }, 5000);
  }

  function clickedAction(evt, form) {
    var submitter = evt.detail.triggeringEvent && evt.detail.triggeringEvent.submitter;
    if (submitter && submitter.name === "action") return submitter.value;
    var active = document.activeElement;
    if (active && active.form === form && active.name === "action") return active.value;
    return "";
  }

  function filled(form, name) {
    var field = form.querySelector("[name=" + name + "]");
    return !!(field && field.value.trim());
  }

  function refusedAnyway(form, action) {
    if (action === "reject" && !filled(form, "reason")) return true;
    if (action === "respond" && !filled(form, "answer")) return true;
    // Only an approval or a rejection takes a reason; only a typed response an answer (an option
    // is its own answer): the server says so in place, at once.
    if (action !== "approve" && action !== "reject" && filled(form, "reason")) return true;
    if (action !== "respond" && filled(form, "answer")) return true;
    if (action !== "approve") return false;
    var amend = form.querySelector("details[data-hitl-amend]");
    var editor = form.querySelector("[data-amend-input]");
    if (amend && amend.open && editor && editor.value.trim()) {
      try { JSON.parse(editor.value); } catch (e) { return true; }
    }
    return false;
  }

  function titleOf(card) {
    var link = card && card.querySelector(".hitl-card__task");
    if (link) return link.textContent.trim();
    var question = card && card.querySelector(".hitl-question");
    return question ? question.textContent.trim() : "this request";
  }

  function lock(item, locked) {
    var form = item.form;
    form.querySelectorAll("input[type=text], textarea").forEach(function (el) { el.readOnly = locked; });
    form.querySelectorAll("button[name=action]").forEach(function (el) { el.disabled = locked; });
    var hidden = form.querySelector("input[name=action][type=hidden]");
    if (locked && !hidden) {
      hidden = document.createElement("input");
      hidden.type = "hidden";
      hidden.name = "action";
      form.appendChild(hidden);
    }
    if (hidden) {
      if (locked) hidden.value = item.action;
      else hidden.remove();
    }
    if (item.card) {
      item.card.classList.toggle("is-queued", locked);
      if (locked) item.card.dataset.queued = item.action;
      else delete item.card.dataset.queued;
    }
  }

  // What a queued decision is called while it counts down, and once undone.
  function verbs(action) {
    if (action.indexOf("option:") === 0) return ["Choosing “" + action.slice(7) + "” for", "answered"];
    return {
      approve: ["Approving", "approved"],
      reject: ["Rejecting", "rejected"],
      respond: ["Sending the answer to", "answered"],
      dismiss: ["Dismissing", "dismissed"],
    }[action] || ["Deciding", "decided"];
  }

  function label(item) {
    return verbs(item.action)[0] + " “" + item.title + "” in " + item.remaining + " s";
  }

  function forget(item) {
    clearInterval(item.tick);
    clearTimeout(item.timer);
    if (item.entry) item.entry.remove();
    queued = queued.filter(function (other) { return other !== item; });
  }

  function undo(item) {
    forget(item);
    if (document.contains(item.form)) lock(item, false);
    say("Undone: “" + item.title + "” was not " + verbs(item.action)[1] + ".");
  }

  function send(item) {
    forget(item);
    if (!document.contains(item.form)) {
      // Replaced meanwhile (decided elsewhere or withdrawn): the card on the page says by whom.
      say("“" + item.title + "” changed meanwhile; your decision was not sent.");
      return;
    }
    item.card && item.card.classList.remove("is-queued");
    item.issue(true);
  }

  function queue(form, action, issue) {
    var card = form.closest(".hitl-card");
    var item = { form: form, action: action, issue: issue, card: card, title: titleOf(card), remaining: SECONDS };
    lock(item, true);
    var entry = document.createElement("div");
    entry.className = "undo-entry undo-" + action.split(":")[0];
    entry.dataset.hitlId = card ? card.dataset.hitlId : "";
    var text = document.createElement("span");
    text.className = "undo-text";
    text.textContent = label(item);
    var button = document.createElement("button");
    button.type = "button";
    button.className = "btn btn-small undo-button";
    button.textContent = "Undo";
    button.addEventListener("click", function () { undo(item); });
    entry.appendChild(text);
    entry.appendChild(button);
    tray().appendChild(entry);
    item.entry = entry;
    item.tick = setInterval(function () {
      item.remaining = Math.max(0, item.remaining - 1);
      text.textContent = label(item);
    }, 1000);
    item.timer = setTimeout(function () { send(item); }, SECONDS * 1000);
    queued.push(item);
    return item;
  }

  document.addEventListener("htmx:confirm", function (evt) {
    var form = evt.detail.elt;
    if (!form || !form.matches || !form.matches("form.hitl-form")) return;
    if (form.querySelector("input[name=action][type=hidden]")) {
      evt.preventDefault(); // already counting down
      return;
    }
    var action = clickedAction(evt, form);
    if (!action) return;
    if (refusedAnyway(form, action)) return;
    evt.preventDefault();
    queue(form, action, evt.detail.issueRequest);
  });

  // Leaving the page during a countdown sends what was not undone.
  window.addEventListener("pagehide", function () {
    queued.slice().forEach(function (item) {
      forget(item);
      if (!document.contains(item.form)) return;
      var body = new FormData(item.form);
      body.set("action", item.action);
      fetch(item.form.getAttribute("action"), { method: "POST", body: body, credentials: "same-origin", keepalive: true });
    });
  });

  window.taskdeskDecisions = {
    seconds: SECONDS,
    pending: function () { return queued.length; },
    queuedFor: function (card) { return queued.filter(function (item) { return item.card === card; })[0] || null; },
    verbs: verbs,
    undo: function (card) {
      var item = card ? this.queuedFor(card) : queued[queued.length - 1];
      if (item) undo(item);
      return !!item;
    },
  };
})();
