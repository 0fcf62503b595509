// Home: live and upcoming spaces, signing up and in, creating a space.

import { sameOriginPath, showAccount } from './account.js';
import { get, post } from './api.js';
import { showNotifications } from './notifications.js';
import { signIn } from './signin.js';
import { $, formatWhen, h, plural, poll, say } from './ui.js';

const LIST_POLL_MS = 10_000;
const MAX_SCHEDULE_DAYS = 14;
const DAY_MS = 24 * 60 * 60 * 1000;

/** The same-origin path to go back to after signing in, if one was given. */
function nextPath() {
  return sameOriginPath(new URLSearchParams(location.search).get('next'));
}

function spaceItem(space) {
  const href = `/s/${encodeURIComponent(space.id)}`;
  const detail = space.state === 'live'
    ? plural(space.listeners, 'listener')
    : (space.scheduled_for ? `Starts ${formatWhen(space.scheduled_for)}` : 'Ready to go live');
  return h('li', {},
    h('a', { href, class: 'space-link' },
      h('span', { class: 'space-title' }, space.title),
      h('span', { class: 'space-detail' }, `${space.host.username} · ${detail}`)));
}

function fillList(list, spaces, emptyText) {
  list.replaceChildren(...(spaces.length
    ? spaces.map(spaceItem)
    : [h('li', { class: 'empty' }, emptyText)]));
}

async function refreshLists() {
  const { live, upcoming } = await get('/api/spaces');
  fillList($('#live-list'), live, 'Nobody is live right now.');
  fillList($('#upcoming-list'), upcoming, 'Nothing scheduled yet.');
  say($('#page-status'), '');
}

/** datetime-local wants local time without seconds or zone: YYYY-MM-DDTHH:MM. */
function toLocalInput(date) {
  const pad = (n) => String(n).padStart(2, '0');
  return `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())}`
    + `T${pad(date.getHours())}:${pad(date.getMinutes())}`;
}

function setupAuth() {
  const form = $('#auth-form');
  const status = $('#auth-status');
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    const mode = event.submitter?.value || 'signin';
    const username = form.username.value.trim();
    const password = form.password.value;
    if (!username || !password) {
      say(status, 'Enter a username and a password.', 'error');
      return;
    }
    const buttons = form.querySelectorAll('button');
    buttons.forEach((b) => { b.disabled = true; });
    say(status, mode === 'signup' ? 'Creating your account…' : 'Signing in…');
    try {
      await signIn(mode, username, password);
      const next = nextPath();
      if (next) location.assign(next);
      else location.reload();
    } catch (err) {
      say(status, err.message, 'error');
      buttons.forEach((b) => { b.disabled = false; });
    }
  });
  $('#auth').hidden = false;
}

function setupCreate() {
  const form = $('#create-form');
  const status = $('#create-status');
  const when = form.scheduled_for;
  const limits = () => {
    const now = new Date();
    when.min = toLocalInput(now);
    when.max = toLocalInput(new Date(now.getTime() + MAX_SCHEDULE_DAYS * DAY_MS));
  };
  limits();
  when.addEventListener('focus', limits);
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    const body = {
      title: form.title.value.trim(),
      record: form.record.checked,
      speak_policy: form.speak_policy.value,
    };
    if (!body.title) {
      say(status, 'Give your space a title.', 'error');
      return;
    }
    if (when.value) {
      const date = new Date(when.value);
      if (Number.isNaN(date.getTime())) {
        say(status, 'That date is not valid.', 'error');
        return;
      }
      body.scheduled_for = date.toISOString();
    }
    const button = form.querySelector('button[type=submit]');
    button.disabled = true;
    try {
      const space = await post('/api/spaces', body);
      location.assign(`/s/${encodeURIComponent(space.id)}/studio`);
    } catch (err) {
      say(status, err.message, 'error');
      button.disabled = false;
    }
  });
  $('#create').hidden = false;
}

async function main() {
  const user = await showAccount($('#account'));
  if (user) {
    const next = nextPath();
    if (next) {
      location.replace(next);
      return;
    }
    setupCreate();
    showNotifications($('#notices'));
  } else {
    setupAuth();
  }
  poll(refreshLists, LIST_POLL_MS, (err) => say($('#page-status'), err.message, 'error'));
}

main();
