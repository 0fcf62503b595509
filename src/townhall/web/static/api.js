// The one way pages talk to the townhall API.
//
// Every call sends the session cookie and, for unsafe methods, a JSON
// Content-Type (the server refuses cross-site form posts without it). Error
// answers ({"error": {"code", "message"}}) become thrown ApiErrors whose
// message is written for the person using the page.

/** An API call that did not succeed; `message` is safe to show to the user. */
export class ApiError extends Error {
  constructor(status, code, message, retryAfterS = null, details = {}) {
    super(message);
    this.name = 'ApiError';
    this.status = status;
    this.code = code;
    this.retryAfterS = retryAfterS;
    /** The rest of the error object, e.g. a proof-of-work challenge. */
    this.details = details;
  }
}

const NETWORK_MESSAGE = 'Cannot reach townhall. Check your connection and try again.';

function retryAfterSeconds(res) {
  const value = Number(res.headers.get('Retry-After'));
  return Number.isFinite(value) && value > 0 ? value : null;
}

/**
 * Calls the API and returns the parsed JSON answer (null for 204).
 * @param {string} method
 * @param {string} path
 * @param {object} [body] sent as JSON; unsafe methods always send a JSON body
 * @param {{cache?: RequestCache, token?: string, simple?: boolean}} [options] 'no-cache'
 *   revalidates (If-None-Match) every time instead of accepting what the HTTP cache holds
 *   (stale-while-revalidate); `token` is sent as a Bearer token (the operator's);
 *   `simple` sends no body, no Content-Type and no cookie: a CORS "simple" request,
 *   which another origin (the stream workers' port) answers with no preflight.
 */
export async function api(method, path, body = undefined,
  { cache = 'default', token = '', simple = false } = {}) {
  const init = {
    method, cache, credentials: simple ? 'omit' : 'same-origin',
    headers: { Accept: 'application/json' },
  };
  if (token) init.headers.Authorization = `Bearer ${token}`;
  if (method !== 'GET' && method !== 'HEAD' && !simple) {
    init.headers['Content-Type'] = 'application/json';
    if (body !== undefined || method === 'POST') init.body = JSON.stringify(body ?? {});
  }
  let res;
  try {
    res = await fetch(path, init);
  } catch {
    throw new ApiError(0, 'network', NETWORK_MESSAGE);
  }
  const text = res.status === 204 ? '' : await res.text();
  let data = null;
  if (text) {
    try {
      data = JSON.parse(text);
    } catch {
      data = null;
    }
  }
  if (!res.ok) {
    const error = data && data.error ? data.error : {};
    const message = error.message || `Something went wrong (HTTP ${res.status}).`;
    throw new ApiError(res.status, error.code || `http_${res.status}`, message,
      retryAfterSeconds(res), error);
  }
  return data;
}

export const get = (path, options) => api('GET', path, undefined, options);
export const post = (path, body) => api('POST', path, body);
export const del = (path) => api('DELETE', path);

/** The signed-in user ({id, username}) or null when nobody is signed in. */
export async function currentUser() {
  try {
    return await get('/api/me');
  } catch (err) {
    if (err.status === 401) return null;
    throw err;
  }
}

/** The path of a space's API resource, e.g. spacePath(id, 'join'). */
export function spacePath(spaceId, ...rest) {
  const parts = ['/api/spaces', encodeURIComponent(spaceId), ...rest.map(String)];
  return parts.join('/');
}
