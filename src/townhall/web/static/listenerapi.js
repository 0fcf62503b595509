// The two calls every arriving listener makes, the snapshot and the anonymous join,
// asked of the node's stream workers when it has them: they answer both on the stream
// port (townhall.edge.listener_api), so a crowd's joins grow with the worker processes
// instead of queueing at the one API process. The page names their base in
// <meta name="townhall-listener-api"> (none without workers: the API answers, as
// before). Requests there are CORS "simple" (no body, no cookie: no preflight). If the
// workers cannot be reached, the page falls back to the API for good.

import { api, ApiError, spacePath } from './api.js';

const meta = document.querySelector('meta[name="townhall-listener-api"]');
let workers = meta ? meta.content.replace(/\/+$/, '') : '';

async function ask(method, path, options = {}) {
  if (workers) {
    try {
      return await api(method, workers + path, undefined, { ...options, simple: true });
    } catch (err) {
      if (!(err instanceof ApiError) || err.status !== 0) throw err;
      workers = ''; // unreachable (not an answer): the API from now on
    }
  }
  return api(method, path, method === 'POST' ? {} : undefined, options);
}

/** Where the snapshot and the anonymous join go now ('' : the page's own origin). */
export function listenerApiBase() {
  return workers;
}

/** The space's snapshot, always revalidated (If-None-Match: an unchanged one is a 304). */
export function getSnapshot(spaceId) {
  return ask('GET', spacePath(spaceId), { cache: 'no-cache' });
}

/** A join with nothing to show (no sign-in, token or proof of work). */
export function joinAnonymously(spaceId) {
  return ask('POST', spacePath(spaceId, 'join'));
}
