// The fleet at a glance: GET /v1/overview (version, storage, readiness,
// enrollment counts, push and webhook counters, push-cert expiry).

import { getJSON } from "../api.js";
import { el, emptyRow, facts, table, tableWrap } from "../dom.js";
import { PUSH_CERT_HEADERS, pushCertRows, section } from "../format.js";

export const title = "Overview";

function countRows(counts) {
  return Object.entries(counts)
    .sort(([a], [b]) => a.localeCompare(b))
    .map(([name, count]) =>
      el("tr", {}, el("th", { scope: "row" }, name), el("td", { class: "number" }, count)),
    );
}

function enrollmentCounts(enrollments) {
  const rows = [
    el(
      "tr",
      {},
      el("th", { scope: "row" }, "Total"),
      el("td", { class: "number" }, enrollments.total),
    ),
    el(
      "tr",
      {},
      el("th", { scope: "row" }, "Enabled"),
      el("td", { class: "number" }, enrollments.enabled),
    ),
    el(
      "tr",
      {},
      el("th", { scope: "row" }, "Disabled"),
      el("td", { class: "number" }, enrollments.disabled),
    ),
    ...countRows(enrollments.by_type || {}).map((row) => {
      row.classList.add("by-type");
      return row;
    }),
  ];
  return table(
    { id: "enrollment-counts" },
    "Enrollments by state and type",
    ["Enrollments", "Count"],
    rows,
  );
}

function pushes(counts) {
  const rows = countRows(counts);
  return el(
    "div",
    { id: "pushes" },
    rows.length
      ? tableWrap(table({}, "Pushes by APNs result", ["Result", "Count"], rows))
      : el("p", {}, "No pushes sent since the server started."),
  );
}

function webhooks(webhook) {
  if (!webhook || !webhook.configured) {
    return el("div", { id: "webhooks" }, el("p", {}, "No webhook configured (-webhook-url)."));
  }
  const rows = [
    el(
      "tr",
      {},
      el("th", { scope: "row" }, "Delivered"),
      el("td", { class: "number" }, webhook.delivered),
    ),
    el(
      "tr",
      {},
      el("th", { scope: "row" }, "Retries"),
      el("td", { class: "number" }, webhook.retries),
    ),
    ...Object.entries(webhook.dropped || {}).map(([reason, count]) =>
      el(
        "tr",
        { class: count > 0 ? "warning" : null },
        el("th", { scope: "row" }, `Dropped: ${reason}`),
        el("td", { class: "number" }, count),
      ),
    ),
  ];
  return el(
    "div",
    { id: "webhooks" },
    tableWrap(table({}, "Webhook deliveries", ["Webhook", "Count"], rows)),
  );
}

export async function render() {
  const overview = await getJSON("/v1/overview");
  const certs = overview.push_certs || [];
  return [
    el("h1", { tabindex: -1 }, "Overview"),
    section(
      "Server",
      facts({ class: "facts" }, [
        ["Version", el("span", { id: "version" }, overview.version)],
        ["Storage", el("span", { id: "storage" }, overview.storage)],
        [
          "Readiness",
          el(
            "span",
            { id: "readiness", class: overview.ready ? "ok" : "warning" },
            overview.ready
              ? "ready"
              : `not ready: ${overview.not_ready_reason || "storage does not answer"}`,
          ),
        ],
      ]),
    ),
    el(
      "div",
      { class: "cards" },
      section(
        "Enrollments",
        tableWrap(enrollmentCounts(overview.enrollments)),
        el("p", {}, el("a", { href: "#/devices" }, "List the enrollments")),
      ),
      section("Pushes", pushes(overview.pushes || {})),
      section("Webhook", webhooks(overview.webhook)),
    ),
    section(
      "Push certificates",
      tableWrap(
        table(
          { id: "pushcert-expiry" },
          "Push certificates by topic",
          PUSH_CERT_HEADERS,
          certs.length ? pushCertRows(certs) : [emptyRow(3, "No push certificate stored.")],
        ),
      ),
      el("p", {}, el("a", { href: "#/pushcerts" }, "Manage push certificates")),
    ),
  ];
}
