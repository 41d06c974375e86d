// An enrollment profile to start from: GET /v1/enrollment-profile fills the
// server's URLs and a topic into a .mobileconfig (SCEP left as placeholders),
// shown as text in pre#profile-preview and downloadable.

import { getJSON, getText, query } from "../api.js";
import { downloadBlob, el, fill } from "../dom.js";

export const title = "Enrollment profile";

const OTHER = "";

export async function render(context) {
  const { push_certs: certs = [] } = await getJSON("/v1/pushcerts");
  const topics = certs.map((c) => c.topic);
  const select = el(
    "select",
    { id: "profile-topic", name: "profile-topic" },
    topics.map((topic) => el("option", { value: topic }, topic)),
    el("option", { value: OTHER }, "another topic…"),
  );
  const other = el("input", {
    type: "text",
    id: "profile-topic-other",
    name: "profile-topic-other",
    placeholder: "com.apple.mgmt.External.…",
    autocomplete: "off",
    spellcheck: "false",
  });
  const otherField = el(
    "div",
    { class: "field" },
    el(
      "label",
      { for: "profile-topic-other" },
      "Topic",
      el("span", { class: "help" }, "the push certificate's topic (UID)"),
    ),
    other,
  );
  const url = el("input", {
    type: "url",
    id: "profile-url",
    name: "profile-url",
    value: location.origin,
    required: true,
    autocomplete: "off",
    spellcheck: "false",
  });
  const preview = el("pre", {
    id: "profile-preview",
    "aria-label": "Profile preview",
    tabindex: 0,
  });
  const download = el(
    "button",
    { type: "button", id: "profile-download" },
    "Download enroll.mobileconfig",
  );

  function topic() {
    return select.value === OTHER ? other.value.trim() : select.value;
  }

  function chooseTopic() {
    otherField.hidden = select.value !== OTHER;
  }

  async function fetchProfile() {
    context.clearMessages();
    if (!topic()) throw new Error("Choose a topic, or type one.");
    return getText(`/v1/enrollment-profile${query({ topic: topic(), url: url.value.trim() })}`);
  }

  async function showPreview(event) {
    event?.preventDefault();
    try {
      fill(preview, (await fetchProfile()).text);
    } catch (error) {
      context.fail(error);
    }
  }

  download.addEventListener("click", async () => {
    try {
      const profile = await fetchProfile();
      fill(preview, profile.text);
      downloadBlob(
        new Blob([profile.text], { type: "application/x-apple-aspen-config" }),
        "enroll.mobileconfig",
      );
      context.notify(
        "Downloaded enroll.mobileconfig: put the SCEP URL and challenge in before devices use it.",
      );
    } catch (error) {
      context.fail(error);
    }
  });
  select.addEventListener("change", () => {
    chooseTopic();
    if (topic()) showPreview();
  });
  url.addEventListener("change", () => topic() && showPreview());
  chooseTopic();
  if (topics.length) {
    fill(preview, (await fetchProfile()).text);
  } else {
    fill(preview, "No push certificate is stored: type a topic, then Show.");
  }

  return [
    el("h1", { tabindex: -1 }, "Enrollment profile"),
    el(
      "p",
      {},
      "A .mobileconfig with this server's MDM and check-in URLs and a push topic. Its SCEP payload is a ",
      "placeholder: replace the URL and SCEP-CHALLENGE-HERE with your SCEP server's, then sign and ",
      "distribute it as usual.",
    ),
    el(
      "form",
      { id: "profile-form", class: "stacked", on: { submit: showPreview } },
      el("label", { for: "profile-topic" }, "Push topic"),
      select,
      otherField,
      el(
        "label",
        { for: "profile-url" },
        "Server URL",
        el("span", { class: "help" }, "how devices reach this server (https://…)"),
      ),
      url,
      el(
        "div",
        { class: "actions" },
        el("button", { type: "submit", id: "profile-show", class: "secondary" }, "Show"),
        download,
      ),
    ),
    el("h2", {}, "Profile"),
    preview,
  ];
}
