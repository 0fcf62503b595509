// Icons as inline SVG. Emoji are not used for anything a person must see:
// Linux desktops without an emoji font show empty boxes. Each icon is a 24x24
// path drawn in currentColor, hidden from screen readers (the control that
// holds it carries the accessible name).

const SVG_NS = 'http://www.w3.org/2000/svg';

/** name -> SVG path data (24x24 viewBox; stroke icons unless listed in FILLED). */
const PATHS = {
  play: 'M8 5v14l11-7z',
  stop: 'M7 7h10v10H7z',
  mic: 'M12 3a3 3 0 0 0-3 3v6a3 3 0 0 0 6 0V6a3 3 0 0 0-3-3zM5 11a7 7 0 0 0 14 0M12 18v3',
  micOff: 'M3 3l18 18M9 9v3a3 3 0 0 0 5.1 2.1M15 10V6a3 3 0 0 0-5.7-1.3M5 11a7 7 0 0 0 11.5 5.4M19 11a7 7 0 0 1-.6 2.8M12 18v3',
  hand: 'M8 13V6a1.5 1.5 0 0 1 3 0v5M11 11V4.5a1.5 1.5 0 0 1 3 0V11M14 11V6a1.5 1.5 0 0 1 3 0v7a7 7 0 0 1-7 7h-.5a6 6 0 0 1-4.9-2.6L3.3 14.3a1.5 1.5 0 0 1 2.4-1.8L8 15',
  share: 'M12 3v13M7 8l5-5 5 5M5 14v5a2 2 0 0 0 2 2h10a2 2 0 0 0 2-2v-5',
  flag: 'M5 21V4M5 4h11l-2 4 2 4H5',
  leave: 'M15 3h4a2 2 0 0 1 2 2v14a2 2 0 0 1-2 2h-4M10 17l-5-5 5-5M5 12h11',
  smile: 'M12 21a9 9 0 1 0 0-18 9 9 0 0 0 0 18zM8 14s1.5 2 4 2 4-2 4-2M9 9.5h.01M15 9.5h.01',
  headphones: 'M3 18v-6a9 9 0 0 1 18 0v6M21 19a2 2 0 0 1-2 2h-1v-6h3zM3 19a2 2 0 0 0 2 2h1v-6H3z',
  clock: 'M12 21a9 9 0 1 0 0-18 9 9 0 0 0 0 18zM12 7v5l3 2',
  users: 'M16 21v-2a4 4 0 0 0-4-4H6a4 4 0 0 0-4 4v2M9 11a4 4 0 1 0 0-8 4 4 0 0 0 0 8zM22 21v-2a4 4 0 0 0-3-3.9M16 3.1a4 4 0 0 1 0 7.8',
  link: 'M10 13a5 5 0 0 0 7.5.5l3-3a5 5 0 0 0-7-7l-1.7 1.7M14 11a5 5 0 0 0-7.5-.5l-3 3a5 5 0 0 0 7 7l1.7-1.7',
  check: 'M20 6L9 17l-5-5',
  close: 'M18 6L6 18M6 6l12 12',
  scissors: 'M6 9a3 3 0 1 0 0-6 3 3 0 0 0 0 6zM6 21a3 3 0 1 0 0-6 3 3 0 0 0 0 6zM20 4L8.1 15.9M14.5 14.5L20 20M8.1 8.1L12 12',
  record: 'M12 21a9 9 0 1 0 0-18 9 9 0 0 0 0 18zM12 15a3 3 0 1 0 0-6 3 3 0 0 0 0 6z',
  // Reactions: what the API calls by emoji, drawn so every desktop shows them.
  clap: 'M7 11l4-4a1.4 1.4 0 0 1 2 2l-2 2M9 13l5-5a1.4 1.4 0 0 1 2 2l-4 4M11 15l4-4a1.4 1.4 0 0 1 2 2l-5 5a6 6 0 0 1-8.5-8.5L6 9a1.4 1.4 0 0 1 2 2M15 3l1-2M18 5l2-1M19 8h2',
  laugh: 'M12 21a9 9 0 1 0 0-18 9 9 0 0 0 0 18zM7 13h10a5 5 0 0 1-10 0zM8 9l2 1-2 1M16 9l-2 1 2 1',
  heart: 'M12 20s-7-4.4-9-9a4.8 4.8 0 0 1 9-3 4.8 4.8 0 0 1 9 3c-2 4.6-9 9-9 9z',
  hundred: 'M3 7v10M7 12a3 5 0 1 0 6 0 3 5 0 1 0-6 0M15 12a3 5 0 1 0 6 0 3 5 0 1 0-6 0M3 20h18',
  fire: 'M12 22a7 7 0 0 0 7-7c0-4-3-6-4-10-1 3-3 4-3 4s0-3-2-6c-1 4-5 7-5 12a7 7 0 0 0 7 7zM12 22a3 3 0 0 1-3-3c0-2 2-3 3-5 1 2 3 3 3 5a3 3 0 0 1-3 3z',
  raised: 'M6 12V5a1.3 1.3 0 0 1 2.6 0v5M8.6 9V3.5a1.3 1.3 0 0 1 2.6 0V10M11.2 10V5a1.3 1.3 0 0 1 2.6 0v7.5a6.5 6.5 0 0 1-6.5 6.5h-.6a5 5 0 0 1-4-2l-1.6-2.4a1.3 1.3 0 0 1 2-1.6L6 14M18 4v4M21 6h-6',
  wow: 'M12 21a9 9 0 1 0 0-18 9 9 0 0 0 0 18zM12 17a2 2.5 0 1 0 0-5 2 2.5 0 0 0 0 5zM9 9h.01M15 9h.01',
  sad: 'M12 21a9 9 0 1 0 0-18 9 9 0 0 0 0 18zM8 16s1.5-2 4-2 4 2 4 2M9 9.5h.01M15 9.5h.01M16 11v2',
};

