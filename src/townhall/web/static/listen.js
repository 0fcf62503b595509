// Listener page: the room. Follows the space's snapshot, plays it live,
// reactions that float for everyone, requests to speak (signing in on the
// page, so the audio keeps playing), and the mic for people the host brought
// on stage.

import { showAccount } from './account.js';
import { Clipper } from './clipper.js';
import { showDetails } from './details.js';
import { ApiError, currentUser, del, get, post, spacePath } from './api.js';
import { setButton } from './icons.js';
import { getSnapshot, joinAnonymously } from './listenerapi.js';
import { MicPanel } from './micpanel.js';
import { LivePlayer } from './player.js';
import { ReactionBar } from './reactions.js';
import { setUpReport } from './report.js';
import {
  audienceItems, CaptionsView, ElapsedTimer, ReactionFloats, shareLink, stageTile,
} from './room.js';
import { SignInDialog } from './signin.js';
import { endedSummary, isOlder, showSpaceHeader, spaceUrl } from './space.js';
import { $, h, listenUrl, plural, poll, say, spaceIdFromPath } from './ui.js';

const SNAPSHOT_POLL_MS = 2_000;
const OTHER_LIVE_MAX = 5;

const spaceId = spaceIdFromPath();
/** `?via=hls` listens over LL-HLS (what a CDN carries) rather than the live stream. */
const via = new URLSearchParams(location.search).get('via') || '';
// Signed in, the join goes to the API with the session cookie (the ticket names the
// person: removals and one stream per person hold); anonymous, to the stream workers.
const player = new LivePlayer($('#live-audio'), spaceId, {
  preferred: via,
  joinAnonymously: () => (me ? post(spacePath(spaceId, 'join'), {}) : joinAnonymously(spaceId)),
});
window.townhallPlayer = player;
const floats = new ReactionFloats($('#floats'));
const clipper = new Clipper($('#clip'), $('#clip-panel'), spaceId, $('#player-status'));
const reactions = new ReactionBar($('#reactions'), spaceId, $('#page-status'),
  (emoji) => floats.own(emoji));
const elapsed = new ElapsedTimer($('#elapsed'));
const captions = new CaptionsView($('#captions'), spacePath(spaceId, 'captions'));
const signInDialog = new SignInDialog();
const micPanel = new MicPanel({
  spaceId,
  micButton: $('#mic'),
  muteButton: $('#mute'),
  statusEl: $('#mic-status'),
  remoteAudio: $('#stage-audio'),
  onLabel: 'Join stage',
});

let me = null;
/** My standing in this space (GET /me): role, requested, removed... */
let mine = null;
let space = null;
let lastSnapshot = '';
/** Whether the live stream was playing when the mic went on (resume it after). */
let resumeAfterStage = false;
let stopPolling = () => {};
let otherLiveShown = false;

player.isStillLive = async () => {
  const snapshot = await getSnapshot(spaceId);
  return snapshot.state === 'live';
};

/** A wait in words a person reads at a glance: "40 s", "12 min", "2 h". */
function etaText(seconds) {
  const s = Math.max(1, Number(seconds) || 0);
  if (s < 90) return `${Math.ceil(s)} s`;
  if (s < 90 * 60) return `${Math.round(s / 60)} min`;
  return `${Math.round(s / 3600)} h`;
}

