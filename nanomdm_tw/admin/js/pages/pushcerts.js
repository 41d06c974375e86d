// APNs push certificates: GET /v1/pushcerts (topic and expiry, a warning under
// 30 days) and an upload of a new certificate and key (PUT /v1/pushcert).

import { getJSON, sendBody } from "../api.js";
import { el, emptyRow, table, tableWrap } from "../dom.js";
import { PUSH_CERT_HEADERS, pushCertRows, section, WARN_DAYS } from "../format.js";

export const title = "Push certificates";

function readText(file) {
  return file ? file.text() : Promise.resolve("");
}

function uploadForm(context) {
  const cert = el("input", {
    type: "file",
    id: "pushcert-cert",
    name: "pushcert-cert",
    accept: ".pem,.crt,.cer,text/plain",
    required: true,
  });
  const key = el("input", {
    type: "file",
    id: "pushcert-key",
    name: "pushcert-key",
    accept: ".pem,.key,text/plain",
  });
  const submit = el("button", { type: "submit", id: "pushcert-upload" }, "Upload");

  async function upload(event) {
    event.preventDefault();
    context.clearMessages();
    if (!cert.files.length) {
      context.fail("Choose the push certificate file (PEM) first.");
      return;
    }
    submit.disabled = true;
    try {
      const [certText, keyText] = await Promise.all([
        readText(cert.files[0]),
        readText(key.files[0]),
      ]);
      const body = keyText ? `${certText.trimEnd()}\n${keyText.trimEnd()}\n` : certText;
      const stored = await sendBody("PUT", "/v1/pushcert", body, "text/plain");
      context.notify(
        `Stored the push certificate of ${stored.topic}, valid until ${stored.not_after}.`,
      );
      context.reload();
    } catch (error) {
      context.fail(error);
    } finally {
      submit.disabled = false;
    }
  }

  return el(
    "form",
    { id: "pushcert-form", class: "stacked", on: { submit: upload } },
    el(
      "label",
      { for: "pushcert-cert" },
      "Certificate",
      el("span", { class: "help" }, "the APNs MDM push certificate, PEM"),
    ),
    cert,
    el(
      "label",
      { for: "pushcert-key" },
      "Private key",
      el(
        "span",
        { class: "help" },
        "its unencrypted private key, PEM (leave empty when the certificate file holds both)",
      ),
    ),
    key,
    el("div", { class: "actions" }, submit),
  );
}

export async function render(context) {
  const { push_certs: certs = [] } = await getJSON("/v1/pushcerts");
  const expiring = certs.filter((c) => c.error || c.days_left < WARN_DAYS).length;
  return [
    el("h1", { tabindex: -1 }, "Push certificates"),
    el(
      "p",
      {},
      certs.length
        ? `${certs.length} topic${certs.length === 1 ? "" : "s"}`
        : "No push certificate stored",
      expiring
        ? `; ${expiring} expiring within ${WARN_DAYS} days or unreadable: renew at identity.apple.com.`
        : ".",
    ),
    tableWrap(
      table(
        { id: "pushcerts" },
        "Stored push certificates by topic",
        PUSH_CERT_HEADERS,
        certs.length ? pushCertRows(certs) : [emptyRow(3, "No push certificate stored.")],
      ),
    ),
    section(
      "Upload a push certificate",
      el(
        "p",
        {},
        "It replaces the certificate of the same topic. The key goes to the server only, over this connection.",
      ),
      uploadForm(context),
    ),
  ];
}
