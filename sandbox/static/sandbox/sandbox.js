// The sandbox chat: polls the conversation as the Telegram emulator saw it and sends
// what you type as a simulated Telegram user. Plain JS, no build step, no CDN.
(function () {
  "use strict";
  const POLL_MS = 700;
  const $ = (id) => document.getElementById(id);
  const state = { bot: $("bot-picker").value, chat: "private", replyTo: null, lastRendered: "" };

  function csrfToken() {
    const input = document.querySelector("input[name=csrfmiddlewaretoken]");
    return input ? input.value : "";
  }

  function escapeHtml(text) {
    return text.replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);
  }

  // Telegram entities count UTF-16 units, as JS strings do: cut the text at every
  // entity edge and wrap each piece in the tags of the entities covering it.
  const TAGS = { bold: "b", italic: "i", underline: "u", strikethrough: "s", code: "code", pre: "pre" };
  function renderEntities(text, entities) {
    if (!entities || !entities.length) return escapeHtml(text);
    const edges = new Set([0, text.length]);
    entities.forEach((e) => { edges.add(e.offset); edges.add(e.offset + e.length); });
    const points = [...edges].filter((p) => p >= 0 && p <= text.length).sort((a, b) => a - b);
    let html = "";
    for (let i = 0; i < points.length - 1; i++) {
      const [start, end] = [points[i], points[i + 1]];
      let piece = escapeHtml(text.slice(start, end));
      entities.filter((e) => e.offset <= start && e.offset + e.length >= end).forEach((e) => {
        if (TAGS[e.type]) piece = `<${TAGS[e.type]}>${piece}</${TAGS[e.type]}>`;
        else if (e.type === "text_link" && /^https?:/.test(e.url || "")) {
          piece = `<a href="${escapeHtml(e.url)}" target="_blank" rel="noopener">${piece}</a>`;
        }
      });
      html += piece;
    }
    return html;
  }

  function timeOf(seconds) {
    return new Date(seconds * 1000).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
  }

  function render(data) {
    const box = $("messages");
    const signature = JSON.stringify([data.messages, data.draft]);
    if (signature !== state.lastRendered) {
      const nearBottom = box.scrollHeight - box.scrollTop - box.clientHeight < 80;
      const byId = new Map(data.messages.map((m) => [m.message_id, m]));
      box.innerHTML = data.messages.length ? "" :
        `<div class="empty">Say hello!${state.chat === "group" ? "<br>Mention the bot to get an answer." : ""}</div>`;
      data.messages.forEach((m) => box.appendChild(bubble(m, byId)));
      if (data.draft) box.appendChild(draftBubble(data.draft));
      state.lastRendered = signature;
      if (nearBottom || !box.dataset.seen) box.scrollTop = box.scrollHeight;
      box.dataset.seen = "1";
    }
    $("chat-title").textContent = `${data.bot.name}${data.bot.username ? "  @" + data.bot.username : ""}`;
    $("bot-avatar").textContent = (data.bot.name || "B").charAt(0).toUpperCase();
    $("mention").textContent = "@" + (data.bot.username || "bot");
    const status = $("chat-status");
    status.textContent = data.typing ? "typing…" : `bot task: ${data.bot.status}`;
    status.classList.toggle("typing", data.typing);
  }

  function bubble(m, byId) {
    const div = document.createElement("div");
    const mine = !m.from_bot && state.chat === "private";
    div.className = `bubble ${m.from_bot ? "theirs bot" : mine ? "mine" : "theirs"}`;
    div.dataset.messageId = m.message_id;
    let html = "";
    if (state.chat === "group") html += `<div class="who">${escapeHtml(m.from_bot ? $("chat-title").textContent.split("  ")[0] : m.sender)}</div>`;
    const quoted = m.reply_to && byId.get(m.reply_to);
    if (quoted) html += `<div class="quote">${escapeHtml(quoted.text.slice(0, 80))}</div>`;
    html += `<div class="text">${renderEntities(m.text, m.entities)}</div><span class="time">${timeOf(m.time)}</span>`;
    div.innerHTML = html;
    if (m.from_bot && state.chat === "group") {
      div.title = "Click to reply";
      div.addEventListener("click", () => startReply(m));
    }
    return div;
  }

  // A streamed answer as it is written (Telegram's message draft): replaced by the
  // final message when it arrives.
  function draftBubble(draft) {
    const div = document.createElement("div");
    div.className = "bubble theirs bot draft";
    div.id = "draft";
    div.innerHTML = `<div class="text">${renderEntities(draft.text, draft.entities)}</div><span class="time">writing…</span>`;
    return div;
  }

  function startReply(m) {
    state.replyTo = m.message_id;
    $("reply-text").textContent = m.text.slice(0, 60);
    $("reply-preview").hidden = false;
    $("text").focus();
  }

  function cancelReply() {
    state.replyTo = null;
    $("reply-preview").hidden = true;
  }

  function showError(message) {
    const box = $("error");
    box.textContent = message || "";
    box.hidden = !message;
  }

  async function poll() {
    if (!state.bot) return;
    try {
      const response = await fetch(`api/bots/${state.bot}/messages?chat=${state.chat}`, { credentials: "same-origin" });
      const data = await response.json();
      if (!response.ok) return showError(data.error || `Error ${response.status}`);
      showError("");
      render(data);
    } catch (error) {
      showError("Cannot reach Botfleet. Is bin/run still running?");
    }
  }

  async function send(event) {
    event.preventDefault();
    const input = $("text");
    const text = input.value.trim();
    if (!text || !state.bot) return;
    $("send").disabled = true;
    try {
      const response = await fetch(`api/bots/${state.bot}/send`, {
        method: "POST", credentials: "same-origin",
        headers: { "Content-Type": "application/json", "X-CSRFToken": csrfToken() },
        body: JSON.stringify({ text, chat: state.chat, as_member: $("send-as").value, reply_to: state.replyTo }),
      });
      const data = await response.json();
      if (!response.ok) return showError(data.error || `Error ${response.status}`);
      input.value = "";
      cancelReply();
      poll();
    } finally {
      $("send").disabled = false;
      input.focus();
    }
  }

  // On a phone the bot list and chats fold into the top bar's button (sandbox.css).
  function showSidebar(open) {
    document.querySelector(".app").classList.toggle("sidebar-open", open);
    $("sidebar-toggle").setAttribute("aria-expanded", String(open));
  }

  function switchChat(chat) {
    state.chat = chat;
    state.lastRendered = "";
    delete $("messages").dataset.seen;
    cancelReply();
    document.querySelectorAll(".chat-tab").forEach((b) => {
      b.classList.toggle("active", b.dataset.chat === chat);
      if (b.dataset.chat === chat) $("sidebar-toggle-label").textContent = b.textContent;
    });
    $("send-as").hidden = chat !== "group";
    $("group-hint").hidden = chat !== "group";
    poll();
  }

  document.querySelectorAll(".chat-tab").forEach((b) => b.addEventListener("click", () => {
    showSidebar(false);
    switchChat(b.dataset.chat);
  }));
  $("sidebar-toggle").addEventListener("click", () => {
    showSidebar(!document.querySelector(".app").classList.contains("sidebar-open"));
  });
  $("bot-picker").addEventListener("change", (e) => { state.bot = e.target.value; switchChat(state.chat); });
  $("composer").addEventListener("submit", send);
  $("reply-cancel").addEventListener("click", cancelReply);
  poll();
  setInterval(poll, POLL_MS);
})();
