// Sign in or sign up without leaving the page. On the listen page the live
// audio keeps playing: leaving the page to sign in would stop it, and a
// listener who wants to ask to speak would have to press play again.

import { post } from './api.js';
import { h, say } from './ui.js';

/** Signs in, creating the account first when `mode` is 'signup'. */
export async function signIn(mode, username, password) {
  if (mode === 'signup') await post('/api/users', { username, password });
  await post('/api/sessions', { username, password });
}

/**
 * A modal <dialog> with the sign-in form. `open()` resolves true once signed in,
 * false if the person closed it.
 */
export class SignInDialog {
  constructor(reason = 'Sign in to take part.') {
    this.form = h('form', { class: 'stack', id: 'signin-form', method: 'dialog' },
      h('h2', { id: 'signin-h' }, 'Sign in'),
      h('p', { class: 'hint', id: 'signin-reason' }, reason),
      h('label', {}, 'Username',
        h('input', { name: 'username', autocomplete: 'username', required: true,
          maxlength: '32' })),
      h('label', {}, 'Password',
        h('input', { name: 'password', type: 'password', autocomplete: 'current-password',
          required: true })),
      h('div', { class: 'row' },
        h('button', { type: 'submit', class: 'primary', value: 'signin' }, 'Sign in'),
        h('button', { type: 'submit', value: 'signup' }, 'Create account'),
        h('button', { type: 'button', class: 'link', value: 'cancel' }, 'Not now')),
      h('p', { class: 'status', role: 'status', 'aria-live': 'polite', hidden: true }));
    this.status = this.form.querySelector('.status');
    this.dialog = h('dialog', { class: 'card signin', 'aria-labelledby': 'signin-h' }, this.form);
    document.body.append(this.dialog);
    this._resolve = null;
    this.form.querySelector('button[value=cancel]').addEventListener('click', () => this.close(false));
    this.dialog.addEventListener('cancel', () => this._settle(false));
    this.form.addEventListener('submit', (event) => this._submit(event));
  }

  open(reason) {
    if (reason) this.form.querySelector('#signin-reason').textContent = reason;
    say(this.status, '');
    this.dialog.showModal();
    this.form.username.focus();
    return new Promise((resolve) => { this._resolve = resolve; });
  }

  close(signedIn) {
    this.dialog.close();
    this._settle(signedIn);
  }

  _settle(signedIn) {
    const resolve = this._resolve;
    this._resolve = null;
    if (resolve) resolve(signedIn);
  }

  async _submit(event) {
    event.preventDefault();
    const mode = event.submitter?.value || 'signin';
    const username = this.form.username.value.trim();
    const { password } = this.form;
    if (!username || !password.value) {
      say(this.status, 'Enter a username and a password.', 'error');
      return;
    }
    const buttons = this.form.querySelectorAll('button');
    buttons.forEach((b) => { b.disabled = true; });
    say(this.status, mode === 'signup' ? 'Creating your account…' : 'Signing in…');
    try {
      await signIn(mode, username, password.value);
      password.value = '';
      this.close(true);
    } catch (err) {
      say(this.status, err.message, 'error');
    } finally {
      buttons.forEach((b) => { b.disabled = false; });
    }
  }
}
