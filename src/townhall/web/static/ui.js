// Small DOM helpers shared by the pages: element building, status lines,
// polling with jitter and back-off, and reading the space id from the URL.

/** Builds an element: h('button', {class: 'x', onclick: f}, 'text', child). */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    if (key.startsWith('on') && typeof value === 'function') {
      el.addEventListener(key.slice(2), value);
    } else if (key === 'class') {
      el.className = value;
    } else if (key === 'dataset') {
      Object.assign(el.dataset, value);
    } else {
      el.setAttribute(key, value === true ? '' : String(value));
    }
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

export const $ = (selector, root = document) => root.querySelector(selector);

/** The space id in /s/{id}, /s/{id}/studio or /s/{id}/replay. */
export function spaceIdFromPath(pathname = location.pathname) {
  const match = pathname.match(/^\/s\/([^/]+)/);
  return match ? decodeURIComponent(match[1]) : null;
}

export function listenUrl(spaceId) {
  return `${location.origin}/s/${encodeURIComponent(spaceId)}`;
}

export function formatWhen(iso) {
  if (!iso) return '';
  const date = new Date(iso);
  if (Number.isNaN(date.getTime())) return iso;
  return date.toLocaleString(undefined, {
    weekday: 'short', month: 'short', day: 'numeric', hour: '2-digit', minute: '2-digit',
  });
}

export function plural(count, one, many = `${one}s`) {
  return `${count} ${count === 1 ? one : many}`;
}

/** Shows a message in a status element (an aria-live region); '' clears it. */
export function say(el, message, kind = 'info') {
  if (!el) return;
  el.textContent = message || '';
  el.dataset.kind = kind;
  el.hidden = !message;
}

/** Runs an async action from a button, disabling it meanwhile and reporting errors. */
export async function act(button, statusEl, action) {
  if (button) button.disabled = true;
  try {
    const result = await action();
    say(statusEl, '');
    return result;
  } catch (err) {
    say(statusEl, err.message || String(err), 'error');
    return undefined;
  } finally {
    if (button) button.disabled = false;
  }
}

export function sleep(ms, signal) {
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, ms);
    signal?.addEventListener('abort', () => { clearTimeout(timer); resolve(); }, { once: true });
  });
}

const POLL_JITTER = 0.2;
const POLL_MAX_BACKOFF_MS = 30_000;
const POLL_HIDDEN_FACTOR = 5;

/**
 * Calls `tick` every `intervalMs` (jittered so that many pages do not poll in
 * step), backing off on errors and slowing down while the tab is hidden.
 * Returns a function that stops the polling.
 */
export function poll(tick, intervalMs, onError = () => {}) {
  let stopped = false;
  let failures = 0;
  let timer = null;
  const schedule = () => {
    if (stopped) return;
    let delay = intervalMs * 2 ** Math.min(failures, 6);
    delay = Math.min(delay, Math.max(intervalMs, POLL_MAX_BACKOFF_MS));
    if (document.hidden) delay *= POLL_HIDDEN_FACTOR;
    delay *= 1 - POLL_JITTER + Math.random() * 2 * POLL_JITTER;
    timer = setTimeout(run, delay);
  };
  const run = async () => {
    try {
      await tick();
      failures = 0;
    } catch (err) {
      failures += 1;
      onError(err);
    }
    schedule();
  };
  run();
  return () => { stopped = true; clearTimeout(timer); };
}

export function initials(name) {
  return (name || '?').slice(0, 2).toUpperCase();
}

const ROLE_LABELS = { host: 'Host', cohost: 'Co-host', speaker: 'Speaker' };

/**
 * One person on the stage: avatar with a speaking ring, name, role, mic
 * state. `actions` are extra elements (studio buttons).
 */
export function stageMember(member, actions = []) {
  const { user } = member;
  const classes = ['member'];
  if (member.speaking && !member.muted) classes.push('speaking');
  if (member.connected === false) classes.push('offline');
  const micLabel = member.muted ? 'muted' : (member.speaking ? 'speaking' : 'mic on');
  return h('li', { class: classes.join(' '), dataset: { userId: user.id } },
    h('span', { class: 'avatar', 'aria-hidden': 'true' }, initials(user.username)),
    h('span', { class: 'who' },
      h('span', { class: 'name' }, user.username),
      h('span', { class: 'role' }, ROLE_LABELS[member.role] || member.role,
        member.role in ROLE_LABELS
          ? [' · ', h('span', { class: 'mic' }, member.connected === false ? 'not connected' : micLabel)]
          : null)),
    actions.length ? h('span', { class: 'actions' }, actions) : null);
}

const STATE_LABELS = { scheduled: 'Scheduled', live: 'Live', ended: 'Ended' };

/** A space's state; one created to start now (no date) is "Ready to go live". */
export function stateLabel(state, scheduledFor = null) {
  if (state === 'scheduled' && !scheduledFor) return 'Ready to go live';
  return STATE_LABELS[state] || state;
}

export function stateBadge(state, scheduledFor = null) {
  const ready = state === 'scheduled' && !scheduledFor;
  return h('span', { class: `badge state-${ready ? 'ready' : state}` }, stateLabel(state, scheduledFor));
}
