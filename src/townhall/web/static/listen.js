// Listener page: follows the space's snapshot, plays it live, reactions,
// requests to speak, and the mic for people the host brought on stage.

import { showAccount, signInHref } from './account.js';
import { ApiError, del, get, post, spacePath } from './api.js';
import { MicPanel } from './micpanel.js';
import { LivePlayer } from './player.js';
import { ReactionBar } from './reactions.js';
import { isOlder, showSpaceHeader, spaceUrl } from './space.js';
import { $, h, poll, say, spaceIdFromPath, stageMember } from './ui.js';

const SNAPSHOT_POLL_MS = 2_000;

const spaceId = spaceIdFromPath();
const player = new LivePlayer($('#live-audio'), spaceId);
window.townhallPlayer = player;
const reactions = new ReactionBar($('#reactions'), spaceId, $('#page-status'));
const micPanel = new MicPanel({
  spaceId,
  micButton: $('#mic'),
  muteButton: $('#mute'),
  statusEl: $('#mic-status'),
  remoteAudio: $('#stage-audio'),
  onLabel: '🎙 Join stage',
});

let me = null;
/** My standing in this space (GET /me): role, requested, removed... */
let mine = null;
let space = null;
let lastSnapshot = '';
/** Whether the live stream was playing when the mic went on (resume it after). */
let resumeAfterStage = false;
let stopPolling = () => {};

function playerText() {
  switch (player.state) {
    case 'joining': return 'Joining…';
    case 'solving': return 'Lots of people are arriving: checking your browser…';
    case 'waiting': {
      const { position, eta_s: eta } = player.wait;
      return `You're number ${Number(position).toLocaleString()} in line, about ${Math.ceil(eta)} s`;
    }
    case 'connecting': return 'Connecting…';
    case 'playing': return 'Live';
    case 'reconnecting': return `Connection lost. Reconnecting in ${player.retryInS} s…`;
    case 'error': return player.error;
    default: return '';
  }
}

function renderPlayer() {
  const button = $('#play');
  const live = space && space.state === 'live' && !(mine && mine.removed);
  const on = player.playing;
  button.disabled = !live || micPanel.active;
  button.textContent = on ? '■ Stop' : '▶ Play';
  button.setAttribute('aria-label', on ? 'Stop listening' : 'Play the space live');
  let text = playerText();
  if (!text && space && space.state === 'scheduled') text = 'The space has not started yet.';
  if (micPanel.active) text = 'The live stream is paused while your mic is on.';
  say($('#player-status'), text, player.state === 'error' ? 'error' : 'info');
}

function myStageEntry() {
  if (!me || !space) return null;
  return space.stage.find((member) => member.user.id === me.id) || null;
}

function renderStage() {
  const list = $('#stage');
  list.replaceChildren(...space.stage.map((member) => stageMember(member)));
  if (!space.stage.length) list.append(h('li', { class: 'empty' }, 'Nobody on stage yet.'));
}

function renderMyStage() {
  const entry = myStageEntry();
  const onStage = Boolean(entry) && space.state === 'live';
  $('#my-stage').hidden = !onStage;
  if (!onStage && micPanel.active) {
    micPanel.stop();
    say($('#page-status'), space.state === 'live' ? 'You are no longer on stage.' : '');
  }
  micPanel.sync(entry);
  const isHost = entry && entry.role === 'host';
  $('#leave').hidden = Boolean(isHost);
}

function speakBody() {
  if (!me) {
    return [h('p', {}, h('a', { href: signInHref() }, 'Sign in'), ' to request to speak.')];
  }
  if (!mine) return [];
  if (mine.removed) return [h('p', {}, 'You were removed from this space.')];
  if (myStageEntry()) return [];
  if (mine.requested) {
    const withdraw = h('button', { type: 'button' }, 'Withdraw request');
    withdraw.addEventListener('click', () => changeRequest(withdraw, false));
    return [h('p', {}, '✋ You asked to speak. The host will see your request.'), withdraw];
  }
  if (space.speak_policy === 'invited' && !mine.invited) {
    return [h('p', {}, 'Only people the host invites can request to speak here.')];
  }
  const ask = h('button', { type: 'button', class: 'primary' }, '✋ Request to speak');
  ask.addEventListener('click', () => changeRequest(ask, true));
  return [ask];
}

