// One command's fan-out: GET /v1/commands/{uuid}, a row per enrollment it was
// queued to, with what that enrollment answered and who is still pending.

import { getJSON, query, segment } from "../api.js";
import { el, emptyRow, facts, table, tableWrap } from "../dom.js";
import { enrollmentLink, section, when } from "../format.js";
import { readPlist, resultDetails } from "../plist.js";

export const title = "Command";

const PAGE_SIZE = 200;
const STILL_PENDING = new Set(["pending", "NotNow"]);

function deliveryStatus(delivery) {
  if (STILL_PENDING.has(delivery.state)) return delivery.state;
  return delivery.status || delivery.state;
}

function row(delivery) {
  const status = deliveryStatus(delivery);
  return el(
    "tr",
    { "data-enrollment-id": delivery.id },
    el("td", { class: "id" }, enrollmentLink(delivery.id)),
    el("td", { class: `status status-${status}` }, status),
    el("td", { class: "number" }, delivery.not_now_count),
    el("td", {}, when(delivery.enqueued_at)),
    el("td", {}, when(delivery.reported_at)),
    el("td", { class: "result-cell" }, delivery.result ? resultDetails(delivery) : "—"),
  );
}

function tally(deliveries) {
  const counts = new Map();
  for (const delivery of deliveries) {
    const status = deliveryStatus(delivery);
    counts.set(status, (counts.get(status) || 0) + 1);
  }
  return [...counts].map(([status, count]) => `${status}: ${count}`).join(", ");
}

export async function render(context) {
  const uuid = context.arg;
  if (!uuid) throw new Error("the address names no command");
  const cursor = context.params.get("cursor") || "";
  const command = await getJSON(
    `/v1/commands/${segment(uuid)}${query({ limit: PAGE_SIZE, cursor })}`,
  );
  const deliveries = command.deliveries || [];
  const pending = deliveries.filter((d) => STILL_PENDING.has(d.state)).length;
  const headers = ["Enrollment ID", "Status", "NotNow count", "Enqueued", "Reported", "Result"];
  const refresh = el("button", { type: "button", id: "refresh", class: "secondary" }, "Refresh");
  refresh.addEventListener("click", () => context.reload());
  const next = command.next_cursor;
  const here = `#/command/${encodeURIComponent(uuid)}`;
  return [
    el("h1", { tabindex: -1, class: "mono" }, command.command_uuid),
    el("p", { class: "subtitle" }, `${command.request_type} command`),
    facts({ class: "facts" }, [
      ["Request type", command.request_type],
      ["Created", command.created ? when(command.created) : null],
      ["Enrollments on this page", String(deliveries.length)],
      ["Answers", tally(deliveries) || "none yet"],
    ]),
    el(
      "p",
      {},
      "Still pending: ",
      el("strong", { id: "pending-count" }, pending),
      ` of ${deliveries.length}${next ? " on this page" : ""}.`,
    ),
    el("div", { class: "actions" }, refresh),
    section(
      "Fan-out",
      tableWrap(
        table(
          { id: "fanout", class: "stack" },
          "Each enrollment the command was queued to, in ID order",
          headers,
          deliveries.length
            ? deliveries.map(row)
            : [emptyRow(headers.length, "Queued to no enrollment.")],
        ),
      ),
      el(
        "div",
        { class: "actions" },
        cursor ? el("a", { href: here }, "First page") : null,
        next
          ? el("a", { href: `${here}${query({ cursor: next })}`, id: "next-page" }, "Next page")
          : null,
      ),
    ),
    section(
      "Command as queued",
      el(
        "pre",
        { class: "command-raw", "aria-label": "Command plist" },
        readPlist(command.command).text,
      ),
    ),
  ];
}
