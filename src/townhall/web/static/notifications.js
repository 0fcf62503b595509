// Live notifications for a signed-in page: "X is live now" as it happens.
//
// One EventSource on /api/me/events (the session cookie signs it in). Each
// notification becomes a card with a link to the space; the browser reconnects by
// itself after a drop (the server says how soon). Missed events are in the feed
// (GET /api/me/notifications), so nothing here is the only copy.

import { h } from './ui.js';

const MAX_SHOWN = 5;

function describe(note) {
  const who = note.host?.username ?? 'Someone';
  return note.kind === 'space_live'
    ? `${who} is live now: ${note.title}`
    : `${who} scheduled: ${note.title}`;
}

function card(note) {
  const live = note.kind === 'space_live';
  return h('li', { class: 'notice', dataset: { kind: note.kind } },
    h('span', { class: 'notice-text' }, describe(note)), ' ',
    h('a', { href: note.url, class: live ? 'button primary' : 'button' },
      live ? 'Listen' : 'See'));
}

/** Shows this user's live notifications in `list` (an <ul>, hidden until the first). */
export function showNotifications(list) {
  if (!window.EventSource) return null;
  const source = new EventSource('/api/me/events');
  source.addEventListener('notification', (event) => {
    let note;
    try {
      note = JSON.parse(event.data);
    } catch {
      return;
    }
    list.prepend(card(note));
    while (list.children.length > MAX_SHOWN) list.lastElementChild.remove();
    list.hidden = false;
  });
  return source;
}
