// The parts of a space's snapshot that several pages show the same way.

import { icon, reactionInfo } from './icons.js';
import { elapsedText } from './room.js';
import { $, formatWhen, h, plural, stateBadge } from './ui.js';

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
    return space.scheduled_for ? `Starts ${formatWhen(space.scheduled_for)}` : '';
  }
  if (space.state === 'live') return '';
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
  set('#state', (el) => el.replaceChildren(stateBadge(space.state, space.scheduled_for)));
  set('#when', (el) => { el.textContent = whenText(space); });
  set('#host', (el) => { el.textContent = space.host.username; });
  set('#listeners', (el) => {
    if (space.state !== 'live') {
      el.replaceChildren();
      return;
    }
    el.replaceChildren(icon('headphones', { size: 16 }),
      h('span', { class: 'n' }, plural(space.listeners, 'listener')));
  });
}

export function spaceUrl(spaceId, page = '') {
  const base = `/s/${encodeURIComponent(spaceId)}`;
  return page ? `${base}/${page}` : base;
}

/** Sum of a space's reaction totals. */
export function reactionCount(space) {
  return Object.values(space.reactions || {}).reduce((sum, n) => sum + n, 0);
}

/** One line on an ended space: how long it lasted, its peak audience, its reactions. */
export function endedSummary(space) {
  const parts = [];
  if (space.started_at && space.ended_at) {
    parts.push(`Lasted ${elapsedText(space.started_at, Date.parse(space.ended_at))}`);
  }
  if (Number.isFinite(space.peak_listeners)) {
    parts.push(`peak ${plural(space.peak_listeners, 'listener')}`);
  }
  parts.push(plural(reactionCount(space), 'reaction'));
  return parts.join(' · ');
}

/** The reaction totals as icon + count chips (the host's end-of-space summary). */
export function reactionChips(space) {
  return Object.entries(space.reactions || {}).filter(([, n]) => n > 0).map(([emoji, n]) => {
    const { icon: name, label } = reactionInfo(emoji);
    return h('span', { class: 'chip', title: label },
      icon(name, { size: 18 }), h('span', { class: 'sr-only' }, `${label}: `), String(n));
  });
}
