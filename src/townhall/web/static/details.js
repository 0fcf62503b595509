// What the host tells listeners beyond the title: the description, a pinned link and
// topics. Shared by the listening page and the studio (the snapshot carries them).

import { h } from './ui.js';

/** Fills #description, #pinned and #topics (each hidden when empty). */
export function showDetails(space, root = document) {
  const description = root.querySelector('#description');
  description.textContent = space.description || '';
  description.hidden = !space.description;
  const pinned = root.querySelector('#pinned');
  if (space.pinned_url) {
    const link = h('a', { href: space.pinned_url, rel: 'noopener nofollow ugc', target: '_blank' },
      space.pinned_url);
    pinned.replaceChildren('Pinned: ', link);
  } else {
    pinned.replaceChildren();
  }
  pinned.hidden = !space.pinned_url;
  const topics = root.querySelector('#topics');
  topics.replaceChildren(...(space.topics || []).map((topic) => h('li', { class: 'chip' }, topic)));
  topics.hidden = !(space.topics || []).length;
}
