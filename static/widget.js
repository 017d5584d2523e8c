/* kefu widget loader. Embed with:
     <script src="https://YOUR-KEFU-HOST/widget.js" data-kefu-id="1" async></script>
   It adds a chat bubble that opens the visitor chat (an iframe from the kefu host) and
   keeps everything inside a shadow root so the host page's CSS cannot break it. */
(function () {
  "use strict";
  if (window.__kefuWidget) return;
  var script = document.currentScript ||
    document.querySelector('script[data-kefu-id][src*="widget.js"]');
  if (!script) return;
  var kefuId = parseInt(script.getAttribute("data-kefu-id"), 10);
  if (!(kefuId > 0)) return;
  window.__kefuWidget = true;
  var origin = new URL(script.src, location.href).origin;
  var color = script.getAttribute("data-color") || "";
  if (!/^#[0-9a-fA-F]{3,8}$/.test(color)) color = "#2563eb";
  var label = script.getAttribute("data-label") || "Chat with us";

  /* The visitor id lives in this (first-party) page's storage and is handed to the iframe
     in the URL fragment (never sent to any server): browsers that block third-party
     storage would otherwise give the iframe a new identity on every visit. */
  function visitorId() {
    var a = new Uint8Array(16), key = "kefu.visitor_id";
    crypto.getRandomValues(a);
    var fresh = "v_" + Array.prototype.map.call(a, function (b) { return ("0" + b.toString(16)).slice(-2); }).join("");
    try {
      var id = localStorage.getItem(key);
      if (!id || !/^v_[0-9a-f]{32}$/.test(id)) { id = fresh; localStorage.setItem(key, id); }
      return id;
    } catch (e) { return fresh; }
  }

  /* What the visitor wrote and the server has not stored yet, kept for this tab so that a
     reload during an outage does not lose it; the chat sends it again with its op_ids. */
  var outboxKey = "kefu.outbox." + kefuId;
  function keptOutbox() {
    try { return JSON.parse(sessionStorage.getItem(outboxKey) || "[]"); } catch (e) { return []; }
  }
  function keepOutbox(items) {
    try {
      if (items.length) sessionStorage.setItem(outboxKey, JSON.stringify(items));
      else sessionStorage.removeItem(outboxKey);
    } catch (e) { /* storage blocked: kept as long as the page */ }
  }

  function mount() {
    var host = document.createElement("div");
    host.id = "kefu-widget";
    var root = host.attachShadow({ mode: "open" });
    var style = document.createElement("style");
    style.textContent =
      /* !important: for important rules the shadow root's own win over the host page's,
         so a page's `div{border:…}` or `#kefu-widget{…}` cannot reach this element. */
      ":host{all:initial !important}" +
      /* The bubble stays above the panel: on a phone the panel fills the screen and the
         bubble, moved to its top corner, is the only way to close it. */
      ".bubble{position:fixed;right:20px;bottom:20px;z-index:2147483647;width:56px;height:56px;border-radius:50%;border:0;" +
      "background:" + color + ";color:#fff;cursor:pointer;box-shadow:0 6px 20px rgba(0,0,0,.25);display:flex;align-items:center;justify-content:center}" +
      ".bubble svg{width:28px;height:28px}.dot{position:absolute;top:4px;right:4px;width:12px;height:12px;border-radius:50%;background:#ef4444;border:2px solid #fff;display:none}" +
      ".bubble.unread .dot{display:block}.bubble .close,.bubble.open .chat{display:none}.bubble.open .close{display:block}" +
      ".panel{position:fixed;right:20px;bottom:88px;z-index:2147483646;width:370px;height:560px;max-height:calc(100vh - 110px);" +
      "border:0;border-radius:14px;box-shadow:0 12px 40px rgba(0,0,0,.25);background:#fff;display:none}" +
      ".panel.open{display:block}.bubble:focus-visible{outline:3px solid #111827;outline-offset:3px}" +
      ".sr{position:fixed;width:1px;height:1px;overflow:hidden;clip-path:inset(50%);white-space:nowrap}" +
      "@media (max-width:480px){.panel{right:0;bottom:0;width:100vw;height:100vh;max-height:none;border-radius:0}" +
      ".bubble.open{bottom:auto;top:10px;right:10px;width:40px;height:40px}}";
    var frame = null, loaded = false;
    var bubble = document.createElement("button");
    bubble.className = "bubble";
    bubble.type = "button";
    bubble.setAttribute("aria-label", label);
    bubble.title = label;
    bubble.innerHTML = '<svg class="chat" viewBox="0 0 24 24" fill="none" stroke="currentColor" stroke-width="2" stroke-linecap="round" stroke-linejoin="round" aria-hidden="true"><path d="M21 12a8 8 0 0 1-11.6 7.1L4 20l1-4.6A8 8 0 1 1 21 12z"/></svg>' +
      '<svg class="close" viewBox="0 0 24 24" fill="none" stroke="currentColor" stroke-width="2.5" stroke-linecap="round" aria-hidden="true"><path d="M6 6l12 12M18 6L6 18"/></svg><span class="dot"></span>';
    bubble.setAttribute("aria-expanded", "false");
    bubble.setAttribute("aria-controls", "kefu-panel");
    /* A reply while the panel is closed: the dot, a label that says so, and a word to a
       screen reader (a polite live region beside the bubble). */
    var news = document.createElement("span"), newsTimer = null;
    news.className = "sr";
    news.setAttribute("role", "status");
    function setUnread(on) {
      var text = on ? label + " (new message)" : label;
      bubble.classList.toggle("unread", on);
      bubble.setAttribute("aria-label", text);
      bubble.title = text;
      clearTimeout(newsTimer);
      news.textContent = "";
      if (on) newsTimer = setTimeout(function () { news.textContent = "New message in the chat"; }, 100);
    }
    function isOpen() { return !!frame && frame.classList.contains("open"); }
    /* Opening moves the focus into the chat's message box; closing (the bubble, or Escape
       in the chat or on the bubble) gives it back to the bubble. The panel comes after
       the bubble in the DOM, so Tab goes on from the bubble into the chat. */
    /* The chat loads when first opened, or at once (closed) if this tab holds messages
       written during an outage: they are sent without waiting for the visitor to look. */
    function ensureFrame() {
      if (!frame) {
        frame = document.createElement("iframe");
        frame.className = "panel";
        frame.id = "kefu-panel";
        frame.title = label;
        frame.src = origin + "/visitor?kefu_id=" + kefuId + "#vid=" + visitorId();
        frame.setAttribute("allow", "clipboard-write");
        frame.addEventListener("load", function () {
          loaded = true;
          tellLayout();
          frame.contentWindow.postMessage({ kefu: "outbox", items: keptOutbox() }, origin);
          if (isOpen()) focusChat();
        });
        root.appendChild(frame);
      }
    }
    function setOpen(open) {
      ensureFrame();
      frame.classList.toggle("open", open);
      bubble.classList.toggle("open", open);
      bubble.setAttribute("aria-expanded", String(open));
      if (bubble.classList.contains("unread")) setUnread(false);
      if (!open) bubble.focus();
      else if (loaded) focusChat(); /* else once it has loaded */
    }
    function focusChat() {
      frame.focus(); /* the frame's document takes the focus; it puts it in its message box */
      if (frame.contentWindow) frame.contentWindow.postMessage({ kefu: "focus" }, origin);
    }
    bubble.addEventListener("click", function () { setOpen(!isOpen()); });
    root.addEventListener("keydown", function (e) {
      if (e.key === "Escape" && isOpen()) { e.preventDefault(); setOpen(false); }
    });
    /* Tell the chat when it fills the screen, so its header leaves room for the bubble
       (the media query inside the iframe sees the iframe's width, 370 px on a desktop too). */
    var phone = window.matchMedia("(max-width:480px)");
    function tellLayout() {
      if (frame && frame.contentWindow) frame.contentWindow.postMessage({ kefu: "layout", fullScreen: phone.matches }, origin);
    }
    if (phone.addEventListener) phone.addEventListener("change", tellLayout);
    else if (phone.addListener) phone.addListener(tellLayout);
    window.addEventListener("message", function (e) {
      if (e.origin !== origin || !e.data || !frame) return;
      if (e.data.kefu === "unread" && !isOpen()) setUnread(true);
      if (e.source !== frame.contentWindow) return;
      if (e.data.kefu === "close" && isOpen()) setOpen(false);
      if (e.data.kefu === "outbox" && Array.isArray(e.data.items)) keepOutbox(e.data.items);
    });
    root.appendChild(style);
    root.appendChild(bubble);
    root.appendChild(news);
    document.body.appendChild(host);
    if (keptOutbox().length) ensureFrame();
  }
  if (document.body) mount(); else document.addEventListener("DOMContentLoaded", mount);
})();
