/* What the pages' composer (composer.js) and the visitor widget (visitor.js) share about a
   message on its way: its op_id, its length as the server counts it, and the "Sending…"
   bubble shown until the server's own takes its place. Loaded before either. */
(function () {
  "use strict";

  function randomHex(bytes) {
    var a = new Uint8Array(bytes);
    crypto.getRandomValues(a);
    return Array.prototype.map.call(a, function (b) { return ("0" + b.toString(16)).slice(-2); }).join("");
  }

  window.kefuSending = {
    randomHex: randomHex,
    /* Time first (8 base-36 digits of milliseconds, in order until 2059), then random: a
       resend repeats it, two tabs never share one, and the server's op_id index gets
       each commit's new entries side by side (see migrations/005). */
    newOpId: function () { return Date.now().toString(36).padStart(8, "0") + "-" + randomHex(4); },
    /* The server's limit counts characters (code points): an emoji is one. (maxlength
       counts UTF-16 units, two for an emoji, and cuts a paste without a word.) */
    tooLong: function (text, max) {
      var count = Array.from(text).length;
      return count > max ? "Too long to send: " + count.toLocaleString() + " characters, " +
        max.toLocaleString() + " at most." : "";
    },
    /* <div class="msg mine pending"><div class="bubble"><div class="text">…</div></div>
       <span class="send-state">Sending…</span></div> */
    pendingBubble: function (content) {
      var el = document.createElement("div"), bubble = document.createElement("div");
      var text = document.createElement("div"), state = document.createElement("span");
      el.className = "msg mine pending";
      bubble.className = "bubble";
      text.className = "text";
      text.dir = "auto";
      text.textContent = content;
      state.className = "send-state";
      state.textContent = "Sending…";
      bubble.appendChild(text);
      el.appendChild(bubble);
      el.appendChild(state);
      return el;
    },
  };
})();
