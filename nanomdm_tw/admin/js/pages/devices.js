// The live enrollment list: GET /v1/enrollments with the filters of the route
// (#/devices?q=&type=&enabled=&topic=&cursor=), one page at a time.  A search
// matches an exact enrollment ID or serial number: two GETs, their union shown.

import { getJSON, query } from "../api.js";
import { el, emptyRow, table, tableWrap } from "../dom.js";
import { enrollmentLink, when, yesNo } from "../format.js";

export const title = "Devices";

const PAGE_SIZE = 50;
const TYPES = ["Device", "User", "User Enrollment (Device)", "User Enrollment", "Shared iPad"];
const HEADERS = [
  "Enrollment ID",
  "Type",
  "Serial number",
  "User short name",
  "User long name",
  "Topic",
  "Enabled",
  "Last seen",
];

function filtersOf(params) {
  return {
    q: (params.get("q") || "").trim(),
    type: params.get("type") || "",
    enabled: params.get("enabled") || "",
    topic: (params.get("topic") || "").trim(),
  };
}

function route(filters, cursor) {
  return `#/devices${query({ ...filters, cursor })}`;
}

async function load(filters, cursor) {
  const base = { type: filters.type, enabled: filters.enabled, topic: filters.topic };
  if (!filters.q) {
    return getJSON(`/v1/enrollments${query({ ...base, limit: PAGE_SIZE, cursor })}`);
  }
  const [byId, bySerial] = await Promise.all([
    getJSON(`/v1/enrollments${query({ ...base, id: filters.q, limit: PAGE_SIZE })}`),
    getJSON(`/v1/enrollments${query({ ...base, serial_number: filters.q, limit: PAGE_SIZE })}`),
  ]);
  const union = new Map();
  for (const enrollment of [...byId.enrollments, ...bySerial.enrollments]) {
    union.set(enrollment.id, enrollment);
  }
  const enrollments = [...union.values()].sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
  return { enrollments };
}

function row(enrollment) {
  const user = enrollment.user || {};
  return el(
    "tr",
    { "data-enrollment-id": enrollment.id, class: enrollment.enabled ? null : "disabled" },
    el("td", { class: "id" }, enrollmentLink(enrollment.id)),
    el("td", {}, enrollment.type),
    el("td", {}, (enrollment.device || {}).serial_number || ""),
    el("td", {}, user.user_short_name || ""),
    el("td", {}, user.user_long_name || ""),
    el("td", { class: "topic" }, enrollment.topic || ""),
    el("td", {}, yesNo(enrollment.enabled)),
    el("td", {}, when(enrollment.last_seen)),
  );
}

function field(label, control, help) {
  return el(
    "div",
    { class: "field" },
    el("label", { for: control.id }, label, help ? el("span", { class: "help" }, help) : null),
    control,
  );
}

function filterForm(filters) {
  const search = el("input", {
    id: "device-search",
    name: "q",
    type: "search",
    value: filters.q,
    placeholder: "exact ID or serial number",
    autocomplete: "off",
    spellcheck: "false",
  });
  const type = el(
    "select",
    { id: "filter-type", name: "type" },
    el("option", { value: "" }, "any type"),
    TYPES.map((t) => el("option", { value: t, selected: filters.type === t }, t)),
  );
  const enabled = el(
    "select",
    { id: "filter-enabled", name: "enabled" },
    el("option", { value: "" }, "enabled or not"),
    el("option", { value: "true", selected: filters.enabled === "true" }, "enabled"),
    el("option", { value: "false", selected: filters.enabled === "false" }, "disabled"),
  );
  const topic = el("input", {
    id: "filter-topic",
    name: "topic",
    type: "text",
    value: filters.topic,
    placeholder: "com.apple.mgmt.…",
    autocomplete: "off",
    spellcheck: "false",
  });
  function apply(event) {
    event.preventDefault();
    location.hash = route({
      q: search.value.trim(),
      type: type.value,
      enabled: enabled.value,
      topic: topic.value.trim(),
    });
  }
  return el(
    "form",
    { id: "device-filters", class: "filters", role: "search", on: { submit: apply } },
    field("Search", search),
    field("Type", type),
    field("Enabled", enabled),
    field("Topic", topic),
    el("div", { class: "field" }, el("button", { type: "submit" }, "Show")),
    el("div", { class: "field" }, el("a", { href: "#/devices" }, "Clear filters")),
  );
}

export async function render(context) {
  const filters = filtersOf(context.params);
  const cursor = filters.q ? "" : context.params.get("cursor") || "";
  const page = await load(filters, cursor);
  const next = page.next_cursor;
  const nextButton = el(
    "button",
    {
      type: "button",
      id: "next-page",
      disabled: !next,
      on: { click: () => (location.hash = route(filters, next)) },
    },
    "Next page",
  );
  const count = page.enrollments.length;
  return [
    el("h1", { tabindex: -1 }, "Devices"),
    filterForm(filters),
    el(
      "p",
      {},
      el("span", { id: "device-count" }, count),
      ` enrollment${count === 1 ? "" : "s"}`,
      filters.q ? ` whose ID or serial number is “${filters.q}”` : cursor ? " on this page" : "",
      next ? "; more on the next page." : ".",
    ),
    tableWrap(
      table(
        { id: "devices", class: "stack" },
        "Enrollments in ID order",
        HEADERS,
        count ? page.enrollments.map(row) : [emptyRow(HEADERS.length, "No enrollment matches.")],
      ),
    ),
    el(
      "div",
      { class: "actions" },
      cursor ? el("a", { href: route(filters) }, "First page") : null,
      nextButton,
    ),
  ];
}
