// Report a space: anyone can, signed in or not (the Digital Services Act's notice
// and action). The reasons come from the server, so the list is never out of date;
// what happens next is said plainly: a person reviews it.

import { get, post } from './api.js';
import { setButton } from './icons.js';
import { h, say } from './ui.js';

/** The reasons a report may give, as people read them. */
export const LABELS = {
  illegal_content: 'Illegal content',
  hate: 'Hate speech',
  harassment: 'Harassment or bullying',
  violence: 'Violence or threats',
  self_harm: 'Suicide or self-harm',
  sexual_content: 'Sexual content',
  misinformation: 'False information',
  spam: 'Spam or scam',
  impersonation: 'Impersonation',
  copyright: 'Copyright',
  other: 'Something else',
};

/** A modal <dialog> with the report form for one space. */
export class ReportDialog {
  constructor(spaceId, onSent) {
    this.spaceId = spaceId;
    this.onSent = onSent;
    this.reason = h('select', { name: 'reason', required: true });
    this.form = h('form', { class: 'stack', id: 'report-form', method: 'dialog' },
      h('h2', { id: 'report-h' }, 'Report this space'),
      h('p', { class: 'hint' }, 'A moderator reviews every report. The host is not told who reported.'),
      h('label', {}, 'Reason', this.reason),
      h('label', {}, 'What happened (optional)',
        h('textarea', { name: 'details', maxlength: '2000', rows: '4' })),
      h('div', { class: 'row' },
        h('button', { type: 'submit', class: 'primary' }, 'Send report'),
        h('button', { type: 'button', class: 'link', value: 'cancel' }, 'Cancel')),
      h('p', { class: 'status', role: 'status', 'aria-live': 'polite', hidden: true }));
    this.status = this.form.querySelector('.status');
    this.dialog = h('dialog', { class: 'card signin', 'aria-labelledby': 'report-h' }, this.form);
    document.body.append(this.dialog);
    this.form.querySelector('button[value=cancel]').addEventListener('click', () => this.dialog.close());
    this.form.addEventListener('submit', (event) => this._submit(event));
  }

  async open() {
    say(this.status, '');
    if (!this.reason.options.length) {
      try {
        const { reasons } = await get('/api/reports/reasons');
        this.reason.replaceChildren(...reasons.map((value) => h('option', { value }, LABELS[value] || value)));
      } catch (err) {
        say(this.status, err.message, 'error');
      }
    }
    this.dialog.showModal();
    this.reason.focus();
  }

  async _submit(event) {
    event.preventDefault();
    const button = this.form.querySelector('button[type=submit]');
    button.disabled = true;
    try {
      await post('/api/reports', {
        space_id: this.spaceId, reason: this.reason.value, details: this.form.details.value.trim(),
      });
      this.form.details.value = '';
      this.dialog.close();
      this.onSent();
    } catch (err) {
      say(this.status, err.message, 'error');
    } finally {
      button.disabled = false;
    }
  }
}

/** Wires the page's Report button; `onSent` is told when a report was sent. */
export function setUpReport(button, spaceId, onSent) {
  setButton(button, 'flag', 'Report this space');
  const dialog = new ReportDialog(spaceId, onSent);
  button.addEventListener('click', () => dialog.open());
}
