/* The visitor chat inside the widget's iframe. It speaks the ds/kefu visitor actions
   over /ws (bind_fd, visitor_send, visitor_end) like any third-party client would; the
   bubbles themselves come from the server (/visitor/messages), rendered by the same
   partial template as the agent's and the user's pages, so text is escaped there once. */
(function () {
  "use strict";
  var kefuId = parseInt(document.body.dataset.kefuId, 10);
  var thread = document.getElementById("thread");
  var composer = document.getElementById("composer");
  var box = composer.querySelector("textarea");
  var ended = document.getElementById("ended");
  var endBtn = document.getElementById("end-chat");
  var confirmEnd = document.getElementById("end-confirm");
  var presence = document.getElementById("visitor-status");
  var notice = document.getElementById("visitor-notice");
  var ws = null, retry = 0, live = false, lastId = 0, lastConv = null, loading = null, reload = false;
  var noticeTimer = null;

  var outgoing = window.kefuSending, randomId = outgoing.randomHex, newOpId = outgoing.newOpId;
  /* 128 random bits, kept so a return visit sees its history: by the loader (widget.js)
     in the host page's storage, else in ours; storage may be blocked in a third-party
     iframe, and then the id lives as long as the page. An id in the link is taken only
     inside the loader's frame: opened on its own, a link carrying someone else's id
     would have the reader chat in a conversation whose author can read it. */
  var inLoader = false;
  var visitorId = (function () {
    var key = "kefu.visitor_id";
    var given = window.parent !== window && /(?:^#|&)vid=(v_[0-9a-f]{32})(?:&|$)/.exec(location.hash);
    inLoader = !!given;
    if (given) return given[1]; /* kept by the loader in the host page's storage */
    try {
      var id = localStorage.getItem(key);
      if (!id || !/^v_[0-9a-f]{32}$/.test(id)) { id = "v_" + randomId(16); localStorage.setItem(key, id); }
      return id;
    } catch (e) { return "v_" + randomId(16); }
  })();

  /* Errors (a refused message, a failed upload) go to a notice above the box, announced
     politely; it clears on the next message that goes through, or after a while. The
     header's line says whether the agent is around. */
  function say(text) {
    notice.textContent = text || "";
    clearTimeout(noticeTimer);
    if (text) noticeTimer = setTimeout(function () { notice.textContent = ""; }, 8000);
  }

  /* The outbox: what the visitor wrote and the server has not yet stored, oldest first.
     Each message shows at once as a pending bubble, marked "Sending…", and is replaced
     by the server's bubble once stored. Frames leave one at a time, in order, each with
     the op_id made when it was written, so a resend (after a reconnect, or a reload) is
     stored once. A refused message stops the queue: it and those behind it stay in the
     thread marked "Not sent" with a Retry button (a new message retries them too, ahead
     of itself), so nothing typed is lost and the order is kept. The texts are kept for
     this tab (sessionStorage), so a reload during an outage still sends them: in the
     loader's frame by the loader, in the host page's storage (like the visitor id, and
     for the same reason: a third-party frame's own storage is often blocked). */
  var outbox = [], inflight = null;
  var storeKey = "kefu.outbox." + kefuId + "." + visitorId;

  function save() {
    var texts = outbox.filter(function (o) { return o.text != null; })
      .map(function (o) { return { op_id: o.op_id, text: o.text }; });
    if (inLoader) { parent.postMessage({ kefu: "outbox", items: texts }, "*"); return; }
    try {
      if (texts.length) sessionStorage.setItem(storeKey, JSON.stringify(texts));
      else sessionStorage.removeItem(storeKey);
    } catch (e) { /* storage blocked: the outbox lives as long as the page */ }
  }
  function restore(list) {
    if (!Array.isArray(list)) return;
    var added = false;
    list.forEach(function (o) {
      if (!o || typeof o.op_id !== "string" || typeof o.text !== "string" || !o.text) return;
      if (outbox.some(function (x) { return x.op_id === o.op_id; })) return;
      queueText(o.text, o.op_id);
      added = true;
    });
    if (added) { setEnded(false); pump(); }
  }

  function hasReal() { return !!thread.querySelector(".msg:not(.pending)"); }
  function hasUnsent() { return outbox.some(function (o) { return o.text != null; }); }

  function setEnded(isEnded) {
    ended.hidden = !isEnded || hasUnsent();
    endBtn.hidden = isEnded || !hasReal();
  }
  function dropHint() {
    var hint = thread.querySelector(".empty-hint"); if (hint) hint.remove();
  }

  function pendingBubble(o) {
    o.el = outgoing.pendingBubble(o.text);
    showState(o);
    dropHint();
    thread.appendChild(o.el);
  }
  function showState(o) {
    var state = o.el.querySelector(".send-state");
    o.el.classList.toggle("failed", !!o.failed);
    state.textContent = "";
    if (!o.failed) { state.textContent = "Sending…"; return; }
    state.appendChild(document.createTextNode("Not sent "));
    [["Retry", resume], ["Discard", function () { discard(o); }]].forEach(function (b) {
      var button = document.createElement("button");
      button.type = "button";
      button.className = "resend";
      button.textContent = b[0];
      button.addEventListener("click", function () { b[1](); box.focus(); });
      state.appendChild(button);
    });
  }
  /* One refused for good would hold up all behind it, even over a reload: Discard drops
     it, here and from what the tab keeps, and those behind it leave. */
  function discard(o) {
    var first = outbox[0] === o;
    outbox = outbox.filter(function (x) { return x !== o; });
    o.el.remove();
    save();
    if (first) resume();
  }

  function queueText(text, opId) {
    var o = { op_id: opId || newOpId(), text: text };
    outbox.push(o);
    pendingBubble(o);
    save();
    return o;
  }
  /* Retry everything that was refused, in order. */
  function resume() {
    outbox.forEach(function (o) {
      if (o.failed) { o.failed = false; if (o.el) showState(o); }
    });
    pump();
  }
  function pump() {
    if (inflight || !live || !outbox.length || outbox[0].failed) return;
    inflight = outbox[0];
    var data = { visitor_id: visitorId, kefu_id: kefuId };
    if (inflight.text != null) data.content = inflight.text;
    ws.send(JSON.stringify({
      action: inflight.text != null ? "kefu_message_visitor_send" : "kefu_message_visitor_end",
      op_id: inflight.op_id, data: data,
    }));
  }
  function answered(msg) {
    var o = inflight;
    inflight = null;
    if (msg.success) {
      outbox.shift();
      if (o.el) o.el.dataset.messageId = (msg.data && msg.data.message_id) || "";
      say("");
      save();
      refresh();
    } else {
      say(msg.message || "Not sent");
      if (o.text == null) outbox.shift(); /* a refused "end": the conversation stays open */
      else outbox.forEach(function (x) { if (x.text != null) { x.failed = true; showState(x); } });
    }
    pump();
  }

  /* Fetch the bubbles after the newest one shown; coalesce overlapping calls. */
  function refresh() {
    if (loading) { reload = true; return loading; }
    var url = "/visitor/messages?kefu_id=" + kefuId + "&visitor_id=" + encodeURIComponent(visitorId) + "&after=" + lastId;
    loading = fetch(url, { cache: "no-store" }).then(function (r) {
      var open = r.headers.get("X-Kefu-Open");
      var away = r.headers.get("X-Kefu-Away");
      return r.text().then(function (html) {
        if (!r.ok) return;
        presence.textContent = away ? presence.dataset.away : presence.dataset.here;
        var tpl = document.createElement("template");
        tpl.innerHTML = html;
        var fresh = 0, before = thread.querySelector(".msg.pending"); /* pending ones stay last */
        tpl.content.querySelectorAll(".msg").forEach(function (m) {
          if (document.getElementById(m.id)) return;
          if (m.classList.contains("theirs")) fresh += 1;
          /* A return visit shows earlier conversations too: a divider between them. */
          if (lastConv !== null && m.dataset.conv !== lastConv) {
            var divider = document.createElement("p");
            divider.className = "conv-divider";
            divider.innerHTML = "<span>Conversation ended · a new one started</span>";
            thread.insertBefore(divider, before);
          }
          lastConv = m.dataset.conv;
          thread.insertBefore(m, before);
          lastId = Math.max(lastId, +m.dataset.id);
        });
        /* a pending bubble gives way to the stored one */
        thread.querySelectorAll(".msg.pending[data-message-id]").forEach(function (p) {
          if (document.getElementById("msg-" + p.dataset.messageId)) p.remove();
        });
        if (thread.querySelector(".msg")) dropHint();
        setEnded(!open && hasReal());
        thread.scrollTop = thread.scrollHeight;
        /* the loader shows a dot on the bubble if the panel is closed */
        if (fresh && parent !== window) parent.postMessage({ kefu: "unread" }, "*");
      });
    }).catch(function () {}).then(function () {
      loading = null;
      if (reload) { reload = false; refresh(); }
    });
    return loading;
  }

  function connect() {
    var scheme = location.protocol === "https:" ? "wss://" : "ws://";
    ws = new WebSocket(scheme + location.host + "/ws");
    ws.onopen = function () {
      retry = 0;
      live = true;
      document.body.classList.remove("offline");
      document.body.dataset.live = "open";
      ws.send(JSON.stringify({ action: "kefu_message_visitor_bind_fd", data: { bind_key: visitorId } }));
      pump(); /* what was written meanwhile, with the op_ids it was given */
      refresh(); /* whatever arrived while we were away */
    };
    ws.onmessage = function (e) {
      var msg; try { msg = JSON.parse(e.data); } catch (err) { return; }
      if (msg.type === "push_message" && msg.visitor_id === visitorId) {
        if (msg.action === "kefu_visitor_message") refresh();
        if (msg.action === "kefu_visitor_conversation_end") refresh().then(function () { setEnded(true); });
      } else if (inflight && msg.op_id === inflight.op_id && typeof msg.success === "boolean") {
        answered(msg);
      } else if (msg.success === false) {
        say(msg.message);
      }
    };
    ws.onclose = function () {
      live = false;
      inflight = null; /* still first in the outbox: resent with its op_id on reconnect */
      document.body.classList.add("offline");
      document.body.dataset.live = "closed";
      /* Exponential back-off with jitter, capped at 5 s: a chat must come back quickly. */
      retry = Math.min(retry + 1, 6);
      setTimeout(connect, Math.min(250 * Math.pow(2, retry), 5000) * (0.5 + Math.random() / 2));
    };
  }

  /* The server's limit counts characters (code points), maxlength UTF-16 units (an emoji
     is two) and cut a paste without a word: the number is kept, the attribute taken off,
     and a message over it is not sent but said to be too long (as in composer.js). */
  var maxChars = box.maxLength > 0 ? box.maxLength : Infinity, wasOver = false;
  box.removeAttribute("maxlength");
  function tooLong() {
    var why = outgoing.tooLong(box.value.trim(), maxChars), over = !!why;
    if (over || wasOver) say(why);
    wasOver = over;
    box.setAttribute("aria-invalid", String(over));
    return over;
  }
  box.addEventListener("input", tooLong);
  composer.addEventListener("submit", function (e) {
    e.preventDefault();
    var text = box.value.trim();
    if (!text || tooLong()) return;
    queueText(text);
    box.value = "";
    ended.hidden = true;
    thread.scrollTop = thread.scrollHeight;
    resume(); /* a new message retries any refused before it, in order */
  });
  box.addEventListener("keydown", function (e) {
    /* Enter that picks an input method's candidate (Chinese, Japanese) sends nothing:
       Safari ends the composition first and marks that keydown only with keyCode 229. */
    if (e.key === "Enter" && !e.shiftKey && !e.isComposing && e.keyCode !== 229) { e.preventDefault(); composer.requestSubmit(); }
  });
  /* Visitor messages are text (the ds/kefu visitor actions carry no file_url), so an
     uploaded image is sent as its link; the visitor's own view shows it as the picture
     (kefu/web/visitor.py). The file input is hidden; a real button opens it. */
  var attach = document.getElementById("attach");
  document.getElementById("attach-button").addEventListener("click", function () { attach.click(); });
  attach.addEventListener("change", function (e) {
    var input = e.target;
    if (!input.files.length) return;
    var body = new FormData();
    body.append("file", input.files[0]);
    body.append("visitor_id", visitorId);
    fetch("/api/kefu/upload", { method: "POST", body: body, credentials: "omit" })
      .then(function (r) { return r.json(); })
      .then(function (res) {
        input.value = "";
        if (res.code !== 200) { say(res.message); return; }
        queueText(location.origin + res.data.url);
        resume();
      })
      .catch(function () { input.value = ""; say("The image could not be sent; try again"); });
  });

  /* "End chat" asks first, as the dashboard and /chat do, in a modal dialog inside the
     panel (focus moves into it, Escape or "Keep chatting" cancels). */
  endBtn.addEventListener("click", function () {
    confirmEnd.showModal();
    /* (not autofocus: Chromium blocks it in a cross-origin frame, and logs an error on
       every page load) */
    document.getElementById("end-keep").focus();
  });
  document.getElementById("end-keep").addEventListener("click", function () { confirmEnd.close(); });
  confirmEnd.addEventListener("close", function () { if (!endBtn.hidden) endBtn.focus(); });
  document.getElementById("end-yes").addEventListener("click", function () {
    outbox.push({ op_id: newOpId(), text: null }); /* after anything still on its way */
    setEnded(true);
    confirmEnd.close();
    box.focus();
    pump();
  });

  /* The loader (widget.js) says when the panel fills the screen (a phone): its close
     button then sits over the header's right end, and the header makes room for it. It
     also asks for the focus when the panel opens; Escape asks it to close the panel. */
  window.addEventListener("message", function (e) {
    if (e.source !== parent || !e.data) return;
    if (e.data.kefu === "layout") document.body.classList.toggle("full-screen", !!e.data.fullScreen);
    if (e.data.kefu === "focus") box.focus();
    if (e.data.kefu === "outbox" && inLoader) restore(e.data.items); /* kept by the loader (see save) */
  });
  document.addEventListener("keydown", function (e) {
    if (e.key === "Escape" && !confirmEnd.open && parent !== window) {
      parent.postMessage({ kefu: "close" }, "*");
    }
  });

  if (!inLoader) {
    try { restore(JSON.parse(sessionStorage.getItem(storeKey) || "[]")); } catch (e) { /* none */ }
  }
  refresh();
  connect();
})();