const FILLED = new Set(['play', 'stop', 'heart']);

/** The reaction emoji the API knows, their icon and their spoken name. */
export const REACTIONS = {
  '👏': { icon: 'clap', label: 'Applause' },
  '😂': { icon: 'laugh', label: 'Laughing' },
  '❤️': { icon: 'heart', label: 'Love' },
  '💯': { icon: 'hundred', label: 'One hundred' },
  '🔥': { icon: 'fire', label: 'Fire' },
  '🙌': { icon: 'raised', label: 'Raised hands' },
  '😮': { icon: 'wow', label: 'Wow' },
  '😢': { icon: 'sad', label: 'Sad' },
};

/** The spoken name and icon of a reaction; an unknown emoji gets a smile icon. */
export function reactionInfo(emoji) {
  return REACTIONS[emoji] || { icon: 'smile', label: 'Reaction' };
}

/** An <svg> element for `name`, decorative (aria-hidden). */
export function icon(name, { size = 20, className = '' } = {}) {
  const svg = document.createElementNS(SVG_NS, 'svg');
  svg.setAttribute('viewBox', '0 0 24 24');
  svg.setAttribute('width', String(size));
  svg.setAttribute('height', String(size));
  svg.setAttribute('aria-hidden', 'true');
  svg.setAttribute('focusable', 'false');
  svg.setAttribute('class', `icon icon-${name} ${className}`.trim());
  const path = document.createElementNS(SVG_NS, 'path');
  path.setAttribute('d', PATHS[name] || PATHS.smile);
  if (FILLED.has(name)) {
    path.setAttribute('fill', 'currentColor');
  } else {
    path.setAttribute('fill', 'none');
    path.setAttribute('stroke', 'currentColor');
    path.setAttribute('stroke-width', '2');
    path.setAttribute('stroke-linecap', 'round');
    path.setAttribute('stroke-linejoin', 'round');
  }
  svg.append(path);
  return svg;
}

/** Replaces a button's content with an icon and a text label. */
export function setButton(button, iconName, text) {
  const label = document.createElement('span');
  label.className = 'label';
  label.textContent = text;
  button.replaceChildren(icon(iconName), label);
}
