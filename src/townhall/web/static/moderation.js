// The moderators' page (/moderation): the open reports, what each one is about, the
// decisions (each sends the affected person a statement of reasons) and the audit log
// with the result of re-computing its chain. A moderator signs in as themselves; the
// operator enters the server's token, kept in this tab's memory only.

import { showAccount } from './account.js';
import { ApiError, api, get, spacePath } from './api.js';
import { LABELS } from './report.js';
import { $, formatWhen, h, say } from './ui.js';

const AUDIT_SHOWN = 50;
const QUEUE_SHOWN = 50;
const ACTION_LABELS = {
  end_space: 'End the space',
  remove_recording: 'Remove the recording',
  remove_clip: 'Remove the clip',
  suspend_user: 'Suspend',
  restore_user: 'Restore',
};

let token = '';
const call = (method, path, body) => api(method, path, body, { token, cache: 'no-store' });
const status = () => $('#page-status');

/** What a report is about, read from the public API: the space (and its clips) or the user. */
async function subjectOf(report) {
  if (report.subject !== 'space') {
    return { user: { id: report.subject_id, username: report.subject_username } };
  }
  let space = null;
  let clips = [];
  try {
    space = await get(spacePath(report.subject_id), { cache: 'no-store' });
    clips = (await get(spacePath(report.subject_id, 'clips'), { cache: 'no-store' })).clips;
  } catch {
    // a space that is gone leaves only its id; the decisions that remain say so
  }
  return { space, clips, spaceId: report.subject_id };
}

/** The decisions that fit the subject, as [value, label]; value is "action:target". */
function decisionsFor(subject) {
  if (subject.user) {
    const who = subject.user.username || subject.user.id;
    return [
      [`suspend_user:${subject.user.id}`, `${ACTION_LABELS.suspend_user} ${who}`],
      [`restore_user:${subject.user.id}`, `${ACTION_LABELS.restore_user} ${who}`],
    ];
  }
  const { space, clips, spaceId } = subject;
  const choices = [];
  if (!space || space.state !== 'ended') choices.push([`end_space:${spaceId}`, ACTION_LABELS.end_space]);
  if (!space || space.state === 'ended') {
    choices.push([`remove_recording:${spaceId}`, ACTION_LABELS.remove_recording]);
  }
  for (const clip of clips) {
    choices.push([`remove_clip:${clip.id}`,
      `${ACTION_LABELS.remove_clip} of ${Math.round(clip.duration_s)} s made ${formatWhen(clip.created_at)}`]);
  }
  if (space) {
    choices.push([`suspend_user:${space.host.id}`, `${ACTION_LABELS.suspend_user} the host, ${space.host.username}`]);
  }
  return choices;
}

function describe(subject) {
  if (subject.user) {
    return h('p', {}, 'User ', h('strong', {}, subject.user.username || subject.user.id));
  }
  if (!subject.space) return h('p', {}, `Space ${subject.spaceId} (no longer available)`);
  const { space } = subject;
  return h('p', {}, 'Space ', h('a', { href: `/s/${encodeURIComponent(space.id)}` }, space.title),
    ' hosted by ', h('strong', {}, space.host.username), ` · ${space.state}`);
}

function reasonSelect(selected) {
  return h('select', { name: 'ground', required: true },
    Object.entries(LABELS).map(([value, label]) =>
      h('option', { value, selected: value === selected }, label)));
}

function reportItem(report, subject) {
  const decisions = decisionsFor(subject);
  const form = h('form', { class: 'stack action-form' },
    h('label', {}, 'Decision',
      h('select', { name: 'decision', required: true },
        decisions.map(([value, label]) => h('option', { value }, label)))),
    h('label', {}, 'Ground', reasonSelect(report.reason)),
    h('label', {}, 'Statement of reasons (sent to the person affected)',
      h('textarea', { name: 'explanation', required: true, maxlength: '2000', rows: '3' })),
    h('div', { class: 'row' }, h('button', { type: 'submit', class: 'primary' }, 'Decide')),
    h('p', { class: 'status', role: 'status', 'aria-live': 'polite', hidden: true }));
  form.addEventListener('submit', (event) => decide(event, form, report));
  const by = report.reporter_id ? 'a signed-in user' : 'an anonymous visitor';
  return h('li', { class: 'card report', dataset: { reportId: report.id } },
    h('h3', {}, LABELS[report.reason] || report.reason),
    h('p', { class: 'meta' }, `Reported ${formatWhen(report.created_at)} by ${by}`),
    report.details ? h('blockquote', {}, report.details) : null,
    describe(subject),
    form);
}

