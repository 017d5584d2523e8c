/* kefu: every <time datetime="…"> in the reader's own time zone and language.

   The server writes UTC ("05:44", with a "… UTC" title): that stays when scripts are
   off. Here each time reads "14:44" today, "Yesterday 14:44", or a short date with the
   time ("2 Jan, 14:44"; the year too when it is another year), with the whole date and
   time (and the zone) in its title. A MutationObserver sees every time that appears,
   however it came (the page itself, htmx swaps, live pushes, the composer's answers,
   the visitor widget's bubbles), and a minute's tick keeps "today" right past
   midnight. The pages and the widget load this one file; it needs nothing else. */
(function () {
  "use strict";
  if (!window.Intl || !window.MutationObserver) return;
  var locale; /* undefined: the browser's own language */
  var hm = { hour: "2-digit", minute: "2-digit" };
  var clock = new Intl.DateTimeFormat(locale, hm);
  var thisYear = new Intl.DateTimeFormat(locale, { month: "short", day: "numeric", hour: "2-digit", minute: "2-digit" });
  var otherYear = new Intl.DateTimeFormat(locale, { year: "numeric", month: "short", day: "numeric", hour: "2-digit", minute: "2-digit" });
  var whole = new Intl.DateTimeFormat(locale, { weekday: "long", year: "numeric", month: "long", day: "numeric", hour: "2-digit", minute: "2-digit", timeZoneName: "short" });
  var yesterday = "Yesterday";
  try {
    var word = new Intl.RelativeTimeFormat(locale, { numeric: "auto" }).format(-1, "day");
    yesterday = word.charAt(0).toLocaleUpperCase() + word.slice(1);
  } catch (err) { /* no RelativeTimeFormat: English */ }

  function midnight(d) { return new Date(d.getFullYear(), d.getMonth(), d.getDate()).getTime(); }

  /* What a time shows, seen from ``now`` (both in the browser's zone). */
  function label(at, now) {
    var days = Math.round((midnight(now) - midnight(at)) / 86400000); /* DST: 23 or 25 h */
    if (days <= 0) return clock.format(at);
    if (days === 1) return yesterday + " " + clock.format(at);
    return (at.getFullYear() === now.getFullYear() ? thisYear : otherYear).format(at);
  }

  function show(t, now) {
    var at = new Date(t.getAttribute("datetime") || "");
    if (isNaN(at.getTime())) return; /* no instant: the server's text stays */
    var text = label(at, now), tip = whole.format(at);
    if (t.textContent !== text) t.textContent = text;
    if (t.title !== tip) t.title = tip;
  }
  function within(node, now) {
    if (!node || node.nodeType !== 1) return;
    now = now || new Date();
    if (node.matches("time[datetime]")) show(node, now);
    var times = node.querySelectorAll("time[datetime]");
    for (var i = 0; i < times.length; i++) show(times[i], now);
  }

  new MutationObserver(function (records) {
    var now = new Date();
    records.forEach(function (r) {
      for (var i = 0; i < r.addedNodes.length; i++) within(r.addedNodes[i], now);
    });
  }).observe(document.documentElement, { childList: true, subtree: true });
  function all() { within(document.body); }
  if (document.body) all(); else document.addEventListener("DOMContentLoaded", all);
  setInterval(all, 60000);

  window.kefuLocalTime = { label: label, apply: within };
})();
