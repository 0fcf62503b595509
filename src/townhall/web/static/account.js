// The account corner of the header, shared by every page.

import { currentUser, del } from './api.js';
import { h } from './ui.js';

/**
 * `next` as a path on this origin, or null. Browsers read '\\' as '/', so '/\\evil.example'
 * is '//evil.example', another site: the URL is resolved the way the browser will and
 * its origin compared, rather than the string inspected.
 */
export function sameOriginPath(next, origin = location.origin) {
  if (!next || !next.startsWith('/')) return null;
  let url;
  try {
    url = new URL(next, origin);
  } catch {
    return null;
  }
  return url.origin === origin ? url.pathname + url.search + url.hash : null;
}

/** Where the sign-in page sends people back to after signing in. */
export function signInHref(next = location.pathname) {
  return `/?next=${encodeURIComponent(next)}`;
}

/**
 * Fills the header's account corner and returns the signed-in user (or null).
 * `onSignOut` runs after signing out; by default the page reloads. With `onSignIn`,
 * "Sign in" is a button that calls it (a dialog on the page) rather than a link away.
 */
export async function showAccount(el, { onSignOut = () => location.reload(), onSignIn = null } = {}) {
  let user = null;
  try {
    user = await currentUser();
  } catch {
    user = null;
  }
  el.replaceChildren();
  if (user) {
    const signOut = h('button', { type: 'button', class: 'link' }, 'Sign out');
    signOut.addEventListener('click', async () => {
      signOut.disabled = true;
      try {
        await del('/api/sessions');
      } finally {
        onSignOut();
      }
    });
    el.append(h('span', { class: 'me' }, user.username), ' ', signOut);
  } else if (onSignIn) {
    const signIn = h('button', { type: 'button', class: 'link', id: 'sign-in' }, 'Sign in');
    signIn.addEventListener('click', onSignIn);
    el.append(signIn);
  } else if (location.pathname !== '/') {
    el.append(h('a', { href: signInHref() }, 'Sign in'));
  }
  return user;
}
