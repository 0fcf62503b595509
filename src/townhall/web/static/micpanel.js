// Mic buttons for someone on stage (listen page and studio): turn the mic on
// and off, mute and unmute. The server's `muted` flag is the truth (a host can
// mute you); the local track follows it.

import { post, spacePath } from './api.js';
import { setButton } from './icons.js';
import { say } from './ui.js';
import { StageMic } from './stage.js';

const MIC_MESSAGES = {
  starting: 'Asking for your microphone…',
  connecting: 'Connecting to the stage…',
  reconnecting: 'The stage moved to another server; reconnecting…',
};

export class MicPanel extends EventTarget {
  /**
   * @param {object} opts spaceId, micButton, muteButton, statusEl, remoteAudio,
   *   onLabel (the mic button's text while off)
   */
  constructor({ spaceId, micButton, muteButton, statusEl, remoteAudio, onLabel }) {
    super();
    this.spaceId = spaceId;
    this.micButton = micButton;
    this.muteButton = muteButton;
    this.statusEl = statusEl;
    this.onLabel = onLabel;
    this.userId = null;
    this.muted = false;
    this.mic = new StageMic(spaceId, remoteAudio);
    this.mic.addEventListener('change', () => {
      this.render();
      this.dispatchEvent(new Event('change'));
    });
    micButton.addEventListener('click', () => (this.mic.active ? this.stop() : this.start()));
    muteButton.addEventListener('click', () => this.toggleMute());
    this.render();
  }

  get active() {
    return this.mic.active;
  }

  async start() {
    try {
      await this.mic.start();
    } catch {
      // StageMic reports the failure through its state; render() shows it.
    }
  }

  stop() {
    this.mic.stop();
  }

  async toggleMute() {
    const muting = !this.muted;
    const action = muting ? 'mute' : 'unmute';
    this.muteButton.disabled = true;
    try {
      await post(spacePath(this.spaceId, 'stage', this.userId, action));
      this.sync({ muted: muting });
    } catch (err) {
      say(this.statusEl, err.message, 'error');
    } finally {
      this.muteButton.disabled = false;
    }
  }

  /** Follows the server's view of me on stage ({muted}), or null when I am not on it. */
  sync(member) {
    this.muted = Boolean(member && member.muted);
    this.mic.setMuted(this.muted);
    this.render();
  }

  render() {
    const { state } = this.mic;
    const busy = state === 'starting' || state === 'connecting' || state === 'reconnecting';
    this.micButton.disabled = state === 'starting' || state === 'connecting';
    setButton(this.micButton, this.mic.active ? 'micOff' : 'mic',
      this.mic.active ? (busy ? 'Connecting…' : 'Turn mic off') : this.onLabel);
    this.micButton.classList.toggle('primary', !this.mic.active);
    this.muteButton.hidden = !this.mic.active;
    setButton(this.muteButton, this.muted ? 'micOff' : 'mic', this.muted ? 'Unmute' : 'Mute');
    // Muted is shown loudly (red): a host who thinks they are talking must see it.
    this.muteButton.classList.toggle('muted-on', this.muted);
    this.muteButton.setAttribute('aria-pressed', String(this.muted));
    if (state === 'failed') say(this.statusEl, this.mic.error, 'error');
    else if (busy) say(this.statusEl, MIC_MESSAGES[state]);
    else if (state === 'connected') {
      say(this.statusEl, this.muted ? 'You are muted.' : 'You are live on stage.', this.muted ? 'info' : 'ok');
    } else say(this.statusEl, '');
  }
}
