// A device's result, shown readably and inertly.  The XML plist is parsed with
// DOMParser as application/xml (an inert XML document: nothing in it runs or
// loads) into JS values; the page gets them as text only: a key/value table for
// a dict, the raw XML in pre.result-raw, ErrorChain entries in .error-chain.

import { el, tableWrap } from "./dom.js";

const MAX_DEPTH = 64;

/** A plist <date>, kept as its text. */
class PlistDate {
  constructor(text) {
    this.text = text;
  }
}

/** A plist <data>, kept as its base64 text. */
class PlistData {
  constructor(base64) {
    this.base64 = base64.replace(/\s+/g, "");
  }

  get size() {
    const padding = (this.base64.match(/=*$/) || [""])[0].length;
    return Math.max(0, Math.floor((this.base64.length * 3) / 4) - padding);
  }
}

function decodeBase64(text) {
  const binary = atob(text);
  const bytes = new Uint8Array(binary.length);
  for (let i = 0; i < binary.length; i++) bytes[i] = binary.charCodeAt(i);
  return bytes;
}

function childElements(node) {
  return [...node.children];
}

function plistValue(node, depth) {
  if (depth > MAX_DEPTH) throw new Error("the plist nests too deep");
  const text = node.textContent;
  switch (node.localName) {
    case "dict": {
      // A Map: keys are a device's text, never properties of an object.
      const dict = new Map();
      const children = childElements(node);
      for (let i = 0; i < children.length; i += 2) {
        if (children[i].localName !== "key" || !children[i + 1]) {
          throw new Error("a dict without key/value pairs");
        }
        dict.set(children[i].textContent, plistValue(children[i + 1], depth + 1));
      }
      return dict;
    }
    case "array":
      return childElements(node).map((child) => plistValue(child, depth + 1));
    case "string":
      return text;
    case "integer": {
      const number = Number(text.trim());
      return Number.isSafeInteger(number) ? number : text.trim();
    }
    case "real":
      return Number(text.trim());
    case "true":
      return true;
    case "false":
      return false;
    case "date":
      return new PlistDate(text.trim());
    case "data":
      return new PlistData(text);
    default:
      throw new Error(`unknown plist element <${node.localName}>`);
  }
}

/** An XML plist's text as JS values (dicts as Map); throws an Error saying why not. */
function parsePlist(text) {
  // DOMParser would expand declared entities: a device gets no entity bombs.
  if (/<!ENTITY/i.test(text)) throw new Error("the plist declares XML entities; not parsed");
  const document = new DOMParser().parseFromString(text, "application/xml");
  if (document.getElementsByTagName("parsererror").length) throw new Error("not well-formed XML");
  const root = document.documentElement;
  if (root.localName !== "plist" || !root.firstElementChild) throw new Error("not a plist");
  return plistValue(root.firstElementChild, 0);
}

/** A base64 plist from the API: its text and, when it parses, its value. */
export function readPlist(base64) {
  let bytes;
  try {
    bytes = decodeBase64(base64);
  } catch {
    return { text: "", value: null, problem: "the result is not valid base64" };
  }
  if (new TextDecoder("latin1").decode(bytes.slice(0, 6)) === "bplist") {
    return {
      text: `(binary plist, ${bytes.length} bytes)`,
      value: null,
      problem: "binary plist: not shown",
    };
  }
  const text = new TextDecoder("utf-8").decode(bytes);
  try {
    return { text, value: parsePlist(text), problem: null };
  } catch (error) {
    return { text, value: null, problem: error.message };
  }
}

function isComposite(value) {
  return value instanceof Map || Array.isArray(value);
}

/** A single value as text; dicts and arrays go through indentedText. */
function scalarText(value) {
  if (value instanceof PlistDate) return value.text;
  if (value instanceof PlistData) return `<${value.size} bytes of data>`;
  if (value instanceof Map) return value.size ? `{${value.size} keys}` : "{}";
  if (Array.isArray(value)) return value.length ? `[${value.length} items]` : "[]";
  return String(value);
}

