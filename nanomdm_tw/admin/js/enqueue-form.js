// form#enqueue-form of the enrollment page: a command from GET /v1/catalogue,
// its arguments as inputs named arg-<Key>, sent as POST /v1/enqueue with
// request_type and arguments.  A destructive command (EraseDevice) needs the
// enrollment ID typed into input#confirm-destructive first.

import { apiResult } from "./api.js";
import { el, fill } from "./dom.js";
import { commandLink } from "./format.js";

const DEFAULT_COMMAND = "DeviceInformation";

function splitList(text) {
  return text.split(/[\s,]+/).filter(Boolean);
}

function fileBase64(file) {
  return new Promise((resolve, reject) => {
    const reader = new FileReader();
    reader.addEventListener("load", () =>
      resolve(String(reader.result).replace(/^data:[^,]*,/, "")),
    );
    reader.addEventListener("error", () => reject(new Error(`cannot read ${file.name}`)));
    reader.readAsDataURL(file);
  });
}

function label(argument, forId) {
  return el(
    "label",
    { for: forId },
    argument.key,
    argument.required ? " (required)" : null,
    argument.help ? el("span", { class: "help" }, argument.help) : null,
  );
}

/** One argument's inputs and how to read its value (undefined: not given). */
function argumentField(argument) {
  const name = `arg-${argument.key}`;
  const id = `arg-${argument.key}`;
  const required = Boolean(argument.required);
  if (argument.kind === "strings" && Array.isArray(argument.choices)) {
    const preset = new Set(argument.default || []);
    const boxes = argument.choices.map((choice) =>
      el("input", {
        type: "checkbox",
        name,
        value: choice,
        id: `${id}-${choice}`,
        checked: preset.has(choice),
      }),
    );
    const more = el("input", {
      type: "text",
      name: `more-${argument.key}`,
      id: `more-${argument.key}`,
      autocomplete: "off",
      spellcheck: "false",
    });
    return {
      node: el(
        "fieldset",
        { class: "argument" },
        el(
          "legend",
          {},
          argument.key,
          argument.help ? el("span", { class: "help" }, argument.help) : null,
        ),
        el(
          "div",
          { class: "choices" },
          boxes.map((box) => el("label", { class: "check", for: box.id }, box, " ", box.value)),
        ),
        el(
          "div",
          { class: "field" },
          el(
            "label",
            { for: more.id },
            "More",
            el("span", { class: "help" }, "other keys, separated by spaces or commas"),
          ),
          more,
        ),
      ),
      read: async () => {
        const values = [
          ...boxes.filter((b) => b.checked).map((b) => b.value),
          ...splitList(more.value),
        ];
        return values.length ? values : undefined;
      },
    };
  }
  if (argument.kind === "string" && Array.isArray(argument.choices)) {
    const select = el(
      "select",
      { name, id, required },
      required ? null : el("option", { value: "" }, "(none)"),
      argument.choices.map((choice) =>
        el("option", { value: choice, selected: choice === argument.default }, choice),
      ),
    );
    return {
      node: el("div", { class: "field argument" }, label(argument, id), select),
      read: async () => select.value || undefined,
    };
  }
  if (argument.kind === "boolean") {
    const box = el("input", { type: "checkbox", name, id, checked: argument.default === true });
    return {
      node: el(
        "div",
        { class: "field argument" },
        el(
          "label",
          { class: "check", for: id },
          box,
          " ",
          argument.key,
          argument.help ? el("span", { class: "help" }, argument.help) : null,
        ),
      ),
      read: async () => (box.checked ? true : undefined),
    };
  }
  if (argument.kind === "data") {
    const input = el("input", { type: "file", name, id, required });
    return {
      node: el("div", { class: "field argument" }, label(argument, id), input),
      read: async () => (input.files.length ? fileBase64(input.files[0]) : undefined),
    };
  }
  const input = el("input", {
    type: argument.kind === "integer" ? "number" : "text",
    step: argument.kind === "integer" ? 1 : null,
    name,
    id,
    required,
    autocomplete: "off",
    spellcheck: "false",
    value:
      argument.default !== null &&
      argument.default !== undefined &&
      !Array.isArray(argument.default)
        ? argument.default
        : null,
    placeholder: argument.kind === "strings" ? "separated by spaces or commas" : null,
  });
  return {
    node: el("div", { class: "field argument" }, label(argument, id), input),
    read: async () => {
      const text = input.value.trim();
      if (!text) return undefined;
      if (argument.kind === "strings") return splitList(text);
      if (argument.kind === "integer" && /^[+-]?[0-9]+$/.test(text)) return Number(text);
      return text;
    },
  };
}

