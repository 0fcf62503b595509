// Replay page: the recording of an ended space, to play or download.

import { showAccount } from './account.js';
import { ApiError, get, spacePath } from './api.js';
import { showReplayCaptions } from './replaycaptions.js';
import { offerRecordingClips } from './recordingclip.js';
import { showSpaceHeader, spaceUrl } from './space.js';
import { $, h, say, spaceIdFromPath } from './ui.js';

const spaceId = spaceIdFromPath();

async function main() {
  showAccount($('#account'));
  const status = $('#page-status');
  let space;
  try {
    space = await get(spacePath(spaceId));
  } catch (err) {
    $('#title').textContent = err instanceof ApiError && err.status === 404
      ? 'This space does not exist.' : 'Could not load this space.';
    say(status, err.message, 'error');
    return;
  } finally {
    $('main').setAttribute('aria-busy', 'false');
  }
  showSpaceHeader(space);
  if (space.recording_url) {
    $('#recording-audio').src = space.recording_url;
    const url = new URL(space.recording_url, location.href);
    url.searchParams.set('download', '1'); // the server then answers as an attachment
    $('#download').href = url.href;
    $('#download').setAttribute('download', `${space.title}.m4a`);
    $('#recording').hidden = false;
    if (space.captions) {
      showReplayCaptions($('#recording-audio'), $('#replay-captions'), spacePath(spaceId, 'captions.vtt'));
    }
    offerRecordingClips(space);
  } else if (space.state === 'ended') {
    say(status, space.record ? 'The recording is not available.' : 'This space was not recorded.');
  } else {
    status.replaceChildren(
      space.state === 'live' ? 'This space is live right now. ' : 'This space has not happened yet. ',
      h('a', { href: spaceUrl(spaceId) }, space.state === 'live' ? 'Listen live' : 'See the space'));
    status.hidden = false;
  }
}

main();
