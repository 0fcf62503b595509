// The host's clip of a recording (replay page): a range, cut on the server without
// re-encoding; the answer is a link to the clip's page.

import { currentUser, post, spacePath } from './api.js';
import { $, act, h, say } from './ui.js';

/** Shows the form to the space's host once the recording is there. */
export async function offerRecordingClips(space) {
  const me = await currentUser().catch(() => null);
  if (!me || me.id !== space.host.id || !space.recording_url) return;
  const form = $('#clip-form');
  const status = $('#clip-status');
  form.hidden = false;
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    const player = $('#recording-audio');
    const start = Number(form.elements.start_s.value || player.currentTime || 0);
    const body = { start_s: start, end_s: start + Number(form.elements.length_s.value) };
    const clip = await act(form.querySelector('button[type=submit]'), status,
      () => post(spacePath(space.id, 'clips'), body));
    if (!clip) return;
    say(status, '');
    status.replaceChildren('Clip made: ', h('a', { href: clip.page_url }, 'open the clip page'));
    status.hidden = false;
  });
}
