// Small DOM helpers: elements are built from data, never from HTML strings, so nothing a user
// typed can become markup.

/** `h('li', {class: 'x', onclick: f}, child, 'text')` */
export function h(tag, attributes = {}, ...children) {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value === undefined || value === null || value === false) continue;
    if (name.startsWith('on') && typeof value === 'function') {
      element.addEventListener(name.slice(2), value);
    } else if (name === 'dataset') {
      Object.assign(element.dataset, value);
    } else if (value === true) {
      element.setAttribute(name, '');
    } else {
      element.setAttribute(name, String(value));
    }
  }
  element.append(...children.flat().filter((c) => c !== null && c !== undefined && c !== false));
  return element;
}

export const $ = (selector, root = document) => root.querySelector(selector);

/**
 * Makes `container`'s children match `items`, in order, reusing the element of each key:
 * `render(item, element?)` returns the element to show (the old one, updated, or a new one).
 * Focus and scroll survive because unchanged elements stay in place.
 */
export function reconcile(container, items, keyOf, render) {
  const existing = new Map();
  for (const child of container.children) existing.set(child.dataset.key, child);
  let cursor = container.firstElementChild;
  for (const item of items) {
    const key = String(keyOf(item));
    const old = existing.get(key);
    existing.delete(key);
    const element = render(item, old);
    element.dataset.key = key;
    if (old && old !== element) {
      if (old === cursor) cursor = cursor.nextElementSibling;
      old.remove();
    }
    if (element === cursor) cursor = cursor.nextElementSibling;
    else container.insertBefore(element, cursor);
  }
  for (const gone of existing.values()) gone.remove();
}

/** Two letters for an avatar: "Alice Smith" → "AS", "bob" → "BO". */
export function initials(name) {
  const words = String(name || '?').trim().split(/[\s._-]+/).filter(Boolean);
  const letters = words.length > 1 ? words[0][0] + words[1][0] : (words[0] || '?').slice(0, 2);
  return letters.toUpperCase();
}

/** A hue from a string, so each person keeps one avatar colour. */
export function hue(text) {
  let hash = 0;
  for (const char of String(text)) hash = (hash * 31 + char.codePointAt(0)) | 0;
  return Math.abs(hash) % 360;
}

export function avatar(name, extraClass = '') {
  const element = h('span', { class: `avatar ${extraClass}`.trim(), 'aria-hidden': 'true' }, initials(name));
  element.style.setProperty('--hue', hue(name));
  return element;
}

const timeFormat = new Intl.DateTimeFormat(undefined, { hour: '2-digit', minute: '2-digit' });
const dayFormat = new Intl.DateTimeFormat(undefined, { month: 'short', day: 'numeric' });

/** "14:05" today, "Nov 24" before. */
export function shortTime(iso) {
  if (!iso) return '';
  const date = new Date(iso);
  const today = new Date();
  return date.toDateString() === today.toDateString() ? timeFormat.format(date) : dayFormat.format(date);
}

/** "today at 14:05", "on Nov 24 at 09:10". */
export function lastSeen(iso) {
  const date = new Date(iso);
  const day = date.toDateString() === new Date().toDateString() ? 'today' : `on ${dayFormat.format(date)}`;
  return `${day} at ${timeFormat.format(date)}`;
}

export function fullTime(iso) {
  return iso ? new Date(iso).toLocaleString() : '';
}

/** A random id for idempotent sends. */
export function newClientId() {
  if (crypto.randomUUID) return crypto.randomUUID();
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  return Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');
}