function renderSpeak() {
  const section = $('#speak');
  const open = space.state !== 'ended';
  const body = open ? speakBody() : [];
  section.hidden = body.length === 0;
  $('#speak-body').replaceChildren(...body);
}

function renderEnded() {
  const ended = space.state === 'ended';
  $('#ended').hidden = !ended;
  $('#player').hidden = ended;
  $('#replay').hidden = !(ended && space.recording_url);
  $('#replay-link').href = spaceUrl(spaceId, 'replay');
  $('#stage-section').hidden = ended;
  if (ended) say($('#page-status'), '');
  if (ended && (player.playing || player.state === 'error')) player.stop('ended');
}

function render() {
  showSpaceHeader(space);
  reactions.show(space.reactions);
  reactions.setEnabled(space.state !== 'ended');
  renderStage();
  renderEnded();
  renderMyStage();
  renderSpeak();
  renderPlayer();
  const canStudio = mine && (mine.role === 'host' || mine.role === 'cohost');
  $('#studio-link').hidden = !canStudio;
  $('#studio-link a').href = spaceUrl(spaceId, 'studio');
  $('#space').setAttribute('aria-busy', 'false');
}

async function refreshMine() {
  if (!me) return;
  mine = await get(spacePath(spaceId, 'me'), { cache: 'no-cache' });
  if (mine.removed && player.playing) player.stop();
}

async function changeRequest(button, requesting) {
  button.disabled = true;
  try {
    if (requesting) await post(spacePath(spaceId, 'speak-requests'));
    else await del(spacePath(spaceId, 'speak-requests', me.id));
    await refreshMine();
    say($('#speak-status'), '');
    lastSnapshot = '';
  } catch (err) {
    say($('#speak-status'), err.message, 'error');
  } finally {
    button.disabled = false;
    render();
  }
}

/**
 * Fetches the snapshot. The browser's HTTP cache revalidates it with
 * If-None-Match (the server sends an ETag and max-age=1), so an unchanged
 * space costs a 304. GET /me is only asked when the snapshot changed.
 */
async function refresh(fresh = false) {
  let snapshot;
  try {
    // Listeners take what the HTTP cache offers (a few seconds stale at worst, cheap
    // for edges); someone on stage with a live mic needs the fresh truth.
    const cache = fresh || micPanel.active ? 'no-cache' : 'default';
    snapshot = await get(spacePath(spaceId), { cache });
  } catch (err) {
    if (err instanceof ApiError && err.status === 404) {
      stopPolling();
      $('#title').textContent = 'This space does not exist.';
      $('.host').hidden = true;
      for (const section of document.querySelectorAll('main > section:not(.hero)')) {
        section.hidden = true;
      }
      $('#space').setAttribute('aria-busy', 'false');
      return;
    }
    throw err;
  }
  const pageStatus = $('#page-status');
  if (pageStatus.dataset.kind === 'error') say(pageStatus, '');
  const text = JSON.stringify(snapshot);
  if (text === lastSnapshot || isOlder(snapshot, space)) return;
  lastSnapshot = text;
  space = snapshot;
  await refreshMine().catch(() => {});
  render();
}

$('#play').addEventListener('click', () => {
  if (player.playing) player.stop();
  else player.start();
  renderPlayer();
});
player.addEventListener('change', renderPlayer);

micPanel.addEventListener('change', () => {
  if (micPanel.active && player.playing) {
    resumeAfterStage = true;
    player.stop(); // otherwise the speaker hears themselves, late
  } else if (!micPanel.active && resumeAfterStage) {
    resumeAfterStage = false;
    if (space && space.state === 'live') player.start();
  }
  renderPlayer();
});

$('#leave').addEventListener('click', async () => {
  const button = $('#leave');
  button.disabled = true;
  try {
    micPanel.stop();
    await del(spacePath(spaceId, 'stage', me.id));
    lastSnapshot = '';
    await refresh(true);
  } catch (err) {
    say($('#mic-status'), err.message, 'error');
  } finally {
    button.disabled = false;
  }
});

async function main() {
  if (!spaceId) {
    $('#title').textContent = 'No space here.';
    return;
  }
  me = await showAccount($('#account'));
  micPanel.userId = me && me.id;
  await reactions.load();
  stopPolling = poll(refresh, SNAPSHOT_POLL_MS, (err) => say($('#page-status'), err.message, 'error'));
}

main();
