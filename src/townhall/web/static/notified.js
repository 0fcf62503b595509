// Studio: how many followers have been told so far. "X is live" goes out in waves
// paced by what the door can admit, so the host watches the number grow rather
// than seeing it all at once.

import { get, spacePath } from './api.js';
import { $, poll, spaceIdFromPath } from './ui.js';

const POLL_MS = 2_000;
const number = new Intl.NumberFormat();

function describe(progress) {
  const live = progress.announcements.space_live;
  const scheduled = progress.announcements.space_scheduled;
  const audience = progress.followers + progress.reminders;
  if (live && !audience) return ''; // nobody to tell: "Told 0 of 0" says nothing
  if (live) {
    const pace = live.paced && !live.done ? ', paced to what the door admits' : '';
    return `Told ${number.format(live.notified)} of ${number.format(audience)} followers`
      + ` and reminded people that you are live${pace}.`;
  }
  if (scheduled) {
    return `Told ${number.format(scheduled.notified)} followers about this space;`
      + ` ${number.format(progress.reminders)} asked for a reminder.`;
  }
  return audience
    ? `${number.format(progress.followers)} followers and ${number.format(progress.reminders)}`
      + ' reminders will be told when you go live.'
    : '';
}

function start() {
  const el = $('#notified');
  const spaceId = spaceIdFromPath();
  if (!el || !spaceId) return;
  const stop = poll(async () => {
    const progress = await get(spacePath(spaceId, 'notified'), { cache: 'no-cache' });
    const text = describe(progress);
    el.textContent = text;
    el.hidden = !text;
    if (progress.announcements.space_live?.done) stop();
  }, POLL_MS, () => { el.hidden = true; });
}

start();
