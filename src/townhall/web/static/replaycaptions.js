// Replay page: the captions kept beside the recording (WebVTT), shown in time with it.
// A <track> does the timing; <audio> draws no captions itself, so the active cues are
// written into a section of the page.

import { h } from './ui.js';

export function showReplayCaptions(audio, el, vttUrl) {
  const track = h('track', { kind: 'captions', label: 'English', srclang: 'en', src: vttUrl, default: true });
  audio.append(track);
  track.track.mode = 'hidden';
  track.track.addEventListener('cuechange', () => {
    const lines = [...(track.track.activeCues || [])].map((cue) => h('p', {}, cue.text));
    el.replaceChildren(...lines);
    el.hidden = !lines.length;
  });
}
