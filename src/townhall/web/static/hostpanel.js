// The studio's panels for the space itself: edit its details (host), mute everyone
// on stage at once, see who is listening (signed-in by name, the rest counted), and
// the space's clips, which the host may delete.

import { api, del, get, post, spacePath } from './api.js';
import { $, act, h, plural, say } from './ui.js';

export class DetailsEditor {
  constructor(spaceId, onSnapshot) {
    this.spaceId = spaceId;
    this.onSnapshot = onSnapshot;
    this.filled = false;
    this.form = $('#details-form');
    this.status = $('#details-status');
    this.form.addEventListener('submit', (event) => {
      event.preventDefault();
      this.run(this.form.querySelector('button[type=submit]'), () => this.save(),
        'Saved. Listeners see it within seconds.');
    });
    $('#mute-all').addEventListener('click', (event) => this.run(event.currentTarget,
      () => post(spacePath(this.spaceId, 'mute-all')), 'Everyone on stage is muted.'));
  }

  async run(button, action, done) {
    const snapshot = await act(button, this.status, action);
    if (snapshot === undefined) return;
    this.onSnapshot(snapshot);
    say(this.status, done, 'ok');
  }

  async save() {
    const field = (name) => this.form.elements[name].value;
    const topics = field('topics').split(',').map((t) => t.trim()).filter(Boolean);
    const body = {
      title: field('title'), description: field('description'),
      pinned_url: field('pinned_url').trim() || null, topics,
    };
    return api('PATCH', spacePath(this.spaceId), body);
  }

  /** Shows the space's values once (never over what the host is typing). */
  follow(space, isHost) {
    $('#details-section').hidden = space.state === 'ended';
    this.form.hidden = !isHost;
    $('#mute-all').disabled = space.state !== 'live';
    if (this.filled || !isHost) return;
    this.filled = true;
    this.form.elements.title.value = space.title;
    this.form.elements.description.value = space.description || '';
    this.form.elements.pinned_url.value = space.pinned_url || '';
    this.form.elements.topics.value = (space.topics || []).join(', ');
  }
}

export class ListenerPanel {
  constructor(spaceId) {
    this.spaceId = spaceId;
  }

  async refresh(space) {
    const section = $('#listeners-section');
    section.hidden = space.state !== 'live';
    if (section.hidden) return;
    const found = await get(spacePath(this.spaceId, 'listeners'), { cache: 'no-cache' });
    $('#listener-names').replaceChildren(
      ...found.signed_in.map((user) => h('li', { class: 'member' }, user.username)));
    const others = found.anonymous;
    $('#listener-count').textContent = `${plural(found.listeners, 'listener')}: `
      + `${found.signed_in_count} signed in, ${others} not signed in`;
  }
}

export class ClipList {
  constructor(spaceId) {
    this.spaceId = spaceId;
    this.status = $('#clips-status');
  }

  async refresh() {
    const found = await get(spacePath(this.spaceId, 'clips'), { cache: 'no-cache' });
    $('#clips-section').hidden = found.clips.length === 0;
    $('#clip-list').replaceChildren(...found.clips.map((clip) => h('li', { class: 'member' },
      h('a', { href: clip.page_url }, `${Math.round(clip.duration_s)} s clip`),
      h('span', { class: 'role' }, ` ${clip.source}, ${new Date(clip.created_at).toLocaleTimeString()}`),
      h('button', {
        type: 'button', class: 'danger', 'aria-label': `Delete the clip ${clip.id}`,
        onclick: (event) => act(event.currentTarget, this.status, async () => {
          await del(`/api/clips/${clip.id}`);
          await this.refresh();
        }),
      }, 'Delete'))));
  }
}
