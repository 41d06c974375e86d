// One enrollment: its facts and user channels (GET /v1/enrollments/{id}), its queue
// (GET /v1/queue/{id}) and history with results (?all=1, each result from
// GET /v1/commands/{uuid}), and what an operator does to it: push, enqueue,
// remove a queued command, clear the queue.

import { apiResult, getJSON, query, remove, segment } from "../api.js";
import { el, emptyRow, facts, fill, table, tableWrap } from "../dom.js";
import { enqueueForm } from "../enqueue-form.js";
import { commandLink, enrollmentLink, section, when, yesNo } from "../format.js";
import { resultDetails, resultView } from "../plist.js";

export const title = "Enrollment";

const HISTORY_SHOWN = 200;
const HISTORY_PAGES = 10; // of 1000: the newest of at most 10,000 are found
const EAGER_RESULTS = 25; // results fetched with the page; older ones when opened
const DELIVERY_PAGES = 20;

/** This enrollment's delivery of a queued command: its status and result. */
async function deliveryOf(queued, enrollmentId) {
  let cursor;
  for (let page = 0; page < DELIVERY_PAGES; page++) {
    const command = await getJSON(
      `/v1/commands/${segment(queued.command_uuid)}${query({ limit: 1000, cursor })}`,
    );
    const found = command.deliveries.find((d) => d.id === enrollmentId);
    if (found || !command.next_cursor) return found || queued;
    cursor = command.next_cursor;
  }
  throw new Error(`not among the command's first ${DELIVERY_PAGES * 1000} deliveries`);
}

function factsList(enrollment) {
  const user = enrollment.user || {};
  const isDevice = enrollment.device_id === enrollment.id;
  return facts({ id: "facts", class: "facts" }, [
    ["Type", enrollment.type],
    ["Enabled", yesNo(enrollment.enabled)],
    ["Serial number", (enrollment.device || {}).serial_number],
    ["User short name", user.user_short_name],
    ["User long name", user.user_long_name],
    ["Topic", enrollment.topic],
    [
      "Device channel",
      isDevice || !enrollment.device_id ? null : enrollmentLink(enrollment.device_id),
    ],
    ["User ID", enrollment.user_id],
    ["Token updates", String(enrollment.token_update_tally)],
    ["Last seen", when(enrollment.last_seen)],
    ["Enrolled", enrollment.created ? when(enrollment.created) : null],
    ["Updated", enrollment.updated ? when(enrollment.updated) : null],
  ]);
}

function userChannels(channels) {
  const headers = [
    "Enrollment ID",
    "Type",
    "User short name",
    "User long name",
    "Enabled",
    "Last seen",
  ];
  const rows = channels.map((channel) =>
    el(
      "tr",
      { "data-enrollment-id": channel.id },
      el("td", { class: "id" }, enrollmentLink(channel.id)),
      el("td", {}, channel.type),
      el("td", {}, (channel.user || {}).user_short_name || ""),
      el("td", {}, (channel.user || {}).user_long_name || ""),
      el("td", {}, yesNo(channel.enabled)),
      el("td", {}, when(channel.last_seen)),
    ),
  );
  return tableWrap(
    table(
      { id: "user-channels", class: "stack" },
      "User channels of this device",
      headers,
      rows.length ? rows : [emptyRow(headers.length, "No user channels.")],
    ),
  );
}

