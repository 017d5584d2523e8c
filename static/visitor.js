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
  var ws = null, retry = 0, pending = [], lastId = 0, loading = null, reload = false;

  function randomId(bytes) {
    var a = new Uint8Array(bytes);
    crypto.getRandomValues(a);
    return Array.prototype.map.call(a, function (b) { return ("0" + b.toString(16)).slice(-2); }).join("");
  }
  /* Time first (8 base-36 digits of milliseconds, in order until 2059), then random: a
     resend repeats it, two tabs never share it, and the server's op_id index gets each
     commit's new entries side by side (see migrations/005). */
  function newOpId() {
    return Date.now().toString(36).padStart(8, "0") + "-" + randomId(4);
  }
  /* 128 random bits, kept so a return visit sees its history: by the loader (widget.js)
     in the host page's storage, else in ours; storage may be blocked in a third-party
     iframe, and then the id lives as long as the page. An id in the link is taken only
     inside the loader's frame: opened on its own, a link carrying someone else's id
     would have the reader chat in a conversation whose author can read it. */
  var visitorId = (function () {
    var key = "kefu.visitor_id";
    var given = window.parent !== window && /(?:^#|&)vid=(v_[0-9a-f]{32})(?:&|$)/.exec(location.hash);
    if (given) return given[1]; /* kept by the loader in the host page's storage */
    try {
      var id = localStorage.getItem(key);
      if (!id || !/^v_[0-9a-f]{32}$/.test(id)) { id = "v_" + randomId(16); localStorage.setItem(key, id); }
      return id;
    } catch (e) { return "v_" + randomId(16); }
  })();

  function setEnded(isEnded) {
    ended.hidden = !isEnded;
    endBtn.hidden = isEnded || !thread.querySelector(".msg");
  }

  /* Fetch the bubbles after the newest one shown; coalesce overlapping calls. */
  function refresh() {
    if (loading) { reload = true; return loading; }
    var url = "/visitor/messages?kefu_id=" + kefuId + "&visitor_id=" + encodeURIComponent(visitorId) + "&after=" + lastId;
    loading = fetch(url, { cache: "no-store" }).then(function (r) {
      var open = r.headers.get("X-Kefu-Open");
      return r.text().then(function (html) {
        if (!r.ok) return;
        var tpl = document.createElement("template");
        tpl.innerHTML = html;
        var fresh = 0;
        tpl.content.querySelectorAll(".msg").forEach(function (m) {
          if (document.getElementById(m.id)) return;
          if (m.classList.contains("theirs")) fresh += 1;
          thread.appendChild(m);
          lastId = Math.max(lastId, +m.dataset.id);
        });
        if (thread.querySelector(".msg")) {
          var hint = thread.querySelector(".empty-hint"); if (hint) hint.remove();
        }
        setEnded(!open && !!thread.querySelector(".msg"));
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

  function send(frame) {
    if (ws && ws.readyState === 1) ws.send(JSON.stringify(frame));
    else pending.push(frame); /* op_id makes a resend after reconnect harmless */
  }

  function connect() {
    var scheme = location.protocol === "https:" ? "wss://" : "ws://";
    ws = new WebSocket(scheme + location.host + "/ws");
    ws.onopen = function () {
      retry = 0;
      document.body.classList.remove("offline");
      document.body.dataset.live = "open";
      ws.send(JSON.stringify({ action: "kefu_message_visitor_bind_fd", data: { bind_key: visitorId } }));
      var queued = pending; pending = [];
      queued.forEach(function (f) { ws.send(JSON.stringify(f)); });
      refresh(); /* whatever arrived while we were away */
    };
    ws.onmessage = function (e) {
      var msg; try { msg = JSON.parse(e.data); } catch (err) { return; }
      if (msg.type === "push_message" && msg.visitor_id === visitorId) {
        if (msg.action === "kefu_visitor_message") refresh();
        if (msg.action === "kefu_visitor_conversation_end") refresh().then(function () { setEnded(true); });
      } else if (msg.success === true && msg.data && msg.data.message_id) {
        refresh();
      } else if (msg.success === false) {
        document.getElementById("visitor-status").textContent = msg.message;
      }
    };
    ws.onclose = function () {
      document.body.classList.add("offline");
      document.body.dataset.live = "closed";
      /* Exponential back-off with jitter, capped at 5 s: a chat must come back quickly. */
      retry = Math.min(retry + 1, 6);
      setTimeout(connect, Math.min(250 * Math.pow(2, retry), 5000) * (0.5 + Math.random() / 2));
    };
  }

  composer.addEventListener("submit", function (e) {
    e.preventDefault();
    var text = box.value.trim();
    if (!text) return;
    send({ action: "kefu_message_visitor_send", op_id: newOpId(),
           data: { visitor_id: visitorId, kefu_id: kefuId, content: text } });
    box.value = "";
    ended.hidden = true;
  });
  box.addEventListener("keydown", function (e) {
    if (e.key === "Enter" && !e.shiftKey && !e.isComposing) { e.preventDefault(); composer.requestSubmit(); }
  });
  /* Visitor messages are text (the ds/kefu visitor actions carry no file_url), so an
     uploaded image is sent as its link; the bubble shows it as a safe http(s) link. */
  document.getElementById("attach").addEventListener("change", function (e) {
    var input = e.target;
    if (!input.files.length) return;
    var body = new FormData();
    body.append("file", input.files[0]);
    body.append("visitor_id", visitorId);
    fetch("/api/kefu/upload", { method: "POST", body: body, credentials: "omit" })
      .then(function (r) { return r.json(); })
      .then(function (res) {
        input.value = "";
        if (res.code !== 200) { document.getElementById("visitor-status").textContent = res.message; return; }
        send({ action: "kefu_message_visitor_send", op_id: newOpId(),
               data: { visitor_id: visitorId, kefu_id: kefuId, content: location.origin + res.data.url } });
      })
      .catch(function () { input.value = ""; });
  });
  endBtn.addEventListener("click", function () {
    send({ action: "kefu_message_visitor_end", data: { visitor_id: visitorId, kefu_id: kefuId } });
    setEnded(true);
  });

  /* The loader (widget.js) says when the panel fills the screen (a phone): its close
     button then sits over the header's right end, and the header makes room for it. */
  window.addEventListener("message", function (e) {
    if (e.source === parent && e.data && e.data.kefu === "layout") {
      document.body.classList.toggle("full-screen", !!e.data.fullScreen);
    }
  });

  refresh();
  connect();
})();
