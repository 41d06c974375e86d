// The console's only way to the server: fetch() to /v1 on our own origin with the
// API key as HTTP Basic (user nanomdm).  The key lives in sessionStorage only: never
// in a URL, a cookie or localStorage.  Failures become ApiError with a text that
// says what happened, for #message.

const KEY_NAME = "nanomdm-api-key";
const MAX_DETAIL = 400;

export function storedKey() {
  return sessionStorage.getItem(KEY_NAME);
}

export function storeKey(key) {
  sessionStorage.setItem(KEY_NAME, key);
}

export function forgetKey() {
  sessionStorage.removeItem(KEY_NAME);
}

export class ApiError extends Error {
  constructor(message, status) {
    super(message);
    this.name = "ApiError";
    this.status = status;
  }
}

function basicAuthorization(key) {
  // btoa takes Latin-1 only: encode the key as UTF-8 first, as curl -u would.
  let binary = "";
  for (const byte of new TextEncoder().encode(`nanomdm:${key}`))
    binary += String.fromCharCode(byte);
  return `Basic ${btoa(binary)}`;
}

async function send(method, path, body, contentType) {
  const headers = { Authorization: basicAuthorization(storedKey() || "") };
  if (contentType) headers["Content-Type"] = contentType;
  try {
    return await fetch(path, {
      method,
      headers,
      body,
      credentials: "omit",
      cache: "no-store",
      redirect: "error",
    });
  } catch {
    throw new ApiError(
      `The server did not answer ${method} ${path}: is it running, and reachable from this browser?`,
      0,
    );
  }
}

/** What the server said about a failure: its JSON error, or the start of its text. */
async function detail(response) {
  const text = await response.text().catch(() => "");
  try {
    const document = JSON.parse(text);
    const said = document.error || document.command_error || document.push_error;
    if (typeof said === "string") return said.slice(0, MAX_DETAIL);
  } catch {
    // not JSON: the plain text is the explanation
  }
  return text.trim().slice(0, MAX_DETAIL);
}

async function failure(response, method, path) {
  const said = await detail(response);
  if (response.status === 401) {
    return new ApiError(
      "The API key was refused (401): enter the key the server was started with (-api).",
      401,
    );
  }
  if (response.status === 503) {
    return new ApiError(
      `The server's storage is busy or down (503): ${said || "try again in a moment"}`,
      503,
    );
  }
  return new ApiError(
    `${method} ${path} failed (${response.status})${said ? `: ${said}` : ""}`,
    response.status,
  );
}

/** GET a JSON document; any answer but 200 is an ApiError. */
export async function getJSON(path) {
  const response = await send("GET", path);
  if (!response.ok) throw await failure(response, "GET", path);
  return response.json();
}

/** GET text (a profile, a plist): {text, type}. */
export async function getText(path) {
  const response = await send("GET", path);
  if (!response.ok) throw await failure(response, "GET", path);
  return { text: await response.text(), type: response.headers.get("Content-Type") || "" };
}

/** PUT or POST a body and expect a JSON document back. */
export async function sendBody(method, path, body, contentType) {
  const response = await send(method, path, body, contentType);
  if (!response.ok) throw await failure(response, method, path);
  return response.json();
}

/** DELETE; 204 (or any 2xx) is done. */
export async function remove(path) {
  const response = await send("DELETE", path);
  if (!response.ok) throw await failure(response, "DELETE", path);
}

/**
 * The push and enqueue endpoints answer an API result (per ID a command_error,
 * push_result or push_error) with 200, 207, 400 or 500: {status, result}.
 * Anything that is not such a JSON document is an ApiError.
 */
export async function apiResult(method, path, json) {
  const body = json === undefined ? undefined : JSON.stringify(json);
  const response = await send(method, path, body, body ? "application/json" : undefined);
  const isJSON = (response.headers.get("Content-Type") || "").startsWith("application/json");
  if (![200, 207, 400, 500].includes(response.status) || !isJSON) {
    throw await failure(response, method, path);
  }
  const result = await response.json();
  if (response.status === 400 && typeof result.error === "string") {
    throw new ApiError(`${method} ${path} was refused: ${result.error.slice(0, MAX_DETAIL)}`, 400);
  }
  return { status: response.status, result };
}

/** Query string from an object; arrays repeat their name, empty values are left out. */
export function query(params) {
  const search = new URLSearchParams();
  for (const [name, value] of Object.entries(params)) {
    for (const v of Array.isArray(value) ? value : [value]) {
      if (v !== undefined && v !== null && v !== "") search.append(name, String(v));
    }
  }
  const text = search.toString();
  return text ? `?${text}` : "";
}

/** A path segment: an enrollment ID or UUID as the URL needs it. */
export function segment(text) {
  return encodeURIComponent(text);
}
