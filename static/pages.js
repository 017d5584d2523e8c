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

  document.addEventListener("htmx:configRequest", function (e) {
    e.detail.headers["X-CSRF-Token"] = csrf();
  });

  /* -- toasts ------------------------------------------------------------------ */
  function toast(text) {
    var box = document.getElementById("toasts");
    if (!box) return;
    var t = document.createElement("div");
    t.className = "toast";
    t.textContent = text;
    box.appendChild(t);
    setTimeout(function () { t.remove(); }, 5000);
  }
  document.addEventListener("htmx:responseError", function (e) {
    var doc = new DOMParser().parseFromString(e.detail.xhr.responseText || "", "text/html");
    toast((doc.body.textContent || "").trim() || "Something went wrong (" + e.detail.xhr.status + ")");
  });
  document.addEventListener("htmx:sendError", function () { toast("Not connected. Try again in a moment."); });

  /* -- threads: one copy of each message, in order, scrolled to the newest --------- */
  function tidy(stick) {
    document.querySelectorAll(".thread").forEach(function (thread) {
      var seen = {};
      var nearBottom = thread.scrollHeight - thread.scrollTop - thread.clientHeight < 120;
      var msgs = Array.prototype.slice.call(thread.querySelectorAll(".msg"));
      msgs.forEach(function (m) { if (seen[m.id]) m.remove(); else seen[m.id] = true; });
      msgs = Array.prototype.slice.call(thread.querySelectorAll(".msg"));
      var sorted = msgs.slice().sort(function (a, b) { return (+a.dataset.seq) - (+b.dataset.seq); });
      if (sorted.some(function (m, i) { return m !== msgs[i]; })) {
        sorted.forEach(function (m) { thread.appendChild(m); });
      }
      if (msgs.length) { var hint = thread.querySelector(".empty-hint"); if (hint) hint.remove(); }
      if (stick || nearBottom) thread.scrollTop = thread.scrollHeight;
    });
    var id = viewing();
    document.querySelectorAll(".conv-row").forEach(function (r) {
      r.classList.toggle("active", +r.dataset.conv === id);
    });
    var desk = document.querySelector(".desk");
    if (desk) desk.classList.toggle("has-conv", !!id);
    document.body.classList.toggle("no-open", !document.querySelector("#open-list .conv-row"));
  }
  document.addEventListener("htmx:afterSettle", function (e) {
    var older = e.detail.elt && e.detail.elt.classList && e.detail.elt.classList.contains("older");
    tidy(!older && e.detail.target && e.detail.target.id === "main");
  });
  document.addEventListener("DOMContentLoaded", function () { tidy(true); });

  /* Older pages: on click, or when the thread is scrolled to the top. */
  document.addEventListener("scroll", function (e) {
    var t = e.target;
    if (t.classList && t.classList.contains("thread") && t.scrollTop < 40) {
      var btn = t.querySelector("button.older:not([data-busy])");
      if (btn) { btn.dataset.busy = "1"; btn.click(); }
    }
  }, true);

  /* -- composer: Enter sends, Shift+Enter is a new line; files go through upload ---- */
  document.addEventListener("keydown", function (e) {
    var form = e.target.closest && e.target.closest("form[data-composer]");
    if (form && e.target.tagName === "TEXTAREA" && e.key === "Enter" && !e.shiftKey && !e.isComposing) {
      e.preventDefault();
      if (e.target.value.trim()) htmx.trigger(form, "submit");
    }
  });
  /* The box grows with its text, up to the CSS max-height. */
  document.addEventListener("input", function (e) {
    if (e.target.matches && e.target.matches("form[data-composer] textarea")) {
      e.target.style.height = "auto";
      e.target.style.height = e.target.scrollHeight + 2 + "px";
    }
  });
  document.addEventListener("htmx:beforeRequest", function (e) {
    var form = e.detail.elt;
    if (form.matches && form.matches("form[data-composer]") && !e.detail.requestConfig.parameters.file_url) {
      var box = form.querySelector("textarea");
      if (!box.value.trim()) e.preventDefault();
    }
  });
  document.addEventListener("htmx:afterRequest", function (e) {
    var form = e.detail.elt;
    if (e.detail.successful && form.matches && form.matches("form[data-composer]")) {
      var box = form.querySelector("textarea");
      box.value = "";
      box.style.height = "";
      box.focus();
      tidy(true);
    }
  });
  document.addEventListener("change", function (e) {
    if (!e.target.matches("input[data-upload]") || !e.target.files.length) return;
    var input = e.target, form = input.closest("form");
    var body = new FormData();
    body.append("file", input.files[0]);
    fetch("/api/kefu/upload", { method: "POST", body: body, headers: { "X-CSRF-Token": csrf() }, credentials: "same-origin" })
      .then(function (r) { return r.json(); })
      .then(function (res) {
        input.value = "";
        if (res.code !== 200) { toast(res.message || "Upload failed"); return; }
        var conv = form.querySelector('input[name="conversation_id"]');
        htmx.ajax("POST", form.getAttribute("hx-post"), {
          source: form, target: form.getAttribute("hx-target"), swap: "beforeend",
          values: { csrf_token: csrf(), content: "", message_type: res.data.message_type,
                    file_url: res.data.url, conversation_id: conv ? conv.value : "" }
        });
      })
      .catch(function () { input.value = ""; toast("Upload failed"); });
  });

  /* -- notices: a sound and a counter in the title for the other side's messages -- */
  var baseTitle = document.title, unseen = 0, audio = null;
  document.addEventListener("pointerdown", function () {
    if (!audio && window.AudioContext) audio = new AudioContext();
  }, { once: true });
  function beep() {
    if (!audio) return;
    var o = audio.createOscillator(), g = audio.createGain();
    o.frequency.value = 880; g.gain.value = 0.08;
    o.connect(g); g.connect(audio.destination);
    o.start(); o.stop(audio.currentTime + 0.15);
  }
  function notice() {
    beep();
    if (document.hidden || !document.hasFocus()) {
      unseen += 1;
      document.title = "(" + unseen + ") New message · " + baseTitle;
    }
  }
  function clearNotice() { unseen = 0; document.title = baseTitle; }
  window.addEventListener("focus", clearNotice);
  document.addEventListener("visibilitychange", function () { if (!document.hidden) { clearNotice(); markRead(); } });

  var readTimer = null;
  function markRead() {
    var id = viewing();
    if (!id || document.hidden) return;
    clearTimeout(readTimer);
    readTimer = setTimeout(function () {
      var url = role() === "agent" ? "/agent/c/" + id + "/read" : "/chat/read";
      htmx.ajax("POST", url, { swap: "none", values: { csrf_token: csrf() } });
    }, 300);
  }

  /* -- the live channel: resync on every (re)connect, visible while reconnecting ---- */
  function lastSeq() {
    var id = viewing(), max = 0;
    if (!id) return 0;
    document.querySelectorAll("#thread-" + id + " .msg").forEach(function (m) { max = Math.max(max, +m.dataset.seq); });
    return max;
  }
  document.addEventListener("htmx:wsOpen", function (e) {
    document.body.classList.remove("offline");
    document.body.dataset.live = "open";
    e.detail.socketWrapper.send(JSON.stringify({ type: "hello", conversation_id: viewing(), after_seq: lastSeq() }));
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
      /* The extension retries only abnormal closes; a server restart says 1001. */
      setTimeout(function () {
        var old = live(); if (!old) return;
        var fresh = old.cloneNode(true);
        old.replaceWith(fresh);
        htmx.process(fresh);
      }, 1000 + Math.random() * 2000);
    }
  });
  document.addEventListener("htmx:wsAfterMessage", function (e) {
    var msg = String(e.detail.message || "");
    tidy(false);
    if (msg.indexOf('class="msg theirs"') >= 0) {
      notice();
      var id = viewing();
      if (id && msg.indexOf('data-conv="' + id + '"') >= 0) markRead();
    }
  });
})();