function playerText() {
  switch (player.state) {
    case 'joining': return 'Joining…';
    case 'solving': return 'Lots of people are arriving: checking your browser…';
    case 'waiting': {
      const { position, eta_s: eta } = player.wait;
      return `You're number ${Number(position).toLocaleString()} in line, about ${etaText(eta)}`;
    }
    case 'connecting': return 'Connecting…';
    case 'playing': return 'Listening live';
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
  setButton(button, on ? 'stop' : 'play', on ? 'Stop' : 'Play');
  button.setAttribute('aria-label', on ? 'Stop listening' : 'Play the space live');
  button.setAttribute('aria-pressed', String(on));
  let text = playerText();
  if (!text && space && space.state === 'scheduled') {
    text = space.scheduled_for ? 'The space has not started yet.' : 'The host is getting ready to go live.';
  }
  if (!text && live) text = 'Press play to listen.';
  if (micPanel.active) text = 'The live stream is paused while your mic is on.';
  say($('#player-status'), text, player.state === 'error' ? 'error' : 'info');
}

function myStageEntry() {
  if (!me || !space) return null;
  return space.stage.find((member) => member.user.id === me.id) || null;
}

function renderStage() {
  const list = $('#stage');
  list.replaceChildren(...space.stage.map((member) => stageTile(member)));
  if (!space.stage.length) list.append(h('li', { class: 'empty' }, 'Nobody on stage yet.'));
}

function renderAudience() {
  const show = space.state === 'live';
  $('#audience-section').hidden = !show;
  if (show) $('#audience').replaceChildren(...audienceItems(space, me, Boolean(myStageEntry())));
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

/** What the request-to-speak button does now, or null when it has no place. */
function askAction() {
  if (space.state === 'ended' || myStageEntry()) return null;
  if (!me) return { label: 'Request to speak', run: signInThenAsk };
  if (!mine || mine.removed) return null;
  if (mine.requested) return { label: 'Withdraw request', run: () => changeRequest(false) };
  if (space.speak_policy === 'invited' && !mine.invited) return null;
  return { label: 'Request to speak', run: () => changeRequest(true) };
}

function speakText() {
  if (!space || space.state === 'ended') return '';
  if (mine && mine.removed) return 'You were removed from this space.';
  if (myStageEntry()) return '';
  if (mine && mine.requested) return 'You asked to speak. The host will see your request.';
  if (me && mine && space.speak_policy === 'invited' && !mine.invited) {
    return 'Only people the host invites can request to speak here.';
  }
  return '';
}

function renderSpeak() {
  const action = askAction();
  const ask = $('#ask');
  ask.hidden = !action;
  if (action) {
    setButton(ask, 'hand', action.label);
    ask.setAttribute('aria-pressed', String(Boolean(mine && mine.requested)));
  }
  const text = speakText();
  $('#speak').hidden = !text;
  $('#speak-body').replaceChildren(text ? h('p', {}, text) : '');
}

async function renderEnded() {
  const ended = space.state === 'ended';
  $('#ended').hidden = !ended;
  $('#replay').hidden = !(ended && space.recording_url);
  $('#replay-link').href = spaceUrl(spaceId, 'replay');
  $('#stage-section').hidden = ended;
  $('#play').hidden = ended;
  if (!ended) return;
  $('#ended-summary').textContent = endedSummary(space);
  say($('#page-status'), '');
  if (player.playing || player.state === 'error') player.stop('ended');
  if (!otherLiveShown) {
    otherLiveShown = true;
    const { live } = await get('/api/spaces').catch(() => ({ live: [] }));
    const others = live.filter((s) => s.id !== spaceId).slice(0, OTHER_LIVE_MAX);
    $('#other-live').hidden = !others.length;
    $('#other-live-list').replaceChildren(...others.map((s) => h('li', {},
      h('a', { href: spaceUrl(s.id) }, s.title),
      ` · ${s.host.username} · ${plural(s.listeners, 'listener')}`)));
  }
}

function render() {
  showSpaceHeader(space);
  showDetails(space);
  elapsed.follow(space);
  captions.follow(space, (path) => get(path, { cache: 'no-cache' }));
  reactions.show(space.reactions);
  floats.follow(space.reactions);
  reactions.setEnabled(space.state === 'live');
  clipper.setLive(space.state === 'live');
  $('#react-toggle').disabled = space.state !== 'live';
  if (space.state !== 'live') {
    $('#reactions').hidden = true;
    $('#react-toggle').setAttribute('aria-expanded', 'false');
  }
  renderStage();
  renderAudience();
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

async function changeRequest(requesting) {
  const button = $('#ask');
  button.disabled = true;
  try {
    if (requesting) await post(spacePath(spaceId, 'speak-requests'));
    else await del(spacePath(spaceId, 'speak-requests', me.id));
    await refreshMine();
    say($('#speak-status'), '');
    lastSnapshot = '';
  } catch (err) {
    say($('#speak-status'), err.message, 'error');
    $('#speak').hidden = false;
  } finally {
    button.disabled = false;
    render();
  }
}

/** Signs in on the page (the audio keeps playing), then asks to speak. */
async function signInThenAsk() {
  if (!(await signInDialog.open('Sign in to ask the host if you can speak. The audio keeps playing.'))) return;
  await afterSignIn();
  if (askAction()?.label === 'Request to speak') await changeRequest(true);
}

async function afterSignIn() {
  me = await currentUser();
  micPanel.userId = me && me.id;
  await showAccount($('#account'), { onSignIn: openSignIn });
  await refreshMine().catch(() => {});
  if (space) render();
}

async function openSignIn() {
  if (await signInDialog.open('Sign in to take part. The audio keeps playing.')) await afterSignIn();
}

/**
 * Fetches the snapshot. The browser's HTTP cache revalidates it with
 * If-None-Match (the server sends an ETag and max-age=1), so an unchanged
 * space costs a 304. GET /me is only asked when the snapshot changed.
 */
async function refresh() {
  let snapshot;
  try {
    // Always revalidated (If-None-Match): with the browser's stale-while-revalidate copy
    // the listener count lagged by a poll or two (it read 0 while this very page
    // played). Unchanged costs a 304 from memory or from the edge cache, which keeps
    // its own max-age=1 copy whatever the browser asks.
    snapshot = await getSnapshot(spaceId);
  } catch (err) {
    if (err instanceof ApiError && err.status === 404) {
      stopPolling();
      $('#title').textContent = 'This space does not exist.';
      $('.host').hidden = true;
      for (const section of document.querySelectorAll('main > section:not(.room-head)')) {
        section.hidden = true;
      }
      $('#room-bar').hidden = true;
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
  if (space.state === 'ended') stopPolling();
}

function setupBar() {
  $('#play').addEventListener('click', () => {
    if (player.playing) player.stop();
    else player.start();
    renderPlayer();
  });
  player.addEventListener('change', renderPlayer);
  const toggle = $('#react-toggle');
  setButton(toggle, 'smile', 'React');
  toggle.addEventListener('click', () => {
    const open = $('#reactions').hidden;
    $('#reactions').hidden = !open;
    toggle.setAttribute('aria-expanded', String(open));
    if (open) $('#reactions button')?.focus();
  });
  $('#reactions').addEventListener('keydown', (event) => {
    if (event.key !== 'Escape') return;
    $('#reactions').hidden = true;
    toggle.setAttribute('aria-expanded', 'false');
    toggle.focus();
  });
  $('#ask').addEventListener('click', () => askAction()?.run());
  const share = $('#share');
  setButton(share, 'share', 'Share');
  share.addEventListener('click', async () => {
    const how = await shareLink(listenUrl(spaceId), space ? space.title : document.title);
    if (how === 'copied') say($('#player-status'), 'Link copied. Paste it anywhere to invite people.', 'ok');
  });
  setUpReport($('#report'), spaceId, () => say($('#player-status'), 'Thank you. A moderator will review your report.', 'ok'));
  setButton($('#leave-room'), 'leave', 'Leave');
  $('#leave-room').addEventListener('click', () => player.stop());
}

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
    await refresh();
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
  setupBar();
  me = await showAccount($('#account'), { onSignIn: openSignIn });
  micPanel.userId = me && me.id;
  await reactions.load();
  stopPolling = poll(refresh, SNAPSHOT_POLL_MS, (err) => say($('#page-status'), err.message, 'error'));
}

main();
