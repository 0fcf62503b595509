// Host studio: a mic test and device choice, go live and end, the mic, the
// request-to-speak queue, the stage (mute, remove, make co-host), the
// audience, reactions floating up, the share link; removing people and ending
// the space kept apart; a summary once it has ended.

import { showAccount, signInHref } from './account.js';
import { del, get, post, spacePath } from './api.js';
import { ClipList, DetailsEditor, ListenerPanel } from './hostpanel.js';
import { MicPanel } from './micpanel.js';
import { listMicrophones, MicTest } from './mictest.js';
import { audienceItems, ElapsedTimer, ReactionFloats, stageTile } from './room.js';
import {
  endedSummary, isOlder, reactionChips, showSpaceHeader, spaceUrl,
} from './space.js';
import { $, act, h, listenUrl, poll, say, spaceIdFromPath, stageMember } from './ui.js';

const POLL_MS = 2_000;
/** The end button asks for a second press within this time. */
const CONFIRM_MS = 5_000;

const spaceId = spaceIdFromPath();
const micPanel = new MicPanel({
  spaceId,
  micButton: $('#mic'),
  muteButton: $('#mute'),
  statusEl: $('#mic-status'),
  remoteAudio: $('#stage-audio'),
  onLabel: 'Turn mic on',
});
const micTest = new MicTest($('#mic-meter'));
const floats = new ReactionFloats($('#floats'));
const elapsed = new ElapsedTimer($('#elapsed'));
const details = new DetailsEditor(spaceId, (snapshot) => { space = snapshot; render(); });
const listenerPanel = new ListenerPanel(spaceId);
const clipList = new ClipList(spaceId);

let me = null;
let mine = null;
let space = null;
let requests = [];
let endArmedUntil = 0;

const isHost = () => mine && mine.role === 'host';

function deny(text, link) {
  $('#denied').hidden = false;
  $('#denied-text').replaceChildren(text, ' ', link || '');
  $('#studio').setAttribute('aria-busy', 'false');
}

/** Runs a moderation action; a snapshot answer is shown at once. */
async function moderate(button, statusEl, action) {
  const answer = await act(button, statusEl, action);
  if (answer && answer.stage) {
    space = answer;
    render();
  }
  await refreshRequests().catch(() => {});
}

function removeFromSpaceButton(user, statusEl) {
  if (!isHost() || user.id === me.id) return null;
  const button = h('button', { type: 'button', class: 'danger small' }, 'Remove from space');
  button.setAttribute('aria-label', `Remove ${user.username} from the space`);
  button.addEventListener('click', () => moderate(button, statusEl,
    () => post(spacePath(spaceId, 'removals'), { user_id: user.id })));
  return button;
}

function stageActions(member) {
  const { user } = member;
  if (user.id === me.id || member.role === 'host') return [];
  const status = $('#stage-status');
  const actions = [];
  const button = (label, aria, cls, action) => {
    const b = h('button', { type: 'button', class: `small ${cls}`, 'aria-label': aria }, label);
    b.addEventListener('click', () => moderate(b, status, action));
    actions.push(b);
  };
  if (!member.muted) {
    button('Mute', `Mute ${user.username}`, '',
      () => post(spacePath(spaceId, 'stage', user.id, 'mute')));
  }
  if (isHost() && member.role === 'speaker') {
    button('Make co-host', `Make ${user.username} a co-host`, '',
      () => post(spacePath(spaceId, 'stage'), { user_id: user.id, role: 'cohost' }));
  }
  button('Remove from stage', `Remove ${user.username} from the stage`, '',
    () => del(spacePath(spaceId, 'stage', user.id)));
  return actions;
}

function renderStage() {
  const list = $('#stage');
  list.replaceChildren(...space.stage.map((member) => stageTile(member, stageActions(member))));
}

