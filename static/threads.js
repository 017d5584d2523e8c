/* kefu pages: the message threads, kept in order and scrolled as a reader expects
   (pages.js calls tidy after every swap and push). Loaded before pages.js. */
(function () {
  "use strict";
  var viewing = function () {
    var c = document.getElementById("conversation");
    return c && c.dataset.conv ? parseInt(c.dataset.conv, 10) : null;
  };

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

  window.kefuThreads = { tidy: tidy, viewing: viewing };
})();