/** What the API result says happened to one enrollment, as notice text. */
function outcomeText(result, enrollmentId) {
  const mine = (result.status || {})[enrollmentId] || {};
  if (result.no_push) return "queued without a push";
  if (result.push_error) return `queued, but the push failed: ${result.push_error}`;
  if (mine.push_error) return `queued, but the push failed: ${mine.push_error}`;
  if (mine.push_result) return `queued and pushed (apns-id ${mine.push_result})`;
  return "queued";
}

export function enqueueForm(enrollmentId, catalogue, context) {
  const commands = catalogue.commands || [];
  const byType = new Map(commands.map((c) => [c.request_type, c]));
  const select = el(
    "select",
    { id: "command-type", name: "command-type" },
    el(
      "optgroup",
      { label: "Ask (changes nothing)" },
      commands
        .filter((c) => c.read_only)
        .map((c) => el("option", { value: c.request_type }, c.request_type)),
    ),
    el(
      "optgroup",
      { label: "Change the device" },
      commands
        .filter((c) => !c.read_only)
        .map((c) =>
          el(
            "option",
            { value: c.request_type },
            c.request_type,
            c.destructive ? " (destructive)" : "",
          ),
        ),
    ),
  );
  if (byType.has(DEFAULT_COMMAND)) select.value = DEFAULT_COMMAND;
  const summary = el("p", { id: "command-summary", class: "help" });
  const argumentsBox = el("div", { class: "arguments" });
  const confirmInput = el("input", {
    type: "text",
    id: "confirm-destructive",
    name: "confirm-destructive",
    autocomplete: "off",
    spellcheck: "false",
  });
  const confirmBox = el(
    "fieldset",
    { class: "destructive", hidden: true },
    el("legend", {}, "This command deletes data on the device for good"),
    el(
      "label",
      { for: "confirm-destructive" },
      "Type the enrollment ID to confirm",
      el("span", { class: "help mono" }, enrollmentId),
    ),
    confirmInput,
  );
  const noPush = el("input", { type: "checkbox", id: "enqueue-no-push", name: "no-push" });
  const submit = el("button", { type: "submit", id: "enqueue" }, "Queue command");
  let fields = [];

  function destructive() {
    return Boolean(byType.get(select.value)?.destructive);
  }

  function updateSubmit() {
    submit.disabled = destructive() && confirmInput.value.trim() !== enrollmentId;
  }

  function chooseCommand() {
    const spec = byType.get(select.value);
    fill(summary, spec ? spec.summary : "");
    fields = (spec?.arguments || []).map((argument) => ({ argument, ...argumentField(argument) }));
    fill(
      argumentsBox,
      fields.length
        ? fields.map((f) => f.node)
        : el("p", { class: "help" }, "This command takes no arguments."),
    );
    confirmBox.hidden = !destructive();
    confirmInput.value = "";
    submit.classList.toggle("danger", destructive());
    updateSubmit();
  }

  async function enqueue(event) {
    event.preventDefault();
    if (destructive() && confirmInput.value.trim() !== enrollmentId) {
      context.fail("Type the enrollment ID into the confirmation field to send this command.");
      confirmInput.focus();
      return;
    }
    context.clearMessages();
    submit.disabled = true;
    const requestType = select.value;
    try {
      const values = {};
      for (const { argument, read } of fields) {
        const value = await read();
        if (value !== undefined) values[argument.key] = value;
      }
      const body = { ids: [enrollmentId], request_type: requestType, arguments: values };
      if (noPush.checked) body.no_push = true;
      const { result } = await apiResult("POST", "/v1/enqueue", body);
      const refused =
        result.command_error || ((result.status || {})[enrollmentId] || {}).command_error;
      if (refused || !result.command_uuid) {
        context.fail(
          `${requestType} was not queued: ${refused || "the server gave no command UUID"}`,
        );
        return;
      }
      context.notify(
        `Queued ${result.request_type || requestType} as `,
        commandLink(result.command_uuid),
        ` (${outcomeText(result, enrollmentId)}).`,
      );
      context.reload();
    } catch (error) {
      context.fail(error);
    } finally {
      updateSubmit();
    }
  }

  select.addEventListener("change", chooseCommand);
  confirmInput.addEventListener("input", updateSubmit);
  chooseCommand();
  return el(
    "form",
    { id: "enqueue-form", on: { submit: enqueue } },
    el("div", { class: "field" }, el("label", { for: "command-type" }, "Command"), select, summary),
    argumentsBox,
    confirmBox,
    el(
      "div",
      { class: "actions" },
      el("label", { class: "check", for: "enqueue-no-push" }, noPush, " Queue only, no push"),
      submit,
    ),
  );
}
