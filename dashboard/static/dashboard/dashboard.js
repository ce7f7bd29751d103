// Keeps the dashboard current without reloading: every few seconds it fetches the JSON
// snapshot and re-renders the cards, the status counts and the task table. Task buttons
// are posted with fetch (CSRF token from the form) and the table refreshes at once.
// Plain JavaScript, no libraries: the page must work offline. All text goes in through
// textContent, never innerHTML, so nothing from the database can become markup.
(function () {
  "use strict";

  const root = document.getElementById("dashboard");
  if (!root) return;
  const jsonUrl = root.dataset.jsonUrl;
  const refreshMs = Number(root.dataset.refreshMs) || 4000;
  const csrfToken = root.querySelector("[name=csrfmiddlewaretoken]").value;
  const tbody = document.querySelector("#dash-tasks tbody");
  const refreshLabel = document.getElementById("dash-refresh");
  const flash = document.getElementById("dash-flash");
  let timer = null;
  let stopped = false;
  let generation = 0;

  function el(tag, props, children) {
    const node = document.createElement(tag);
    Object.assign(node, props || {});
    (children || []).forEach(function (child) {
      node.append(child);
    });
    return node;
  }

  function actionForm(action) {
    const form = el("form", { method: "post", action: action.url, className: "task-action" }, [
      el("input", { type: "hidden", name: "csrfmiddlewaretoken", value: csrfToken }),
      el("input", { type: "hidden", name: "next", value: location.pathname + location.search }),
      el("button", { type: "submit", className: "button action-" + action.name, textContent: action.label }),
    ]);
    return form;
  }

  function taskRow(task) {
    const tr = el("tr");
    tr.dataset.taskId = task.id;
    const badge = el("span", { className: "badge badge-" + task.status, textContent: task.status });
    badge.dataset.role = "status";
    const errorCell = el("td", { className: "error-cell", title: task.last_error });
    if (task.last_error) {
      errorCell.append(task.last_error + " ", el("span", { className: "quiet", textContent: "(" + task.last_error_ago + ")" }));
    }
    const statusCell = el("td", {}, [badge]);
    if (task.window) {
      const note = el("div", { className: "quiet window", textContent: task.window });
      note.dataset.role = "window";
      statusCell.append(note);
    }
    tr.append(
      statusCell,
      // <bdi>: a right-to-left override in a name must not flip the rest of the row.
      el("td", {}, [el("a", { href: task.detail_url }, [el("bdi", { textContent: task.name })])]),
      el("td", {}, [
        el("bdi", { textContent: task.bot_username ? "@" + task.bot_username : task.bot }),
        el("div", { className: "quiet mode", textContent: task.mode }),
      ]),
      el("td", {
        className: task.heartbeat_late ? "late" : "",
        title: task.heartbeat_hint,
        textContent: task.heartbeat,
      }),
      el("td", { className: "num", textContent: String(task.messages_processed) }),
      el("td", { className: "num", textContent: String(task.replies_sent) }),
      errorCell,
      el("td", { className: "actions" }, task.actions.map(actionForm)),
    );
    return tr;
  }

  function renderCards(cards) {
    cards.forEach(function (card) {
      const box = root.querySelector('[data-card="' + card.key + '"]');
      if (!box) return;
      box.querySelector(".dash-card-value").textContent = card.value;
      box.querySelector(".dash-card-hint").textContent = card.hint;
      box.classList.toggle("alert", card.alert);
    });
  }

  function renderPages(page) {
    const params = new URLSearchParams(location.search);
    ["previous", "next"].forEach(function (which) {
      const link = root.querySelector('[data-page="' + which + '"]');
      link.hidden = !page[which];
      if (page[which]) {
        params.set("page", page[which]);
        link.href = "?" + params.toString();
      }
    });
    root.querySelector('[data-role="page-info"]').textContent =
      "Page " + page.number + " of " + page.num_pages + " · " + page.count + " task" + (page.count === 1 ? "" : "s");
  }

  function render(data) {
    renderCards(data.cards);
    data.statuses.forEach(function (tab) {
      const count = root.querySelector('[data-status-count="' + tab.value + '"]');
      if (count) count.textContent = String(tab.count);
    });
    const rows = data.tasks.map(taskRow);
    if (!rows.length) {
      rows.push(el("tr", { className: "empty" }, [el("td", { colSpan: 8, textContent: "No tasks match." })]));
    }
    tbody.replaceChildren.apply(tbody, rows);
    renderPages(data.page);
    refreshLabel.textContent = "Updated " + new Date().toLocaleTimeString();
    refreshLabel.classList.remove("stale");
  }

  function showFlash(text, ok) {
    flash.textContent = text;
    flash.className = "dash-flash " + (ok ? "ok" : "error");
    flash.hidden = false;
  }

  async function refresh() {
    // A refresh started later (after a button press) supersedes one still in flight:
    // only the latest renders and schedules the next, so there is one timer chain.
    const mine = ++generation;
    clearTimeout(timer);
    try {
      const response = await fetch(jsonUrl + location.search, {
        headers: { Accept: "application/json" },
        credentials: "same-origin",
      });
      if (response.status === 403) {
        stopped = true;
        showFlash("Your session has ended: log in again to see the dashboard.", false);
        return;
      }
      if (!response.ok) throw new Error("HTTP " + response.status);
      const data = await response.json();
      if (mine === generation) render(data);
    } catch (error) {
      refreshLabel.textContent = "Could not refresh (" + error.message + "); retrying";
      refreshLabel.classList.add("stale");
    } finally {
      if (!stopped && !document.hidden && mine === generation) timer = setTimeout(refresh, refreshMs);
    }
  }

  async function submitAction(form) {
    const button = form.querySelector("button");
    button.disabled = true;
    try {
      const response = await fetch(form.action, {
        method: "POST",
        body: new FormData(form),
        headers: { Accept: "application/json", "X-CSRFToken": csrfToken },
        credentials: "same-origin",
      });
      const answer = await response.json().catch(function () {
        return { ok: false, message: "The server refused (HTTP " + response.status + ")." };
      });
      showFlash(answer.message, answer.ok);
    } catch (error) {
      showFlash("Could not reach the server: " + error.message, false);
      button.disabled = false;
    }
    await refresh();
  }

  root.addEventListener("submit", function (event) {
    const form = event.target.closest("form.task-action");
    if (!form) return;
    event.preventDefault();
    submitAction(form);
  });

  // No polling while the tab is hidden; catch up at once when it is shown again.
  document.addEventListener("visibilitychange", function () {
    if (document.hidden) {
      clearTimeout(timer);
    } else if (!stopped) {
      refresh();
    }
  });

  timer = setTimeout(refresh, refreshMs);
})();
