// What the listen page and the studio both show of a live room: the stage as
// a grid of avatars with speaking rings, the audience, the elapsed timer,
// reactions floating up, and the share button.

import { icon, reactionInfo } from './icons.js';
import { h, initials, plural } from './ui.js';

/** At most this many floats per snapshot: a burst of 500 reactions is not 500 elements. */
const MAX_FLOATS_PER_UPDATE = 12;
/** Floats on screen at once; older ones are removed first. */
const MAX_FLOATS = 40;
const FLOAT_MS = 2_600;
const ROLE_LABELS = { host: 'Host', cohost: 'Co-host', speaker: 'Speaker' };

/** "1:02:03" or "2:03": how long the space has been live. */
export function elapsedText(startedAt, now = Date.now()) {
  const seconds = Math.max(0, Math.floor((now - Date.parse(startedAt)) / 1000));
  const hh = Math.floor(seconds / 3600);
  const mm = Math.floor((seconds % 3600) / 60);
  const ss = String(seconds % 60).padStart(2, '0');
  return hh ? `${hh}:${String(mm).padStart(2, '0')}:${ss}` : `${mm}:${ss}`;
}

/** Keeps `el` showing the time since the space went live, every second. */
export class ElapsedTimer {
  constructor(el) {
    this.el = el;
    this.startedAt = null;
    this.timer = null;
  }

  follow(space) {
    const live = space.state === 'live' && space.started_at;
    this.el.hidden = !live;
    if (!live) {
      clearInterval(this.timer);
      this.timer = null;
      return;
    }
    this.startedAt = space.started_at;
    if (!this.timer) this.timer = setInterval(() => this._tick(), 1000);
    this._tick();
  }

  _tick() {
    const text = elapsedText(this.startedAt);
    const label = this.el.querySelector('.label') || h('span', { class: 'label' });
    label.textContent = text;
    if (!label.isConnected) this.el.replaceChildren(icon('clock', { size: 16 }), label);
    this.el.setAttribute('aria-label', `Live for ${text}`);
  }
}

/** One person on the stage as a tile: a large avatar with a speaking ring. */
export function stageTile(member, actions = []) {
  const { user } = member;
  const classes = ['tile', `role-${member.role}`];
  if (member.speaking && !member.muted) classes.push('speaking');
  if (member.muted) classes.push('muted');
  if (member.connected === false) classes.push('offline');
  let state = member.muted ? 'muted' : (member.speaking ? 'speaking' : 'mic on');
  if (member.connected === false) state = 'not connected';
  return h('li', { class: classes.join(' '), dataset: { userId: user.id } },
    h('span', { class: 'avatar big', 'aria-hidden': 'true' }, initials(user.username),
      member.muted ? h('span', { class: 'badge-icon' }, icon('micOff', { size: 14 })) : null),
    h('span', { class: 'name', title: user.username }, user.username),
    h('span', { class: 'role' }, `${ROLE_LABELS[member.role] || member.role} · `,
      h('span', { class: 'mic' }, state)),
    actions.length ? h('span', { class: 'actions' }, actions) : null);
}

/** One listener as a small tile: an avatar with initials and the name. */
function listenerTile(user, suffix = '') {
  return h('li', { class: 'tile small', dataset: { userId: user.id } },
    h('span', { class: 'avatar', 'aria-hidden': 'true' }, initials(user.username)),
    h('span', { class: 'name', title: user.username }, user.username + suffix));
}

/**
 * The audience: the signed-in viewer first (when not on stage), then the signed-in
 * listeners the snapshot names (at most 24, the server's bound), then how many
 * others listen (anonymous, over HLS, or past the faces shown).
 */
export function audienceItems(space, me, onStage) {
  const audience = space.audience || { people: [], others: space.listeners };
  const items = [];
  if (me && !onStage) items.push(listenerTile(me, ' (you)'));
  for (const person of audience.people) {
    if (!me || person.id !== me.id) items.push(listenerTile(person));
  }
  const others = items.length ? audience.others : space.listeners;
  items.push(h('li', { class: 'tile small count' },
    h('span', { class: 'avatar', 'aria-hidden': 'true' }, icon('headphones')),
    h('span', { class: 'name' }, items.length
      ? `and ${plural(others, 'other listener')}`
      : plural(others, 'listener'))));
  return items;
}

