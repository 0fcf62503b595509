// The parts of a space's snapshot that several pages show the same way.

import { $, formatWhen, plural, stateBadge } from './ui.js';

const STATE_ORDER = { scheduled: 0, live: 1, ended: 2 };

/**
 * Whether `next` is older than `current`. The snapshot is cacheable
 * (max-age=1, stale-while-revalidate), so a poll may answer with what the
 * cache held before a change this page already saw (e.g. in a POST answer).
 * A space only moves forward: scheduled, live, ended.
 */
export function isOlder(next, current) {
  return Boolean(current) && STATE_ORDER[next.state] < STATE_ORDER[current.state];
}

export function whenText(space) {
  if (space.state === 'scheduled') {
    return space.scheduled_for ? `Starts ${formatWhen(space.scheduled_for)}` : 'Not started yet';
  }
  if (space.state === 'live') return space.started_at ? `Since ${formatWhen(space.started_at)}` : '';
  return space.ended_at ? `Ended ${formatWhen(space.ended_at)}` : '';
}

/** Fills #title, #state, #when, #host and #listeners when the page has them. */
export function showSpaceHeader(space) {
  document.title = `${space.title} — townhall`;
  const set = (selector, fill) => {
    const el = $(selector);
    if (el) fill(el);
  };
  set('#title', (el) => { el.textContent = space.title; });
  set('#state', (el) => el.replaceChildren(stateBadge(space.state)));
  set('#when', (el) => { el.textContent = whenText(space); });
  set('#host', (el) => { el.textContent = space.host.username; });
  set('#listeners', (el) => {
    el.textContent = space.state === 'live' ? `🎧 ${plural(space.listeners, 'listener')}` : '';
  });
}

export function spaceUrl(spaceId, page = '') {
  const base = `/s/${encodeURIComponent(spaceId)}`;
  return page ? `${base}/${page}` : base;
}
