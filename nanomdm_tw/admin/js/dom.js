// The console's only way to make elements.  Text goes in through text nodes and
// attributes through setAttribute on a fixed list, so nothing a device reports
// (DeviceName, results, error strings) can ever become markup or script.

const ATTRIBUTES = new Set(
  [
    "id class href type name value for scope colspan role label placeholder autocomplete",
    "spellcheck required disabled checked selected step accept tabindex hidden open datetime",
  ]
    .join(" ")
    .split(" "),
);

function setAttribute(element, name, value) {
  if (value === null || value === undefined || value === false) return;
  if (name.startsWith("data-") || name.startsWith("aria-")) {
    if (!/^(data|aria)-[a-z][a-z0-9-]*$/.test(name)) throw new Error(`bad attribute ${name}`);
  } else if (!ATTRIBUTES.has(name)) {
    throw new Error(`attribute ${name} is not allowed`);
  }
  const text = value === true ? "" : String(value);
  // Links only move between the console's own pages.
  if (name === "href" && !text.startsWith("#/")) throw new Error(`href ${text} is not a route`);
  element.setAttribute(name, text);
}

function append(element, child) {
  if (child === null || child === undefined || child === false) return;
  if (Array.isArray(child)) {
    child.forEach((c) => append(element, c));
  } else if (child instanceof Node) {
    element.appendChild(child);
  } else {
    element.appendChild(document.createTextNode(String(child)));
  }
}

/**
 * el("a", {href: "#/devices", class: "x", on: {click: f}}, "text", child, [more])
 * Attributes from the allowed list (plus data-* and aria-*); children are nodes
 * or text; null, undefined and false are skipped.
 */
export function el(tag, attributes = {}, ...children) {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes || {})) {
    if (name === "on") {
      for (const [event, handler] of Object.entries(value))
        element.addEventListener(event, handler);
    } else {
      setAttribute(element, name, value);
    }
  }
  append(element, children);
  return element;
}

/** Replace an element's children with nodes or text. */
export function fill(element, ...children) {
  element.replaceChildren();
  append(element, children);
  return element;
}

/** A table inside a scrolling wrapper: narrow screens scroll the table, not the page. */
export function tableWrap(table) {
  return el("div", { class: "table-wrap" }, table);
}

/**
 * A table: headers become th scope=col; each row is a tr made by the caller.
 * `attributes` go on the table (id, class).  Each cell gets its column's name in
 * data-label, which narrow screens show when rows are stacked (admin.css).
 */
export function table(attributes, caption, headers, rows) {
  for (const row of rows) {
    [...row.cells].forEach((cell, i) => {
      if (headers[i] && cell.colSpan === 1) cell.setAttribute("data-label", headers[i]);
    });
  }
  return el(
    "table",
    attributes,
    caption ? el("caption", {}, caption) : null,
    el(
      "thead",
      {},
      el(
        "tr",
        {},
        headers.map((h) => el("th", { scope: "col" }, h)),
      ),
    ),
    el("tbody", {}, rows),
  );
}

/** A row saying there is nothing to list, spanning every column. */
export function emptyRow(columns, text) {
  return el("tr", { class: "empty" }, el("td", { colspan: columns }, text));
}

/** A description list from [term, value] pairs; values may be nodes. */
export function facts(attributes, pairs) {
  return el(
    "dl",
    attributes,
    pairs
      .filter(([, value]) => value !== null && value !== undefined && value !== "")
      .map(([term, value]) => el("div", {}, el("dt", {}, term), el("dd", {}, value))),
  );
}

/** Save a Blob under `filename` through a temporary link to an object URL we made. */
export function downloadBlob(blob, filename) {
  const url = URL.createObjectURL(blob);
  const link = document.createElement("a");
  link.href = url; // a blob: URL of our own, never text from the server
  link.download = filename;
  link.hidden = true;
  document.body.appendChild(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10000);
}
