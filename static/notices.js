/* kefu pages: telling the person what arrived while they looked elsewhere: a sound and
   a count in the title for the other side's messages, and on the dashboard a screen
   reader's word about activity outside the open conversation. Loaded after pages.js,
   whose window.kefuPages it uses; no inline scripts (the CSP forbids them). */
(function () {
  "use strict";
  var pages = window.kefuPages;

  /* -- a sound and a counter in the title for the other side's messages ----------- */
  var baseTitle = document.title, unseen = 0, audio = null;
  /* Browsers let a page play sound only after a gesture: a click or, for an agent who
     works from the keyboard, a key. */
  function unlockAudio() {
    if (!audio && window.AudioContext) audio = new AudioContext();
  }
  document.addEventListener("pointerdown", unlockAudio, { once: true });
  document.addEventListener("keydown", unlockAudio, { once: true });
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
  document.addEventListener("visibilitychange", function () { if (!document.hidden) clearNotice(); });

  /* -- activity outside the open conversation, told to a screen reader -------------
     The open conversation's thread is a live region of its own; the rest of the desk
     changes only in the list (a row's unread count, a new row). After each push the
     dashboard compares its open list with the one before and says what is new in
     #desk-news: "New conversation from Ann", "New message from Ben". */
  function openRows() {
    var rows = {};
    document.querySelectorAll("#open-list .conv-row").forEach(function (r) {
      var badge = r.querySelector(".unread .badge"), name = r.querySelector(".name");
      rows[r.dataset.conv] = {
        unread: badge ? parseInt(badge.textContent, 10) || 0 : 0,
        name: name ? name.textContent.trim() : "",
      };
    });
    return rows;
  }
  var news = [], newsTimer = null;
  function announce(before) {
    var region = document.getElementById("desk-news");
    if (!region || !before) return;
    var now = openRows(), open = String(pages.viewing()), count = news.length;
    Object.keys(now).forEach(function (id) {
      if (id === open) return;
      var was = before[id], row = now[id];
      var text = !was ? "New conversation from " + row.name
        : row.unread > was.unread ? "New message from " + row.name : "";
      if (text && news.indexOf(text) < 0) news.push(text);
    });
    if (news.length === count) return;
    /* Emptied first and filled a moment later, so the same words said again are
       announced again; what several pushes in a row bring is said at once. */
    region.textContent = "";
    clearTimeout(newsTimer);
    newsTimer = setTimeout(function () { region.textContent = news.join(". "); news = []; }, 100);
  }


  var frame = "", rowsBefore = null;
  document.addEventListener("htmx:wsBeforeMessage", function (e) {
    frame = String(e.detail.message || "");
    rowsBefore = pages.role() === "agent" ? openRows() : null;
  });
  document.addEventListener("htmx:wsAfterMessage", function () {
    if (rowsBefore) announce(rowsBefore);
    rowsBefore = null;
    if (frame.indexOf('class="msg theirs"') >= 0) notice();
  });
})();