/**
 * Reactions floating up the page. Snapshots carry totals; what grew since
 * the last one is what others just sent, so it floats for everyone, the
 * host's studio included. Reactions this page sent float at once (`own`).
 */
export class ReactionFloats {
  constructor(layer) {
    this.layer = layer;
    this.seen = null;
    this.ownPending = {};
  }

  /** A reaction this page sent: floats now and is not floated again when counted. */
  own(emoji) {
    this.ownPending[emoji] = (this.ownPending[emoji] || 0) + 1;
    this._float(emoji);
  }

  /** Floats what grew since the last totals (nothing the first time). */
  follow(totals) {
    const current = totals || {};
    if (this.seen !== null) {
      let budget = MAX_FLOATS_PER_UPDATE;
      for (const [emoji, n] of Object.entries(current)) {
        let grew = n - (this.seen[emoji] || 0);
        const mine = Math.min(grew, this.ownPending[emoji] || 0);
        this.ownPending[emoji] = (this.ownPending[emoji] || 0) - mine;
        grew -= mine;
        for (; grew > 0 && budget > 0; grew -= 1, budget -= 1) this._float(emoji);
      }
    }
    this.seen = { ...(this.seen || {}), ...current };
  }

  _float(emoji) {
    while (this.layer.childElementCount >= MAX_FLOATS) this.layer.firstElementChild.remove();
    const { icon: name } = reactionInfo(emoji);
    const el = h('span', { class: 'float', dataset: { emoji } }, icon(name, { size: 30 }));
    el.style.setProperty('--x', `${Math.round(10 + Math.random() * 80)}%`);
    el.style.setProperty('--drift', `${Math.round((Math.random() - 0.5) * 80)}px`);
    this.layer.append(el);
    setTimeout(() => el.remove(), FLOAT_MS);
  }
}

/** Shares a link: the native share sheet where there is one, else the clipboard. */
export async function shareLink(url, title) {
  if (navigator.share) {
    try {
      await navigator.share({ url, title });
      return 'shared';
    } catch (err) {
      if (err && err.name === 'AbortError') return 'cancelled';
    }
  }
  try {
    await navigator.clipboard.writeText(url);
  } catch {
    const input = h('input', { value: url, 'aria-hidden': 'true', class: 'offscreen' });
    document.body.append(input);
    input.select();
    document.execCommand('copy');
    input.remove();
  }
  return 'copied';
}

/** Caption lines kept on screen; older cues scroll away. */
const CAPTION_LINES = 2;
const CAPTIONS_POLL_MS = 2_000;
/** Why a space that asked for captions has none (snapshot `captions_withheld`). */
const CAPTIONS_WITHHELD = {
  node_limit: 'No captions for this space: its server is already captioning as many spaces as it can.',
  no_captioner: 'No captions for this space: its server runs no captioner.',
};

/**
 * Captions on the page when the space has them (snapshot `captions: true`): polls
 * GET /api/spaces/{id}/captions?since= and shows the newest cues. A live space that
 * asked for captions but went live without them says why instead.
 */
export class CaptionsView {
  constructor(el, captionsPath) {
    this.el = el;
    this.path = captionsPath;
    this.since = 0;
    this.lines = [];
    this.timer = null;
  }

  follow(space, fetchJson) {
    const on = Boolean(space.captions) && space.state === 'live';
    const withheld = space.state === 'live' && CAPTIONS_WITHHELD[space.captions_withheld];
    if (withheld) {
      this.el.replaceChildren(h('p', { class: 'captions-withheld' }, withheld));
      this.el.hidden = false;
      return;
    }
    this.el.hidden = !on || !this.lines.length;
    if (on && !this.timer) {
      const tick = async () => {
        try {
          const { cues = [] } = await fetchJson(`${this.path}?since=${this.since}`);
          for (const cue of cues) {
            this.since = Math.max(this.since, cue.end_s);
            this.lines = [...this.lines, cue.text].slice(-CAPTION_LINES);
          }
          this.el.replaceChildren(...this.lines.map((line) => h('p', {}, line)));
          this.el.hidden = !this.lines.length;
        } catch {
          // Captions are extra: a failed poll waits for the next one.
        }
      };
      this.timer = setInterval(tick, CAPTIONS_POLL_MS);
      tick();
    } else if (!on && this.timer) {
      clearInterval(this.timer);
      this.timer = null;
    }
  }
}
