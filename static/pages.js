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
  var threads = window.kefuThreads, tidy = threads.tidy, viewing = threads.viewing;

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