function indentedLines(value, pad, lines) {
  const entries = value instanceof Map ? [...value] : value.map((item, i) => [`[${i}]`, item]);
  for (const [key, item] of entries) {
    const label =
      value instanceof Map ? `${key}:` : Array.isArray(value) && !isComposite(item) ? "-" : key;
    if (isComposite(item) && (item.size || item.length)) {
      lines.push(`${pad}${label}`);
      indentedLines(item, `${pad}  `, lines);
    } else {
      lines.push(`${pad}${label} ${scalarText(item)}`);
    }
  }
  return lines;
}

/** Dicts and arrays as indented lines of text. */
function indentedText(value) {
  return isComposite(value) ? indentedLines(value, "", []).join("\n") : scalarText(value);
}

function valueCell(value) {
  if (isComposite(value) && (value.size || value.length)) {
    return el("td", {}, el("div", { class: "nested" }, indentedText(value)));
  }
  return el("td", {}, scalarText(value));
}

/** table.result: a row per key; a dict's keys as indented rows under it (QueryResponses). */
function resultTable(dict) {
  const rows = [];
  for (const [key, value] of dict) {
    if (value instanceof Map && value.size) {
      rows.push(
        el(
          "tr",
          { class: "group" },
          el("th", { scope: "row" }, key),
          el("td", {}, scalarText(value)),
        ),
      );
      for (const [innerKey, innerValue] of value) {
        rows.push(
          el(
            "tr",
            { class: "depth-1" },
            el("th", { scope: "row" }, innerKey),
            valueCell(innerValue),
          ),
        );
      }
    } else {
      rows.push(el("tr", {}, el("th", { scope: "row" }, key), valueCell(value)));
    }
  }
  return el(
    "table",
    { class: "result" },
    el(
      "thead",
      {},
      el("tr", {}, el("th", { scope: "col" }, "Key"), el("th", { scope: "col" }, "Value")),
    ),
    el("tbody", {}, rows),
  );
}

/** The ErrorChain of the API's error_chain, or else of the parsed result. */
function errorChainOf(delivery, value) {
  if (Array.isArray(delivery.error_chain) && delivery.error_chain.length)
    return delivery.error_chain;
  const chain = value instanceof Map ? value.get("ErrorChain") : null;
  if (!Array.isArray(chain)) return [];
  return chain.filter((e) => e instanceof Map).map((e) => Object.fromEntries(e));
}

function errorChainList(chain) {
  return el(
    "ol",
    { class: "error-chain", "aria-label": "Error chain" },
    chain.map((error) =>
      el(
        "li",
        {},
        el(
          "span",
          { class: "error-description" },
          String(error.LocalizedDescription ?? error.USEnglishDescription ?? "(no description)"),
        ),
        " — ",
        el("span", { class: "error-domain" }, String(error.ErrorDomain ?? "?")),
        " ",
        el("span", { class: "error-code" }, String(error.ErrorCode ?? "?")),
      ),
    ),
  );
}

/** The body of a result: error chain, key/value table, raw plist text. */
export function resultView(delivery) {
  if (!delivery.result) {
    return el(
      "p",
      { class: "no-result" },
      delivery.status ? "The report carried no result." : "No result reported yet.",
    );
  }
  const { text, value, problem } = readPlist(delivery.result);
  const chain = errorChainOf(delivery, value);
  return el(
    "div",
    { class: "result-body" },
    chain.length ? errorChainList(chain) : null,
    value instanceof Map ? tableWrap(resultTable(value)) : null,
    problem ? el("p", { class: "failed" }, `Result not shown as a table: ${problem}`) : null,
    el("pre", { class: "result-raw", "aria-label": "Result plist" }, text),
  );
}

/** A details element holding a delivery's result, closed unless `open`. */
export function resultDetails(delivery, open = false) {
  const what = delivery.result ? "Result" : "No result";
  const chain = delivery.error_chain
    ? ` (${delivery.error_chain.length} error${delivery.error_chain.length === 1 ? "" : "s"})`
    : "";
  return el(
    "details",
    { class: "result-details", open },
    el("summary", {}, what + chain),
    resultView(delivery),
  );
}
