// Clip page: a clip's player and its share link (/c/{id}).

import { showAccount } from './account.js';
import { ApiError, get, spacePath } from './api.js';
import { $, formatWhen, say } from './ui.js';

const clipId = location.pathname.split('/')[2] || '';

async function main() {
  showAccount($('#account'));
  const status = $('#page-status');
  let clip;
  try {
    clip = await get(`/api/clips/${encodeURIComponent(clipId)}/info`);
  } catch (err) {
    $('#title').textContent = err instanceof ApiError && err.status === 404
      ? 'This clip does not exist or has expired.' : 'Could not load this clip.';
    say(status, err.message, 'error');
    return;
  } finally {
    $('main').setAttribute('aria-busy', 'false');
  }
  $('#clip-length').textContent = `· ${Math.round(clip.duration_s)} s`;
  $('#clip-audio').src = clip.url;
  const share = new URL(clip.page_url, location.href).href;
  $('#share-link').value = share;
  $('#copy-link').addEventListener('click', async () => {
    try {
      await navigator.clipboard.writeText(share);
      say(status, 'Link copied.');
    } catch {
      $('#share-link').select();
      say(status, 'Select the link and copy it.');
    }
  });
  $('#space-link').href = `/s/${clip.space_id}`;
  $('#expires').textContent = `Available until ${formatWhen(clip.expires_at)}`;
  $('#clip').hidden = false;
  try {
    const space = await get(spacePath(clip.space_id));
    $('#title').textContent = space.title;
    $('#host').textContent = space.host.username;
  } catch {
    $('#title').textContent = 'A clip';
  }
}

main();