function queueSection(enrollmentId, queue, context) {
  const base = `/v1/queue/${segment(enrollmentId)}`;
  const headers = ["Command", "Request type", "State", "Priority", "NotNow count", "Enqueued", ""];

  async function removeCommand(uuid, button) {
    context.clearMessages();
    button.disabled = true;
    try {
      await remove(`${base}${query({ command_uuid: uuid })}`);
      context.notify(`Removed command ${uuid} from the queue.`);
      context.reload();
    } catch (error) {
      button.disabled = false;
      context.fail(error);
    }
  }

  const rows = queue.commands.map((command) => {
    const button = el(
      "button",
      {
        type: "button",
        class: "delete-command secondary",
        "aria-label": `Remove ${command.request_type} ${command.command_uuid} from the queue`,
      },
      "Remove",
    );
    button.addEventListener("click", () => removeCommand(command.command_uuid, button));
    return el(
      "tr",
      { "data-command-uuid": command.command_uuid },
      el("td", { class: "uuid" }, commandLink(command.command_uuid)),
      el("td", {}, command.request_type),
      el("td", { class: `state status-${command.state}` }, command.state),
      el("td", { class: "number" }, command.priority),
      el("td", { class: "number" }, command.not_now_count),
      el("td", {}, when(command.enqueued_at)),
      el("td", {}, button),
    );
  });

  const confirmButton = el(
    "button",
    { type: "button", id: "clear-queue-confirm", class: "danger" },
    "Yes, clear the queue",
  );
  const cancelButton = el(
    "button",
    { type: "button", id: "clear-queue-cancel", class: "secondary" },
    "Keep the commands",
  );
  const count = `${queue.commands.length}${queue.next_cursor ? "+" : ""}`;
  const confirmBox = el(
    "div",
    { class: "confirm", hidden: true, role: "group", "aria-label": "Confirm clearing the queue" },
    el(
      "p",
      {},
      `Remove all ${count} commands still queued for this enrollment? The device will not get them.`,
    ),
    el("div", { class: "actions" }, confirmButton, cancelButton),
  );
  const clearButton = el(
    "button",
    { type: "button", id: "clear-queue", class: "secondary", disabled: !queue.commands.length },
    "Clear the queue…",
  );
  clearButton.addEventListener("click", () => {
    confirmBox.hidden = false;
    confirmButton.focus();
  });
  cancelButton.addEventListener("click", () => {
    confirmBox.hidden = true;
    clearButton.focus();
  });
  confirmButton.addEventListener("click", async () => {
    context.clearMessages();
    confirmButton.disabled = true;
    try {
      await remove(base);
      context.notify(`Cleared the queue of ${enrollmentId}.`);
      context.reload();
    } catch (error) {
      confirmButton.disabled = false;
      context.fail(error);
    }
  });

  return section(
    "Queue",
    el(
      "p",
      {},
      queue.commands.length
        ? `${count} command${count === "1" ? "" : "s"} waiting for the device.`
        : "Nothing waiting for the device.",
    ),
    tableWrap(
      table(
        { id: "queue", class: "stack" },
        "Commands still to be answered, in delivery order",
        headers,
        rows.length ? rows : [emptyRow(headers.length, "The queue is empty.")],
      ),
    ),
    el("div", { class: "actions" }, clearButton),
    confirmBox,
  );
}

/**
 * The enrollment's whole queue history (?all=1, oldest first), page after page:
 * {commands: the newest HISTORY_SHOWN, newest first, total, complete}.
 */
async function loadHistory(queuePath) {
  let commands = [];
  let cursor;
  let pages = 0;
  do {
    const page = await getJSON(`${queuePath}${query({ all: 1, limit: 1000, cursor })}`);
    commands = commands.concat(page.commands);
    cursor = page.next_cursor;
  } while (cursor && ++pages < HISTORY_PAGES);
  const newestFirst = commands.reverse();
  // Priority orders the queue first: newest by enqueue time, queue order breaking ties.
  newestFirst.sort((a, b) => (b.enqueued_at || "").localeCompare(a.enqueued_at || ""));
  return {
    commands: newestFirst.slice(0, HISTORY_SHOWN),
    total: commands.length,
    complete: !cursor,
  };
}

/** A history row's result: fetched now (`eager`) or when its details are first opened. */
async function resultCell(command, enrollmentId, eager, open) {
  if (!command.status)
    return el(
      "td",
      { class: "result-cell" },
      command.state === "cleared" ? "cleared, never answered" : "not answered yet",
    );
  if (eager) {
    try {
      const delivery = await deliveryOf(command, enrollmentId);
      return el("td", { class: "result-cell" }, resultDetails(delivery, open));
    } catch (error) {
      return el("td", { class: "result-cell failed" }, `Result not loaded: ${error.message}`);
    }
  }
  const body = el(
    "div",
    { class: "result-body" },
    el("p", { class: "loading" }, "Loading the result…"),
  );
  const details = el("details", { class: "result-details" }, el("summary", {}, "Result"), body);
  let loaded = false;
  details.addEventListener("toggle", async () => {
    if (!details.open || loaded) return;
    loaded = true;
    try {
      fill(body, resultView(await deliveryOf(command, enrollmentId)));
    } catch (error) {
      loaded = false;
      fill(body, el("p", { class: "failed" }, `Result not loaded: ${error.message}`));
    }
  });
  return el("td", { class: "result-cell" }, details);
}

