// The parts of a space's snapshot that several pages show the same way.

import { $, formatWhen, plural, stateBadge } from './ui.js';

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
