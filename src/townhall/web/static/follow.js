// Listen page: "Follow" the host, and "Remind me" on a space that has not started,
// for a signed-in listener. Its own module beside listen.js; it reads the space's
// public snapshot (cached) and the caller's own state, and changes only its buttons.

import { currentUser, del, get, post, spacePath } from './api.js';
import { getSnapshot } from './listenerapi.js';
import { $, h, spaceIdFromPath } from './ui.js';

function toggle(action, on, offLabel, onLabel, change) {
  const attributes = {
    type: 'button', class: 'small', 'aria-pressed': String(on), dataset: { action },
  };
  const button = h('button', attributes, on ? onLabel : offLabel);
  button.addEventListener('click', async () => {
    button.disabled = true;
    try {
      on = await change(!on);
      button.setAttribute('aria-pressed', String(on));
      button.textContent = on ? onLabel : offLabel;
    } finally {
      button.disabled = false;
    }
  });
  return button;
}

async function start() {
  const bar = $('#follow-bar');
  const spaceId = spaceIdFromPath();
  if (!bar || !spaceId) return;
  const user = await currentUser();
  if (!user) return; // an anonymous crowd asks the snapshot once, of the workers (listen.js)
  const space = await getSnapshot(spaceId);
  if (user.id === space.host.id) return;
  const name = space.host.username;
  const followPath = `/api/users/${encodeURIComponent(name)}/follow`;
  const relation = await get(followPath, { cache: 'no-cache' });
  const buttons = [toggle('follow', relation.following, `Follow ${name}`, 'Following',
    async (on) => (await (on ? post(followPath) : del(followPath))).following)];
  if (space.state === 'scheduled') {
    const remindPath = spacePath(spaceId, 'reminders');
    const reminder = await get(remindPath, { cache: 'no-cache' });
    buttons.push(toggle('remind', reminder.reminded, 'Remind me',
      'Reminder set', async (on) => (await (on ? post(remindPath) : del(remindPath))).reminded));
  }
  bar.replaceChildren(...buttons);
  bar.hidden = false;
}

start().catch(() => {});
