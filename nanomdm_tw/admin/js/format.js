// How the pages show the API's values: times, flags, links, push-cert expiry.

import { el } from "./dom.js";

const NEVER = "0001-01-01T00:00:00Z";
export const WARN_DAYS = 30;

/** An RFC 3339 time from the API as readable UTC text in a <time>. */
export function when(text) {
  if (!text || text === NEVER) return "never";
  return el("time", { datetime: text }, text.replace("T", " ").replace(/Z$/, " UTC"));
}

export function yesNo(value) {
  return value ? "yes" : "no";
}

export function enrollmentLink(id) {
  return el("a", { href: `#/enrollment/${encodeURIComponent(id)}` }, id);
}

export function commandLink(uuid) {
  return el("a", { href: `#/command/${encodeURIComponent(uuid)}` }, uuid);
}

export function section(heading, ...children) {
  return el("section", {}, el("h2", {}, heading), ...children);
}

/** What a push certificate's expiry means for the operator. */
function expiryText(cert) {
  if (cert.error) return `cannot be read: ${cert.error}`;
  const days = cert.days_left;
  if (days < 0) return `expired ${-days} day${days === -1 ? "" : "s"} ago`;
  if (days < WARN_DAYS) return `expires in ${days} day${days === 1 ? "" : "s"}`;
  return `${days} days left`;
}

/** Rows tr[data-topic] of push certificates; class warning under 30 days or unreadable. */
export function pushCertRows(certs) {
  return certs.map((cert) =>
    el(
      "tr",
      {
        "data-topic": cert.topic,
        class: cert.error || cert.days_left < WARN_DAYS ? "warning" : null,
      },
      el("th", { scope: "row" }, cert.topic),
      el("td", {}, cert.error ? "unknown" : when(cert.not_after)),
      el("td", { class: "expiry" }, expiryText(cert)),
    ),
  );
}

export const PUSH_CERT_HEADERS = ["Topic", "Valid until", "Expiry"];
