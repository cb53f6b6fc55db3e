// Shared by the WebUI pages: API calls, safe DOM building, status badges, live streams.
//
// Every piece of data reaches the page through textContent or an attribute: never innerHTML.

export const API = '/api/v1';
export const TERMINAL = new Set(['stopped', 'completed', 'failed', 'cancelled']);

/** An error answered by the API: `status`, and the Problem+JSON body when there is one. */
export class ApiError extends Error {
  constructor(status, problem, text) {
    super((problem && (problem.detail || problem.title)) || text || `HTTP ${status}`);
    this.status = status;
    this.problem = problem || null;
  }

  /** "detail (field: message; ...)" for a person. */
  describe() {
    const errors = this.problem && this.problem.errors;
    if (!errors || typeof errors !== 'object') return this.message;
    const parts = Object.entries(errors).map(([field, msgs]) => `${field}: ${[].concat(msgs).join(', ')}`);
    return parts.length ? `${this.message} (${parts.join('; ')})` : this.message;
  }
}

/** Where a signed-out browser goes: the auth layer's sign-in page, back here afterwards. */
export function signIn() {
  const next = location.pathname + location.search;
  location.assign(`/login?next=${encodeURIComponent(next)}`);
}

/**
 * Call the API. `body` is sent as JSON; control calls without a body send an empty one.
 * Cookies flow (same origin) so a signed-in browser is recognised; a 401 sends it to sign in.
 * Resolves to the parsed JSON (null for 204); rejects with ApiError.
 */
export async function api(path, { method = 'GET', body } = {}) {
  const init = { method, credentials: 'same-origin', headers: { Accept: 'application/json' } };
  if (method !== 'GET') {
    init.headers['Content-Type'] = 'application/json';
    init.body = body === undefined ? '' : JSON.stringify(body);
  }
  const response = await fetch(API + path, init);
  if (response.status === 401) {
    signIn();
    throw new ApiError(401, null, 'Sign in to continue');
  }
  if (response.status === 204) return null;
  const text = await response.text();
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    data = null;
  }
  if (!response.ok) throw new ApiError(response.status, data, text.slice(0, 200));
  return data;
}

/** A session path segment, or a workspace path with each segment encoded. */
export function sessionPath(id) {
  return `/sessions/${encodeURIComponent(id)}`;
}

export function encodePath(path) {
  return path.split('/').map(encodeURIComponent).join('/');
}

/**
 * Build an element. `props`: className, text, title, hidden, href, type, attrs {name: value},
 * dataset {key: value}, on {event: handler}. Children: nodes or strings (as text), null skipped.
 */
export function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (value === undefined || value === null) continue;
    if (key === 'className') node.className = value;
    else if (key === 'text') node.textContent = value;
    else if (key === 'attrs') for (const [n, v] of Object.entries(value)) node.setAttribute(n, v);
    else if (key === 'dataset') Object.assign(node.dataset, value);
    else if (key === 'on') for (const [n, h] of Object.entries(value)) node.addEventListener(n, h);
    else node[key] = value;
  }
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

/** A status badge (the same markup as the `badge` macro in _macros.html). */
export function badge(status) {
  const node = el('span', {});
  setBadge(node, status);
  return node;
}

export function setBadge(node, status) {
  node.className = `badge status-${status}`;
  node.dataset.status = status;
  node.textContent = status;
}

/** A readable local time for an ISO timestamp ('' for none). */
export function formatTime(iso) {
  if (!iso) return '';
  const date = new Date(iso);
  return Number.isNaN(date.getTime()) ? iso : date.toLocaleString();
}

/** The time of day of an ISO timestamp, 24-hour ('' for none). */
export function formatClock(iso) {
  const date = new Date(iso || '');
  if (Number.isNaN(date.getTime())) return '';
  return date.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit', second: '2-digit', hourCycle: 'h23' });
}

/** Rewrite every server-rendered <time datetime> under `root` in the reader's local time. */
export function localiseTimes(root = document) {
  for (const node of root.querySelectorAll('time[datetime]')) {
    const iso = node.getAttribute('datetime');
    if (iso) {
      node.textContent = formatTime(iso);
      node.title = iso;
    }
  }
}

/** Show a message in an error slot (or hide it when `message` is empty). */
export function showError(node, message) {
  node.textContent = message || '';
  node.hidden = !message;
}

/** "+a −r" change counts as nodes. */
export function changeCounts(added, removed) {
  return [el('span', { className: 'added', text: `+${added || 0}` }), ' ',
    el('span', { className: 'removed', text: `\u2212${removed || 0}` })];
}

/**
 * Follow an SSE stream. `handlers` maps event names to functions of the parsed data and the raw
 * MessageEvent. The browser reconnects by itself (sending Last-Event-ID); `onState` hears
 * 'live', 'reconnecting' and 'closed' to show it. Returns the EventSource (call .close()).
 */
export function follow(url, handlers, onState = () => {}) {
  const source = new EventSource(url, { withCredentials: true });
  for (const [name, handler] of Object.entries(handlers)) {
    source.addEventListener(name, (message) => {
      let data;
      try {
        data = JSON.parse(message.data);
      } catch {
        return;
      }
      handler(data, message);
    });
  }
  source.addEventListener('open', () => onState('live'));
  source.addEventListener('error', () => onState(source.readyState === EventSource.CLOSED ? 'closed' : 'reconnecting'));
  return source;
}

/** Reflect a stream's state in the top bar's dot. */
export function showConnection(state) {
  const dot = document.getElementById('connection');
  if (!dot) return;
  dot.dataset.state = state;
  dot.title = { live: 'Live updates on', reconnecting: 'Reconnecting…', closed: 'Live updates ended' }[state] || '';
}
