// The listener's clip button: the last 30 s of the live space, cut on the server
// from audio it already has, then played right here with a link to share.

import { post, spacePath } from './api.js';
import { setButton } from './icons.js';
import { h, say } from './ui.js';
import { shareLink } from './room.js';

export class Clipper {
  constructor(button, panel, spaceId, status) {
    this.button = button;
    this.panel = panel;
    this.spaceId = spaceId;
    this.status = status;
    this.busy = false;
    this.live = false;
    setButton(button, 'scissors', 'Clip');
    button.addEventListener('click', () => this.make());
  }

  /** Clips exist only while the space is live (the host clips recordings). */
  setLive(live) {
    this.live = live;
    this.button.disabled = !live || this.busy;
  }

  async make() {
    this.busy = true;
    this.setLive(this.live);
    say(this.status, 'Clipping the last 30 seconds…');
    try {
      this.show(await post(spacePath(this.spaceId, 'clips'), {}));
      say(this.status, 'Your clip is ready.', 'ok');
    } catch (err) {
      say(this.status, err.message, 'error');
    } finally {
      this.busy = false;
      this.setLive(this.live);
    }
  }

  show(clip) {
    const page = new URL(clip.page_url, location.href).href;
    const share = h('button', { type: 'button', onclick: () => shareLink(page, 'A clip') },
      'Share the clip');
    this.panel.replaceChildren(
      h('h2', { id: 'clip-h' }, 'Your clip'),
      h('audio', { id: 'clip-audio', controls: true, preload: 'auto', src: clip.url }),
      h('p', { class: 'row' }, h('a', { id: 'clip-page', href: clip.page_url }, 'Open the clip page'),
        share),
    );
    this.panel.hidden = false;
  }
}
