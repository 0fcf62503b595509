// Reaction buttons with the space's aggregated totals, drawn as SVG icons.

import { get, post, spacePath } from './api.js';
import { icon, reactionInfo } from './icons.js';
import { h } from './ui.js';

const DEFAULT_ALLOWED = ['👏', '😂', '❤️', '💯', '🔥', '🙌', '😮', '😢'];
/** A short pause between one person's reactions keeps a held-down key from flooding. */
const COOLDOWN_MS = 300;

export class ReactionBar {
  /** `onSent(emoji)` runs when a reaction was accepted (the page floats it). */
  constructor(container, spaceId, statusEl, onSent = () => {}) {
    this.container = container;
    this.onSent = onSent;
    this.spaceId = spaceId;
    this.statusEl = statusEl;
    this.totals = {};
    this.buttons = new Map();
    this.lastSent = 0;
  }

  async load() {
    let allowed = DEFAULT_ALLOWED;
    try {
      allowed = (await get('/api/reactions')).allowed || DEFAULT_ALLOWED;
    } catch {
      // The built-in list is the server's default; good enough to show.
    }
    this.container.replaceChildren(...allowed.map((emoji) => {
      const count = h('span', { class: 'n' }, '0');
      const button = h('button', { type: 'button', class: 'reaction', dataset: { emoji } },
        icon(reactionInfo(emoji).icon, { size: 26 }), count);
      button.addEventListener('click', () => this.send(emoji));
      this.buttons.set(emoji, { button, count });
      return button;
    }));
    this.show(this.totals);
  }

  /**
   * Shows the totals from a snapshot. Totals only grow, so a count is never
   * shown lower than before: a cached snapshot must not undo a reaction just sent.
   */
  show(totals) {
    const merged = { ...this.totals };
    for (const [emoji, n] of Object.entries(totals || {})) {
      merged[emoji] = Math.max(n, merged[emoji] || 0);
    }
    this.totals = merged;
    for (const [emoji, { button, count }] of this.buttons) {
      const n = this.totals[emoji] || 0;
      count.textContent = n ? n.toLocaleString() : '';
      button.setAttribute('aria-label', `React: ${reactionInfo(emoji).label}, ${n} so far`);
    }
  }

  setEnabled(enabled) {
    for (const { button } of this.buttons.values()) button.disabled = !enabled;
  }

  async send(emoji) {
    const now = Date.now();
    if (now - this.lastSent < COOLDOWN_MS) return;
    this.lastSent = now;
    const entry = this.buttons.get(emoji);
    entry.button.classList.remove('pop');
    void entry.button.offsetWidth; // restart the animation
    entry.button.classList.add('pop');
    try {
      await post(spacePath(this.spaceId, 'reactions'), { emoji });
      this.onSent(emoji);
      this.show({ ...this.totals, [emoji]: (this.totals[emoji] || 0) + 1 });
    } catch (err) {
      if (this.statusEl) {
        this.statusEl.textContent = err.message;
        this.statusEl.hidden = false;
      }
    }
  }
}
