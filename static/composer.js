/* kefu pages: the message box (agent dashboard and user chat). Enter sends, Shift+Enter
   is a new line; files go through the upload API and are sent like text. Loaded after
   pages.js, whose helpers it uses (window.kefuPages). */
(function () {
  "use strict";
  var pages = window.kefuPages, outgoing = window.kefuSending;
  var csrf = pages.csrf, toast = pages.toast, tidy = pages.tidy, grow = pages.grow;
  /* Whose page this is (#live's data-person): what the tab keeps is kept under it, so the
     next person at a shared computer never finds it, and a page fetched again says
     whether the browser is still signed in as the same person. */
  function personOf(doc) { var live = doc.getElementById("live"); return (live && live.dataset.person) || ""; }
  var me = personOf(document);

  document.addEventListener("keydown", function (e) {
    var form = e.target.closest && e.target.closest("form[data-composer]");
    /* Enter that picks an input method's candidate (Chinese, Japanese) sends nothing:
       Safari ends the composition first and marks that keydown only with keyCode 229. */
    var composing = e.isComposing || e.keyCode === 229;
    if (form && e.target.tagName === "TEXTAREA" && e.key === "Enter" && !e.shiftKey && !composing) {
      e.preventDefault();
      form.requestSubmit();
    }
  });
  document.addEventListener("input", function (e) {
    if (!e.target.matches || !e.target.matches("form[data-composer] textarea")) return;
    grow(e.target);
    tooLong(e.target);
    saveDraft(e.target.form.getAttribute("action"), e.target.value);
  });
  /* The server's limit counts characters (code points); maxlength counts UTF-16 units, so
     an emoji counted two and a paste over the limit was cut without a word. The box keeps
     the server's number in maxlength, for this check, which takes it off before anything
     is typed or dropped in; a message over it is not sent, and a note beside it says why. */
  function limitOf(box) {
    if (box.hasAttribute("maxlength")) { box.dataset.maxChars = box.maxLength; box.removeAttribute("maxlength"); }
    return +box.dataset.maxChars || Infinity;
  }
  ["focusin", "dragenter"].forEach(function (type) {
    document.addEventListener(type, function (e) {
      if (e.target.matches && e.target.matches("form[data-composer] textarea")) limitOf(e.target);
    });
  });
  function tooLong(box) {
    var why = outgoing.tooLong(box.value, limitOf(box)), note = box.form.querySelector(".limit-note");
    if (why) box.setAttribute("aria-invalid", "true"); else box.removeAttribute("aria-invalid");
    if (note) { note.hidden = !why; note.textContent = why; }
    return !!why;
  }

  /* Drafts: what is typed in a conversation's box stays with that conversation. The
     dashboard swaps the whole thread, box included, when the agent opens another one:
     coming back finds the text again, and a send that fails after the switch goes back
     to its own conversation's box. Kept per tab (sessionStorage): a reload keeps them. */
  var DRAFT = "kefu.draft:" + me + ":", KEPT = "kefu.outbox:" + me, forgotten = false;
  function draftOf(url) {
    try { return sessionStorage.getItem(DRAFT + url) || ""; } catch (err) { return ""; }
  }
  function store(key, value) {
    if (forgotten) return; /* signed out: nothing more is kept */
    try {
      if (value) sessionStorage.setItem(key, value); else sessionStorage.removeItem(key);
    } catch (err) { /* storage full or off: kept as long as the page */ }
  }
  function saveDraft(url, text) { store(DRAFT + url, text); }
  /* Signing out (a shared computer) leaves nothing of the person in the tab: kefu's
     drafts and outbox, and htmx's history cache, which holds whole pages (the desk). */
  document.addEventListener("submit", function (e) {
    if (!e.target.matches("form.sign-out")) return;
    forgotten = true;
    try {
      Object.keys(sessionStorage).forEach(function (k) { if (/^(kefu\.|htmx-)/.test(k)) sessionStorage.removeItem(k); });
    } catch (err) { /* storage off: nothing was kept */ }
  });
  function within(root, selector) {
    if (!root || !root.querySelectorAll) return [];
    var found = Array.prototype.slice.call(root.querySelectorAll(selector));
    if (root.matches && root.matches(selector)) found.unshift(root);
    return found;
  }
  function restoreDrafts(root) {
    within(root, "form[data-composer]").forEach(function (form) {
      var box = form.querySelector("textarea"), draft = draftOf(form.getAttribute("action"));
      if (box) limitOf(box);
      if (box && draft && !box.value) { box.value = draft; grow(box); }
    });
    showLeftDrafts(document); /* (/chat's stands outside the footer a push replaces) */
    focusEnded(root);
  }
  htmx.onLoad(restoreDrafts); /* the page itself, and every thread htmx swaps in */

  /* A conversation that ended (the customer ended it, or the agent) while a reply was
     being written: its box is gone, the reply is not. The ended notice shows it, to copy
     from, until discarded (and while a box for it is back, that box holds it). */
  function showLeftDrafts(root) {
    within(root, "[data-left-draft]").forEach(function (left) {
      var url = left.getAttribute("data-left-draft"), text = draftOf(url), box = left.querySelector("textarea, output");
      if (box) box.value = text;
      left.hidden = !text || !!composerFor(url);
    });
  }
  /* Ended under the keyboard (the box gone with it, or the End button, hidden then), a
     conversation would leave the focus on nothing: its ended notice takes it. */
  var focusedConv = null;
  document.addEventListener("focusin", function (e) { focusedConv = e.target.closest && e.target.closest(".conversation"); });
  function focusEnded(root) {
    var ended = within(root, "[data-ended]")[0];
    if (!ended || !focusedConv || !focusedConv.contains(ended)) return;
    requestAnimationFrame(function () {
      var el = document.activeElement;
      if (el && el !== document.body && el.getClientRects().length) return;
      ended.setAttribute("tabindex", "-1");
      ended.focus({ preventScroll: true });
    });
  }
  document.addEventListener("click", function (e) {
    var left = e.target.closest && e.target.closest("[data-left-draft]");
    if (!left || !e.target.closest("[data-discard-draft]")) return;
    saveDraft(left.getAttribute("data-left-draft"), "");
    showLeftDrafts(left);
  });

  /* What is sent is what the box held when the writer pressed Enter: the text is taken
     and the box emptied at once, so the next message can be typed while this one is on
     its way. Sends leave one at a time, in the order they were made. (Plain htmx would
     keep only the last send queued behind one in flight, and read the box only when it
     left.) A send that fails puts its text back in the box, with the ones queued behind
     it. Every message gets an op_id when it is written: sending the same text again
     after a failure reuses it, so a send that was stored although its answer was lost
     is not stored twice. The outbox is kept for the tab (sessionStorage, under the
     person): a reload sends what was still waiting, in order, with the same op_ids. */
  var outbox = [], sending = false, retries = {};
  function keep() {
    store(KEPT, outbox.length ? JSON.stringify(outbox.map(function (i) { return { url: i.url, values: i.values }; })) : "");
  }

  /* A send the network lost (the server restarting, the connection down) is not handed
     back: it and every message written after it wait in the thread as "Sending…"
     bubbles, in order, and leave again when the live channel is back (or every few
     seconds), each with its op_id, so one stored although its answer was lost is stored
     once. (Handed back to the box, the next one typed ran into it: one message of two.) */
  var waiting = false, retryTimer = null;
  function waitForServer() {
    if (!waiting) toast("Not connected: your messages will be sent when the connection is back.");
    waiting = true;
    outbox.forEach(showPending);
    clearTimeout(retryTimer);
    retryTimer = setTimeout(resume, 3000);
  }
  function resume() {
    if (!waiting) return;
    waiting = false;
    clearTimeout(retryTimer);
    pump();
  }
  document.addEventListener("htmx:wsOpen", resume);
  var pendingCount = 0;
  function conversationOf(url) {
    var agent = /\/c\/(\d+)\/send$/.exec(url), form = composerFor(url);
    var conv = form && form.querySelector('input[name="conversation_id"]');
    return agent ? agent[1] : conv && conv.value;
  }
  function showPending(item) {
    var id = conversationOf(item.url), thread = id && document.getElementById("thread-" + id);
    if (item.el || !item.values.content || !thread) return;
    var el = outgoing.pendingBubble(item.values.content);
    el.dataset.conv = id; /* after every stored message (tidy orders a thread by seq) */
    el.dataset.seq = String(9e15 + ++pendingCount);
    thread.appendChild(el);
    item.el = el;
    tidy("newest");
  }
  var newOpId = outgoing.newOpId;
  function composerFor(url) {
    var forms = document.querySelectorAll("form[data-composer]");
    for (var i = 0; i < forms.length; i++) if (forms[i].getAttribute("action") === url) return forms[i];
    return null;
  }
  function queueSend(url, values) {
    var item = { url: url, values: values };
    outbox.push(item);
    keep();
    if (waiting) showPending(item);
    pump();
  }
  document.addEventListener("submit", function (e) {
    var form = e.target;
    if (!form.matches("form[data-composer]")) return;
    e.preventDefault();
    var box = form.querySelector("textarea"), text = box.value, url = form.getAttribute("action");
    box.focus(); /* also after a click on Send */
    if (!text.trim() || tooLong(box)) return;
    var retry = retries[url];
    queueSend(url, { content: text, op_id: retry && retry.text === text ? retry.op_id : newOpId() });
    delete retries[url];
    box.value = "";
    grow(box);
    saveDraft(url, "");
  });

  function pump() {
    if (sending || waiting || !outbox.length) return;
    sending = true;
    var item = outbox[0], body = new URLSearchParams(item.values);
    /* The user's chat names the conversation it shows: read when the send leaves, as the
       first message of a conversation makes the page load it (see loadChat). */
    var form = composerFor(item.url);
    var conv = form && form.querySelector('input[name="conversation_id"]');
    if (conv) body.set("conversation_id", conv.value);
    fetch(item.url, { method: "POST", body: body, credentials: "same-origin",
                      headers: pages.guard({ "HX-Request": "true" }) })
      .then(function (r) { return r.text().then(function (html) { return { r: r, html: html }; }); })
      .then(function (res) {
        if (!res.r.ok) {
          var doc = new DOMParser().parseFromString(res.html, "text/html");
          var why = (doc.body.textContent || "").trim() || "Something went wrong (" + res.r.status + ")";
          if (res.r.status !== 403) return failed(item, why);
          return item.fresh ? failed(item, why + " Reload the page to send it.") : freshToken(item, why);
        }
        outbox.shift();
        keep();
        if (item.el) item.el.remove(); /* the stored bubble takes its place */
        /* "the page showed no (or an old) conversation": the message opened a new one */
        if (res.r.headers.get("HX-Refresh") === "true") return pages.loadChat();
        showSent(res.html);
      }, waitForServer)
      .catch(function (err) { console.error(err); })
      .then(function () { sending = false; pump(); });
  }
  /* A 403: the browser may have signed in again in another tab (an agent's sign-in gives
     the session a new CSRF token, against session fixation). This page fetched again has
     the new token and says whose it now is: for the same person the send goes again,
     once, with it; for someone else nothing is sent, and the text stays in the box. */
  function freshToken(item, why) {
    return fetch(pages.role() === "agent" ? "/agent" : "/chat", { credentials: "same-origin", cache: "no-store" })
      .then(function (r) { return r.text(); })
      .then(function (html) {
        var doc = new DOMParser().parseFromString(html, "text/html"), meta = doc.querySelector('meta[name="csrf-token"]');
        var token = meta ? meta.content : "", who = personOf(doc);
        if (who && who !== me) return failed(item, "You are signed in as someone else here; reload the page.", true);
        if (!who || !token || token === csrf()) return failed(item, why);
        document.querySelector('meta[name="csrf-token"]').content = token;
        document.querySelectorAll('input[name="csrf_token"]').forEach(function (i) { i.value = token; });
        item.fresh = true; /* still first in the outbox: it leaves again */
      }, function () { failed(item, why); });
  }
  /* The answer is the stored message's bubble; the live channel may have brought it first. */
  function showSent(html) {
    var tpl = document.createElement("template");
    tpl.innerHTML = html;
    tpl.content.querySelectorAll(".msg").forEach(function (m) {
      var thread = document.getElementById("thread-" + m.dataset.conv);
      if (thread && !document.getElementById(m.id)) thread.appendChild(m);
    });
    tidy("newest");
  }
  /* The failed send and those queued behind it for the same conversation go back in its
     box (or its draft, if another conversation is shown), in order, before whatever was
     typed since: nothing is lost and nothing jumps the queue. */
  function failed(item, why, stay) {
    var url = item.url, form = composerFor(url), box = form && form.querySelector("textarea");
    var back = outbox.filter(function (i) { return i.url === url; });
    outbox = outbox.filter(function (i) { return i.url !== url; });
    keep();
    back.forEach(function (i) { if (i.el) i.el.remove(); });
    var texts = back.map(function (i) { return i.values.content; }).filter(Boolean);
    toast(texts.length && !box ? why + " The message is back in its conversation's box." : why, stay);
    if (!texts.length) return;
    var typed = box ? box.value : draftOf(url);
    retries[url] = back.length === 1 && !typed ? { text: texts[0], op_id: item.values.op_id } : null;
    var text = texts.concat(typed ? [typed] : []).join("\n");
    saveDraft(url, text);
    if (box) { box.value = text; grow(box); } else showLeftDrafts(document); /* ended meanwhile */
  }

  document.addEventListener("change", function (e) {
    if (!e.target.matches("input[data-upload]") || !e.target.files.length) return;
    var input = e.target, form = input.closest("form");
    var body = new FormData();
    body.append("file", input.files[0]);
    fetch("/api/kefu/upload", { method: "POST", body: body, headers: pages.guard({}), credentials: "same-origin" })
      .then(function (r) { return r.json(); })
      .then(function (res) {
        input.value = "";
        if (res.code !== 200) { toast(res.message || "Upload failed"); return; }
        queueSend(form.getAttribute("action"), { content: "", message_type: res.data.message_type,
                                                 file_url: res.data.url, op_id: newOpId() });
      })
      .catch(function () { input.value = ""; toast("Upload failed"); });
  });

  /* What was still waiting when the page was left (a reload during an outage) goes now. */
  try {
    JSON.parse(sessionStorage.getItem(KEPT) || "[]").forEach(function (i) {
      if (i && typeof i.url === "string" && i.values) outbox.push({ url: i.url, values: i.values });
    });
  } catch (err) { /* none kept */ }
  outbox.forEach(showPending);
  pump();
})();