async function decide(event, form, report) {
  event.preventDefault();
  const button = form.querySelector('button[type=submit]');
  const formStatus = form.querySelector('.status');
  const [action, target] = form.decision.value.split(':');
  button.disabled = true;
  try {
    const statement = await call('POST', '/api/moderation/actions', {
      action, target_id: target, ground: form.ground.value,
      explanation: form.explanation.value.trim(), report_id: report.id,
    });
    say(status(), `Done: ${ACTION_LABELS[statement.action].toLowerCase()}. `
      + 'The statement of reasons was sent.', 'ok');
    await Promise.all([showQueue(), showAudit()]);
  } catch (err) {
    say(formStatus, err.message, 'error');
  } finally {
    button.disabled = false;
  }
}

async function showQueue() {
  const { reports } = await call('GET', `/api/moderation/reports?limit=${QUEUE_SHOWN}`);
  const subjects = await Promise.all(reports.map(subjectOf));
  $('#reports').replaceChildren(...reports.map((report, i) => reportItem(report, subjects[i])));
  $('#queue-count').textContent = `(${reports.length}${reports.length === QUEUE_SHOWN ? '+' : ''})`;
  $('#queue-empty').hidden = reports.length > 0;
}

function showCheck(check) {
  const result = $('#verify-result');
  if (!check.ok) {
    say(result, `Broken at entry ${check.broken_at}: ${check.problem}.`, 'error');
    return;
  }
  const head = check.checkpoint
    ? ` The last one matches the head kept outside the log (#${check.checkpoint.seq}).`
    : ' No head has been kept outside the log since this server started.';
  say(result, `Intact: ${check.entries} entries re-computed.${head}`, 'ok');
}

async function showAudit() {
  const check = await call('GET', '/api/moderation/audit/verify');
  showCheck(check);
  const after = Math.max(0, check.entries - AUDIT_SHOWN);
  const { entries } = await call('GET', `/api/moderation/audit?after=${after}&limit=${AUDIT_SHOWN}`);
  $('#audit-rows').replaceChildren(...entries.reverse().map((entry) => h('tr', {},
    h('td', {}, String(entry.seq)), h('td', {}, formatWhen(entry.at)), h('td', {}, entry.actor),
    h('td', {}, entry.action), h('td', {}, entry.target))));
}

async function open(user) {
  try {
    await showQueue();
  } catch (err) {
    if (err instanceof ApiError && [401, 403].includes(err.status)) {
      const told = token ? err.message
        : user ? 'This account is not a moderator. Enter the operator token, or sign in as a moderator.'
          : 'Sign in as a moderator, or enter the operator token.';
      const kind = token || user ? 'error' : 'info';
      token = '';
      $('#operator').hidden = false;
      say(status(), told, kind);
      return;
    }
    say(status(), err.message, 'error');
    return;
  } finally {
    $('main').setAttribute('aria-busy', 'false');
  }
  say(status(), '');
  $('#operator').hidden = true;
  $('#queue').hidden = false;
  $('#audit').hidden = false;
  try {
    await showAudit();
  } catch (err) {
    say($('#verify-result'), err.message, 'error');
  }
}

async function main() {
  const user = await showAccount($('#account'));
  const form = $('#operator-form');
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    token = form.token.value.trim();
    form.token.value = '';
    await open(user);
  });
  $('#verify').addEventListener('click', async () => {
    try {
      showCheck(await call('GET', '/api/moderation/audit/verify'));
    } catch (err) {
      say($('#verify-result'), err.message, 'error');
    }
  });
  await open(user);
}

main();
