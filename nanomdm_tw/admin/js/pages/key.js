// The API key, typed once per tab: kept in sessionStorage, checked against
// GET /v1/overview before the console goes on.

import { ApiError, forgetKey, getJSON, storeKey } from "../api.js";
import { el } from "../dom.js";

export const title = "API key";

export async function render(context) {
  const input = el("input", {
    id: "api-key",
    name: "api-key",
    type: "password",
    autocomplete: "off",
    spellcheck: "false",
    required: true,
  });
  const submit = el("button", { type: "submit" }, "Use this key");

  async function verify(event) {
    event.preventDefault();
    const key = input.value.trim();
    if (!key) return;
    context.clearMessages();
    context.setState("loading");
    submit.disabled = true;
    storeKey(key);
    try {
      await getJSON("/v1/overview");
    } catch (error) {
      // Any HTTP answer but 401 got past the key check: the next page says what failed.
      if (!(error instanceof ApiError) || error.status === 401 || error.status === 0) {
        forgetKey();
        submit.disabled = false;
        context.fail(error);
        context.setState("error");
        input.select();
        return;
      }
    }
    context.keyAccepted();
  }

  return [
    el("h1", { tabindex: -1 }, "API key"),
    el(
      "p",
      {},
      "The console reads and changes everything through the server's API. Enter the key the ",
      "server was started with (",
      el("code", {}, "-api"),
      "). It stays in this browser tab only (session storage) and is sent with each request.",
    ),
    el(
      "form",
      { id: "key-form", class: "stacked", on: { submit: verify } },
      el("label", { for: "api-key" }, "API key"),
      input,
      el("div", { class: "actions" }, submit),
    ),
  ];
}
