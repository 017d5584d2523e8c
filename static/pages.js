/* kefu pages: the glue htmx does not do by itself. No inline scripts (the CSP forbids
   them); everything is wired by data attributes and delegated listeners. */
(function () {
  "use strict";
  var csrf = function () {
    var m = document.querySelector('meta[name="csrf-token"]');
    return m ? m.content : "";
  };
  var live = function () { return document.getElementById("live"); };
  var role = function () { var l = live(); return l ? l.dataset.role : ""; };
  var viewing = function () {
    var c = document.getElementById("conversation");
    return c && c.dataset.conv ? parseInt(c.dataset.conv, 10) : null;
  };

  /* The extension's default back-off grows to 64 s; a desk must come back within ~8 s. */
  htmx.config.wsReconnectDelay = function (retries) {
    return Math.min(500 * Math.pow(2, retries), 8000) * (0.5 + Math.random() / 2);
  };

  /* Every request names whose page it is (#live's data-person): one from a tab opened
     for someone else, the browser signed in as another person since, is refused (409)
     rather than done as the new one. */
  var guard = function (headers) {
    var l = live();
    headers["X-CSRF-Token"] = csrf();
    if (l && l.dataset.person) headers["X-Kefu-Person"] = l.dataset.person;
    return headers;
  };
  document.addEventListener("htmx:configRequest", function (e) { guard(e.detail.headers); });

  /* -- toasts ------------------------------------------------------------------ */
  function toast(text, stay) { /* stay: until the page is reloaded (nothing works before) */
    var box = document.getElementById("toasts");
    if (!box) return;
    var t = document.createElement("div");
    t.className = "toast";
    t.textContent = text;
    box.appendChild(t);
    if (!stay) setTimeout(function () { t.remove(); }, 5000);
  }
  document.addEventListener("htmx:responseError", function (e) {
    var doc = new DOMParser().parseFromString(e.detail.xhr.responseText || "", "text/html");
    toast((doc.body.textContent || "").trim() || "Something went wrong (" + e.detail.xhr.status + ")");
  });
  document.addEventListener("htmx:sendError", function () { toast("Not connected. Try again in a moment."); });

  /* -- threads: one copy of each message, in order, scrolled to the newest --------- */
  /* A thread holds messages and, on /chat, the customer's earlier conversations above
     the current one, each closed by a "Conversation ended" divider (data-seq 0 of the
     conversation after it): they go in (conversation, seq) order. Anything else (the
     "Load older" button, a hint) stays above them. */
  function threadOrder(a, b) {
    return (+a.dataset.conv - +b.dataset.conv) || (+a.dataset.seq - +b.dataset.seq);
  }
  function inOrder(parent, items, order) {
    var sorted = items.slice().sort(order);
    if (!sorted.some(function (m, i) { return m !== items[i]; })) return;
    var focused = document.activeElement;
    sorted.forEach(function (m) { parent.appendChild(m); });
    /* moving an element takes the keyboard focus from it: give it back */
    if (focused && focused !== document.activeElement && parent.contains(focused)) focused.focus({ preventScroll: true });
  }
  /* The open list, as a reload orders it: newest activity first (a row's <time>).
     Pushes put a row at the top; one handed over may have older activity than those below. */
  function activity(row) {
    var t = row.querySelector("time[datetime]");
    return (t && Date.parse(t.getAttribute("datetime"))) || 0;
  }
  function sortList() {
    var list = document.getElementById("open-list");
    if (!list) return;
    var rows = Array.prototype.filter.call(list.children, function (r) { return r.classList.contains("conv-row"); });
    inOrder(list, rows, function (a, b) { return activity(b) - activity(a); }); /* stable: ties keep their place */
  }
  /* A thread that does not fill its box cannot be scrolled to the top to load more: load
     the page above at once (a new conversation under the earlier ones, a short one). */
  function fill(thread) {
    var btn = thread.querySelector("button.older:not([data-busy])");
    if (!btn || !thread.clientHeight || thread.scrollHeight > thread.clientHeight + 40) return;
    btn.dataset.busy = "1";
    btn.dataset.fill = "1";
    btn.click();
  }
  /* scroll: "newest" shows the newest message (a thread just opened, a message just
     sent); "follow" does so only for a reader who was at the bottom (something arrived);
     "keep" leaves the thread where it is (older messages were added above). */
  function tidy(scroll) {
    var id = viewing();
    /* The layout first: on a phone the conversation pane is hidden until the desk has
       has-conv, and a thread in a hidden pane has no height, so it cannot be scrolled. */
    var desk = document.querySelector(".desk");
    if (desk) desk.classList.toggle("has-conv", !!id);
    document.querySelectorAll(".conv-row").forEach(function (r) {
      r.classList.toggle("active", +r.dataset.conv === id);
    });
    sortList();
    document.body.classList.toggle("no-open", !document.querySelector("#open-list .conv-row"));
    document.querySelectorAll(".thread").forEach(function (thread) {
      var seen = {};
      Array.prototype.forEach.call(thread.querySelectorAll(".msg"), function (m) {
        if (!m.id) return; /* a message still being sent (composer.js) */
        if (seen[m.id]) m.remove(); else seen[m.id] = true;
      });
      var items = Array.prototype.slice.call(thread.querySelectorAll(":scope > .msg, :scope > .conv-divider"));
      inOrder(thread, items, threadOrder);
      if (thread.querySelector(".msg")) { var hint = thread.querySelector(".empty-hint"); if (hint) hint.remove(); }
      /* kefuAway is where the reader was before this change (see the scroll listener):
         measured now, a tall new message would already have pushed the bottom away. */
      if (scroll === "newest" || (scroll === "follow" && !thread.kefuAway)) {
        thread.scrollTop = thread.scrollHeight;
      }
      fill(thread);
    });
  }
  document.addEventListener("htmx:afterSettle", function (e) {
    var elt = e.detail.elt, target = e.detail.target;
    if (elt && elt.classList && elt.classList.contains("older")) {
      /* loaded because the thread was not full: the reader was at its newest message */
      tidy(elt.dataset.fill ? "newest" : "keep");
    } else if (target && target.id === "main") { /* a conversation opened */
      tidy("newest");
      focusOpened();
    } else tidy("follow");
  });
  /* On a phone the list gives way to the conversation opened from it, taking the focus
     of the row that opened it: the conversation's heading takes it (a screen reader
     reads whose it is; Tab goes on into the conversation). A row still shown keeps it. */
  function focusOpened() {
    var el = document.activeElement;
    if (el && el !== document.body && el.getClientRects().length) return;
    var heading = document.querySelector("#conversation .conv-head h2");
    if (!heading || !heading.getClientRects().length) return;
    heading.setAttribute("tabindex", "-1");
    heading.focus({ preventScroll: true });
  }
  document.addEventListener("DOMContentLoaded", function () { tidy("newest"); });

  /* As the reader scrolls, note whether they left the newest messages (more than 120 px
     above the bottom): new messages scroll into view only for a reader who did not.
     Older pages load on click, or when the thread is scrolled to the top. */
  document.addEventListener("scroll", function (e) {
    var t = e.target;
    if (!t.classList || !t.classList.contains("thread")) return;
    t.kefuAway = t.scrollHeight - t.scrollTop - t.clientHeight >= 120;
    if (t.scrollTop < 40) {
      var btn = t.querySelector("button.older:not([data-busy])");
      if (btn) { btn.dataset.busy = "1"; btn.click(); }
    }
  }, true);
  /* A picture has no height until it has loaded, after the thread was scrolled for it:
     a reader who was at the newest message stays there once it has its height. */
  document.addEventListener("load", function (e) {
    var thread = e.target.tagName === "IMG" && e.target.closest(".thread");
    if (thread && !thread.kefuAway) thread.scrollTop = thread.scrollHeight;
  }, true);

  /* The box grows with its text, up to the CSS max-height. */
  function grow(box) {
    box.style.height = "auto";
    box.style.height = box.value ? box.scrollHeight + 2 + "px" : "";
  }

  /* -- the user's chat follows their current conversation --------------------------
     A /chat tab shows the conversation it was loaded with. When the live channel speaks
     of a newer one (started in another tab, or by this tab's first message), its pushes
     name a thread this page does not have: the tab loads the conversation in place,
     keeping what is being typed. Calls made during a load make one more load after it
     (a push may have been dropped, or drawn after the copy being loaded); a load that
     finds the conversation already shown refreshes its header and adds the messages
     missing here, and leaves the composer alone. */
  var chatLoading = null, chatAgain = false;
  function swapIn(el) {
    var here = el && document.getElementById(el.id);
    if (!here) return null;
    el = document.importNode(el, true);
    here.replaceWith(el);
    htmx.process(el);
    return el;
  }
  function loadChat() {
    if (chatLoading) { chatAgain = true; return chatLoading; }
    chatLoading = fetch("/chat", { credentials: "same-origin", cache: "no-store" })
      .then(function (r) { return r.ok ? r.text() : ""; })
      .then(function (html) {
        var doc = new DOMParser().parseFromString(html, "text/html");
        var fresh = doc.getElementById("conversation"), old = document.getElementById("conversation");
        if (!fresh || !old) return; /* signed out, or not the chat page */
        swapIn(doc.getElementById("chat-head"));
        if (fresh.dataset.conv === old.dataset.conv) {
          var thread = old.querySelector(".thread");
          fresh.querySelectorAll(".thread .msg").forEach(function (m) {
            if (!document.getElementById(m.id)) thread.appendChild(document.importNode(m, true));
          });
          tidy("follow");
          return;
        }
        var box = old.querySelector("form[data-composer] textarea");
        var draft = box ? box.value : "", focused = !!box && document.activeElement === box;
        swapIn(fresh);
        var newBox = document.querySelector("#conversation form[data-composer] textarea");
        if (newBox && draft) { newBox.value = draft; grow(newBox); }
        if (newBox && focused) newBox.focus();
        tidy("newest");
      })
      .catch(function (err) { console.error(err); })
      .then(function () {
        chatLoading = null;
        if (chatAgain) { chatAgain = false; return loadChat(); }
      });
    return chatLoading;
  }
  document.addEventListener("kefu-chat-changed", function () { loadChat(); }); /* /chat/new */
  function newerConversation(html) {
    var shown = viewing() || 0, newer = false;
    html.replace(/data-conv="(\d+)"/g, function (all, id) { if (+id > shown) newer = true; return all; });
    return newer;
  }

  document.addEventListener("visibilitychange", function () { if (!document.hidden) markRead(); });

  /* In the background: a failure is nobody's doing, so no toast (htmx.ajax made one); it
     goes again when the live channel is back. */
  var readTimer = null, readAgain = false;
  function markRead() {
    var id = viewing();
    if (!id || document.hidden) return;
    clearTimeout(readTimer);
    readTimer = setTimeout(function () {
      var url = role() === "agent" ? "/agent/c/" + id + "/read" : "/chat/read";
      readAgain = false;
      fetch(url, { method: "POST", credentials: "same-origin", headers: guard({ "HX-Request": "true" }) })
        .then(function (r) { if (!r.ok) readAgain = true; }, function () { readAgain = true; });
    }, 300);
  }

  /* -- the live channel: resync on every (re)connect, visible while reconnecting ---- */
  /* The end of the unbroken run of this conversation's stored messages on the page (the
     thread may show earlier conversations above, on /chat). Not the highest: a message
     sent while only the socket was down is shown with its seq, above what the other
     side wrote meanwhile, and "Sending..." bubbles carry made-up ones. */
  function lastSeq() {
    var id = viewing(), seqs = [];
    if (!id) return 0;
    document.querySelectorAll("#thread-" + id + ' .msg[data-conv="' + id + '"]:not(.pending)').forEach(function (m) {
      if (+m.dataset.seq > 0) seqs.push(+m.dataset.seq);
    });
    seqs.sort(function (a, b) { return a - b; });
    var last = seqs.length ? seqs[0] : 0;
    for (var i = 1; i < seqs.length && seqs[i] <= last + 1; i++) last = seqs[i];
    return last;
  }
  document.addEventListener("htmx:wsOpen", function (e) {
    document.body.classList.remove("offline");
    document.body.dataset.live = "open";
    e.detail.socketWrapper.send(JSON.stringify({ type: "hello", conversation_id: viewing(), after_seq: lastSeq() }));
    if (readAgain) markRead();
  });
  document.addEventListener("htmx:wsClose", function (e) {
    document.body.classList.add("offline");
    document.body.dataset.live = "closed";
    var code = e.detail.event.code;
    if (code === 1008) {
      /* Refused on policy (account disabled, password changed, too slow): a reload
         re-checks the session and shows sign-in if it is gone. */
      setTimeout(function () { location.reload(); }, 1000);
      return;
    }
    if ([1006, 1011, 1012, 1013].indexOf(code) < 0 && live()) {
      /* The extension retries only abnormal closes; a server restart says 1001. The same
         socket wrapper opens a new socket: the page itself is left alone, so threads keep
         their scroll position and the composer its focus and its text. */
      var socket = e.detail.socketWrapper;
      setTimeout(function () { if (live()) socket.reconnect(); }, 1000 + Math.random() * 2000);
    }
  });
  /* -- pushes aimed at what the page does not show ---------------------------------
     A push names its targets by id: a conversation's thread and footer (shown only while
     it is open here), its list row (absent until it first appears). htmx would log
     htmx:oobErrorNoTarget for each absent one; this extension (hx-ext="kefu-live" on the
     socket's element) drops those parts of a pushed frame just before it is swapped, so
     every part whose target is here is applied as before. HTTP answers pass untouched. */
  function presentOnly(html) {
    var tpl = document.createElement("template"), dropped = false;
    tpl.innerHTML = html;
    Array.prototype.slice.call(tpl.content.children).forEach(function (el) {
      var how = el.getAttribute("hx-swap-oob");
      if (how === null) return;
      var colon = how.indexOf(":");
      var selector = colon > 0 ? how.slice(colon + 1) : "#" + CSS.escape(el.id);
      var here = true;
      try { here = !!document.querySelector(selector); } catch (err) { /* htmx's own syntax: let htmx read it */ }
      if (!here) { el.remove(); dropped = true; }
    });
    return dropped ? tpl.innerHTML : html;
  }
  htmx.defineExtension("kefu-live", {
    transformResponse: function (text, xhr) { return xhr ? text : presentOnly(text); }
  });

  /* The frame as the server sent it (the extension may have dropped parts of it by the
     time htmx:wsAfterMessage tells it), and the element that had the keyboard focus: a
     push that replaces it (the Ready switch) gives the focus to its replacement. */
  var frame = "", focusedId = "";
  document.addEventListener("htmx:wsBeforeMessage", function (e) {
    frame = String(e.detail.message || "");
    var el = document.activeElement;
    focusedId = el && el !== document.body && el.id ? el.id : "";
  });

  document.addEventListener("htmx:wsAfterMessage", function () {
    var msg = frame;
    if (focusedId && (!document.activeElement || document.activeElement === document.body)) {
      var again = document.getElementById(focusedId);
      if (again) again.focus({ preventScroll: true });
    }
    tidy("follow");
    /* A push during a load may be newer than what the load brings: load once more. */
    if (role() === "user" && (chatLoading || newerConversation(msg))) loadChat();
    var id = viewing(); /* the other side's message in the open conversation: read */
    if (id && msg.indexOf('class="msg theirs"') >= 0 && msg.indexOf('data-conv="' + id + '"') >= 0) markRead();
  });

  /* What composer.js (the message box) and notices.js share with the rest of the page. */
  window.kefuPages = { csrf: csrf, guard: guard, toast: toast, tidy: tidy, grow: grow, loadChat: loadChat, role: role, viewing: viewing };
})();
