// The API client every page uses: JSON in and out, the session cookie, the CSRF header on
// every mutating request, and the server's `{"error": {...}}` turned into an ApiError.
"use strict";

export class ApiError extends Error {
  constructor(status, error) {
    super((error && error.message) || `the server answered ${status}`);
    this.status = status;
    this.code = (error && error.code) || "http_" + status;
    this.field = (error && error.field) || null;
    // What else the error carries (`video_id` of a 409 already_in_library, `store`...).
    this.details = (error && typeof error === "object") ? error : {};
  }
}

let csrfToken = null;
const MUTATING = new Set(["POST", "PUT", "PATCH", "DELETE"]);

/** Call the API; resolves to the parsed JSON body (null for an empty one), or throws an
 * ApiError (status 0 when the server could not be reached). */
export async function api(path, {method = "GET", body, signal} = {}) {
  const headers = {"Accept": "application/json"};
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (MUTATING.has(method) && csrfToken) headers["X-CSRF-Token"] = csrfToken;
  let response;
  try {
    response = await fetch(path, {
      method, headers, signal, credentials: "same-origin",
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  } catch (error) {
    if (error.name === "AbortError") throw error;
    throw new ApiError(0, {code: "unreachable", message: "the server cannot be reached"});
  }
  const text = await response.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch { data = null; }
  if (!response.ok) throw new ApiError(response.status, data && data.error);
  return data;
}

function remember(session) {
  csrfToken = session ? session.csrf : null;
  return session;
}

/** The signed-in session (`{user, role, csrf}`), or null when there is none. */
export async function currentSession() {
  try {
    return remember(await api("/api/session"));
  } catch (error) {
    if (error.status === 401) return remember(null);
    throw error;
  }
}

export async function signIn(credentials) {
  return remember(await api("/api/session", {method: "POST", body: credentials}));
}

export async function signOut() {
  try { await api("/api/session", {method: "DELETE"}); } finally { remember(null); }
}