/** People the host can remove from the space: kept apart from the everyday buttons. */
function renderDanger() {
  const live = space.state === 'live';
  $('#danger').hidden = !live;
  if (!live) return;
  const people = [...space.stage.map((m) => m.user), ...requests]
    .filter((user, i, all) => all.findIndex((u) => u.id === user.id) === i);
  const items = people.map((user) => {
    const button = removeFromSpaceButton(user, $('#danger-status'));
    return button ? h('li', { class: 'member' },
      h('span', { class: 'who' }, h('span', { class: 'name' }, user.username)), button) : null;
  }).filter(Boolean);
  $('#removals').replaceChildren(...items);
}

function renderSummary() {
  const ended = space.state === 'ended';
  $('#summary').hidden = !ended;
  if (!ended) return;
  // The server keeps `peak_listeners` (live stream and HLS, every node) with the ended space.
  $('#summary-text').textContent = endedSummary(space);
  $('#summary-reactions').replaceChildren(...reactionChips(space));
}

function renderRequests() {
  const list = $('#requests');
  const status = $('#requests-status');
  $('#request-count').textContent = requests.length ? `(${requests.length})` : '';
  if (!requests.length) {
    list.replaceChildren(h('li', { class: 'empty' }, 'No requests right now.'));
    return;
  }
  list.replaceChildren(...requests.map((user) => {
    const approve = h('button', { type: 'button', class: 'small primary',
      'aria-label': `Bring ${user.username} on stage` }, 'Approve');
    approve.addEventListener('click', () => moderate(approve, status,
      () => post(spacePath(spaceId, 'stage'), { user_id: user.id, role: 'speaker' })));
    const decline = h('button', { type: 'button', class: 'small',
      'aria-label': `Decline ${user.username}'s request` }, 'Decline');
    decline.addEventListener('click', () => moderate(decline, status,
      () => del(spacePath(spaceId, 'speak-requests', user.id))));
    return stageMember({ user, role: 'wants to speak', muted: false, speaking: false },
      [approve, decline]);
  }));
}

function renderControls() {
  const { state } = space;
  $('#start').hidden = state !== 'scheduled';
  $('#end').hidden = state !== 'live';
  $('#end').textContent = Date.now() < endArmedUntil ? 'Press again to end for everyone' : 'End space';
  const replay = $('#replay-link');
  replay.hidden = !(state === 'ended' && space.recording_url);
  replay.href = spaceUrl(spaceId, 'replay');
  $('#mic-card').hidden = state === 'ended';
  // An ended space is its summary: who was on stage and the queue are history.
  for (const id of ['#stage-section', '#requests-section']) $(id).hidden = state === 'ended';
  $('#audience-section').hidden = state !== 'live';
  if (state !== 'live') $('#listeners-section').hidden = true; // shown again by its own poll
  $('#mic').hidden = state !== 'live';
  $('#listen-link').href = spaceUrl(spaceId);
  $('#invite-form').hidden = !(space.speak_policy === 'invited' && state !== 'ended');
  if (state !== 'live' && micPanel.active) micPanel.stop();
}

function render() {
  showSpaceHeader(space);
  elapsed.follow(space);
  floats.follow(space.reactions);
  renderControls();
  renderStage();
  renderRequests();
  renderDanger();
  renderSummary();
  details.follow(space, isHost());
  $('#audience').replaceChildren(...(space.state === 'live' ? audienceItems(space, null, true) : []));
  micPanel.sync(space.stage.find((member) => member.user.id === me.id) || null);
}

async function refreshRequests() {
  if (!space || space.state !== 'live') {
    requests = [];
    return;
  }
  requests = (await get(spacePath(spaceId, 'requests'), { cache: 'no-cache' })).requests;
  renderRequests();
  renderDanger();
}

async function refresh() {
  // Hosts are few and act on what they see: always revalidate (a 304 when unchanged).
  const snapshot = await get(spacePath(spaceId), { cache: 'no-cache' });
  if (isOlder(snapshot, space)) return;
  space = snapshot;
  if ($('#page-status').dataset.kind === 'error') say($('#page-status'), '');
  render();
  await refreshRequests();
  await listenerPanel.refresh(space);
  if (isHost()) await clipList.refresh();
}