async function historySection(enrollmentId, history) {
  const headers = ["Command", "Request type", "Status", "Enqueued", "Reported", "Result"];
  const newestFirst = history.commands;
  // The newest answers come with the page (the newest one open); older ones on demand.
  const answered = newestFirst.filter((command) => command.status).slice(0, EAGER_RESULTS);
  const rows = await Promise.all(
    newestFirst.map(async (command) => {
      const eager = answered.includes(command);
      const status = command.status || command.state;
      return el(
        "tr",
        { "data-command-uuid": command.command_uuid },
        el("td", { class: "uuid" }, commandLink(command.command_uuid)),
        el("td", {}, command.request_type),
        el("td", { class: `status status-${status}` }, status),
        el("td", {}, when(command.enqueued_at)),
        el("td", {}, when(command.reported_at)),
        await resultCell(command, enrollmentId, eager, command === answered[0]),
      );
    }),
  );
  return section(
    "History",
    el(
      "p",
      {},
      history.total > newestFirst.length || !history.complete
        ? `The newest ${newestFirst.length} of ${history.total}${history.complete ? "" : "+"} commands queued to this enrollment.`
        : "Every command queued to this enrollment, newest first.",
    ),
    tableWrap(
      table(
        { id: "history", class: "stack" },
        "Commands and what the device answered",
        headers,
        rows.length ? rows : [emptyRow(headers.length, "No commands yet.")],
      ),
    ),
  );
}

function pushButton(enrollmentId, context) {
  const button = el("button", { type: "button", id: "push" }, "Send a push");
  button.addEventListener("click", async () => {
    context.clearMessages();
    button.disabled = true;
    try {
      const { result } = await apiResult("POST", `/v1/push/${segment(enrollmentId)}`);
      const mine = (result.status || {})[enrollmentId] || {};
      const error = result.push_error || mine.push_error;
      if (error || !mine.push_result)
        context.fail(`The push failed: ${error || "APNs gave no answer for this enrollment"}`);
      else context.notify(`Pushed to ${enrollmentId} (apns-id ${mine.push_result}).`);
    } catch (error) {
      context.fail(error);
    } finally {
      button.disabled = false;
    }
  });
  return button;
}

export async function render(context) {
  const id = context.arg;
  if (!id) throw new Error("the address names no enrollment");
  const queuePath = `/v1/queue/${segment(id)}`;
  const [enrollment, queue, history, catalogue] = await Promise.all([
    getJSON(`/v1/enrollments/${segment(id)}`),
    getJSON(queuePath),
    loadHistory(queuePath),
    // Without the catalogue the page still shows everything but the enqueue form.
    getJSON("/v1/catalogue").catch((error) => ({ error })),
  ]);
  const refresh = el("button", { type: "button", id: "refresh", class: "secondary" }, "Refresh");
  refresh.addEventListener("click", () => context.reload());
  return [
    el("h1", { tabindex: -1, class: "mono" }, enrollment.id),
    el(
      "p",
      { class: "subtitle" },
      `${enrollment.type} enrollment, ${enrollment.enabled ? "enabled" : "disabled"}`,
    ),
    el("div", { class: "actions" }, pushButton(id, context), refresh),
    section("Facts", factsList(enrollment)),
    section(
      "Send a command",
      catalogue.error
        ? el(
            "p",
            { class: "failed" },
            `The command catalogue did not load: ${catalogue.error.message}`,
          )
        : enqueueForm(id, catalogue, context),
    ),
    queueSection(id, queue, context),
    await historySection(id, history),
    section("User channels", userChannels(enrollment.user_channels || [])),
  ];
}