function setupControls() {
  const status = $('#control-status');
  $('#start').addEventListener('click', (event) => moderate(event.currentTarget, status,
    () => post(spacePath(spaceId, 'start'))));
  $('#end').addEventListener('click', (event) => {
    const button = event.currentTarget;
    if (Date.now() >= endArmedUntil) {
      endArmedUntil = Date.now() + CONFIRM_MS;
      renderControls();
      setTimeout(renderControls, CONFIRM_MS);
      return;
    }
    endArmedUntil = 0;
    micPanel.stop();
    moderate(button, status, () => post(spacePath(spaceId, 'end')));
  });
  setupMicTest();
  const shareUrl = $('#share-url');
  shareUrl.value = listenUrl(spaceId);
  shareUrl.addEventListener('focus', () => shareUrl.select());
  $('#copy').addEventListener('click', async (event) => {
    const button = event.currentTarget;
    try {
      await navigator.clipboard.writeText(shareUrl.value);
    } catch {
      shareUrl.select();
      document.execCommand('copy');
    }
    button.textContent = 'Copied';
    setTimeout(() => { button.textContent = 'Copy link'; }, 1500);
  });
  const invite = $('#invite-form');
  invite.addEventListener('submit', async (event) => {
    event.preventDefault();
    const username = invite.username.value.trim();
    if (!username) return;
    const done = await act(invite.querySelector('button'), $('#requests-status'),
      () => post(spacePath(spaceId, 'invitations'), { username }).then(() => true));
    if (done) {
      invite.reset();
      say($('#requests-status'), 'Invited.', 'ok');
    }
  });
}

async function fillDevices() {
  const select = $('#mic-device');
  const chosen = select.value;
  const mics = await listMicrophones().catch(() => []);
  select.replaceChildren(h('option', { value: '' }, 'Default microphone'),
    ...mics.filter((m) => m.id && m.id !== 'default').map((m) => h('option', { value: m.id }, m.label)));
  select.value = chosen;
}

function setupMicTest() {
  const button = $('#mic-test');
  const status = $('#mic-test-status');
  const select = $('#mic-device');
  const render = () => {
    button.textContent = micTest.running ? 'Stop test' : 'Test mic';
    button.setAttribute('aria-pressed', String(micTest.running));
    $('#mic-meter').hidden = !micTest.running;
  };
  const startTest = async () => {
    try {
      await micTest.start(select.value);
      say(status, 'Speak: the bar should move. Nobody hears this test.', 'info');
      await fillDevices();
    } catch (err) {
      say(status, err.name === 'NotAllowedError'
        ? 'Microphone access was refused. Allow it in the browser.' : err.message, 'error');
    }
    render();
  };
  const stopTest = () => {
    micTest.stop();
    say(status, '');
    render();
  };
  button.addEventListener('click', async () => {
    if (micTest.running) stopTest();
    else await startTest();
  });
  select.addEventListener('change', () => {
    micPanel.mic.deviceId = select.value;
    if (micTest.running) startTest();
  });
  // The stage takes the microphone: the test lets go of it first.
  $('#mic').addEventListener('click', () => {
    if (micTest.running) stopTest(); // its "Nobody hears this test" is no longer true
  }, { capture: true });
  fillDevices();
  render();
}

async function main() {
  if (!spaceId) return deny('No space here.');
  me = await showAccount($('#account'));
  if (!me) {
    return deny('Sign in as the host to use the studio.',
      h('a', { href: signInHref() }, 'Sign in'));
  }
  micPanel.userId = me.id;
  try {
    mine = await get(spacePath(spaceId, 'me'), { cache: 'no-cache' });
  } catch (err) {
    return deny(err.message, h('a', { href: '/' }, 'Back to townhall'));
  }
  if (mine.role !== 'host' && mine.role !== 'cohost') {
    return deny('Only the host and co-hosts can use the studio.',
      h('a', { href: spaceUrl(spaceId) }, 'Listen to this space instead'));
  }
  $('#console').hidden = false;
  setupControls();
  poll(refresh, POLL_MS, (err) => say($('#page-status'), err.message, 'error'));
  $('#studio').setAttribute('aria-busy', 'false');
}

main();
