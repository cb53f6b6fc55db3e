// The task feed (/): the sessions table kept live from GET /api/v1/events, and the new-task form.
import {
  API, ApiError, TERMINAL, api, badge, changeCounts, el, follow, formatTime, localiseTimes, sessionPath,
  setBadge, showConnection, showError,
} from './harbor.js';

const FEED_SIZE = 50;
const list = document.getElementById('session-list');
const empty = document.getElementById('no-sessions');
const listError = document.getElementById('list-error');

// -- the sessions table ------------------------------------------------------------------------

/** A table row for a session object (the same markup as the `session_row` macro). */
function sessionRow(s) {
  const changes = s.changes && s.changes.files_changed
    ? changeCounts(s.changes.lines_added, s.changes.lines_removed) : [];
  return el('tr', { dataset: { sessionId: s.id } },
    el('td', { className: 'col-status' }, badge(s.status)),
    el('td', { className: 'col-prompt' },
      el('a', { className: 'session-link', href: sessionPath(s.id), text: s.prompt || '(no prompt)' })),
    el('td', { className: 'col-agent', text: (s.agent && s.agent.type) || '' }),
    el('td', { className: 'col-changes' }, ...changes),
    el('td', { className: 'col-created' },
      el('time', { attrs: { datetime: s.createdAt || '' }, text: formatTime(s.createdAt), title: s.createdAt || '' })));
}

function rowOf(id) {
  return list.querySelector(`tr[data-session-id="${CSS.escape(id)}"]`);
}

/** Put a session's row in the table: replaced in place, or added at the top. */
function upsert(session) {
  const row = sessionRow(session);
  const old = rowOf(session.id);
  if (old) old.replaceWith(row);
  else list.prepend(row);
  empty.hidden = true;
}

async function refreshRow(id) {
  try {
    upsert(await api(sessionPath(id)));
  } catch (error) {
    if (error instanceof ApiError && error.status === 404) rowOf(id)?.remove();
  }
}

async function loadList() {
  try {
    const listing = await api(`/sessions?perPage=${FEED_SIZE}`);
    list.replaceChildren(...listing.items.map(sessionRow));
    empty.hidden = listing.items.length > 0;
    showError(listError, '');
  } catch (error) {
    showError(listError, `Could not load the sessions: ${error.describe ? error.describe() : error}`);
  }
}

function onStatus(item) {
  const row = rowOf(item.sessionId);
  if (!row) {
    refreshRow(item.sessionId);
    return;
  }
  setBadge(row.querySelector('.badge'), item.status);
  // Finished sessions have their final change counts: fetch them once.
  if (TERMINAL.has(item.status)) refreshRow(item.sessionId);
}

function onChanges(item) {
  const cell = rowOf(item.sessionId)?.querySelector('.col-changes');
  const c = item.changes || {};
  if (cell) cell.replaceChildren(...(c.files_changed ? changeCounts(c.lines_added, c.lines_removed) : []));
}

function followFeed() {
  follow(`${API}/events`, {
    session: (item) => refreshRow(item.sessionId),
    status: onStatus,
    changes: onChanges,
  }, (state) => {
    showConnection(state);
    // The feed has no replay: once it is open (again), reload what may have changed before.
    if (state === 'live') loadList();
  });
}

// -- the new-task form -------------------------------------------------------------------------

const form = document.getElementById('task-form');
const agentSelect = document.getElementById('agent');
const formError = document.getElementById('form-error');

function showAgentSettings() {
  for (const fieldset of form.querySelectorAll('fieldset.agent-settings')) {
    fieldset.hidden = fieldset.dataset.agent !== agentSelect.value;
  }
}

async function loadAgents() {
  let items;
  try {
    items = (await api('/agents')).items;
  } catch {
    // A daemon without the catalogue route still runs the scenario agent.
    items = [{ type: 'scenario', available: true }];
  }
  agentSelect.replaceChildren(...items.map((a) => el('option', {
    value: a.type, disabled: a.available === false, title: a.hint || a.description || '',
    text: a.available === false ? `${a.type} (unavailable)` : a.type,
  })));
  showAgentSettings();
}

function taskBody() {
  const data = new FormData(form);
  const repoUrl = data.get('repo').trim();
  const branch = data.get('branch').trim();
  const repo = repoUrl ? { mode: 'git', url: repoUrl, ...(branch ? { branch } : {}) } : { mode: 'none' };
  const agent = { type: agentSelect.value, version: 'latest', count: Number(data.get('count') || 1), settings: {} };
  if (agent.type === 'scenario') {
    const scenario = data.get('scenario').trim();
    if (scenario) agent.settings.scenario = scenario;
    const speed = Number(data.get('speed'));
    if (speed > 0) agent.settings.speed = speed;
  }
  return { prompt: data.get('prompt'), repo, agents: [agent] };
}

async function submitTask(event) {
  event.preventDefault();
  const button = document.getElementById('create-task');
  if (!form.prompt.value.trim()) {
    showError(formError, 'Write a prompt first.');
    form.prompt.focus();
    return;
  }
  button.disabled = true;
  showError(formError, '');
  try {
    const created = await api('/tasks', { method: 'POST', body: taskBody() });
    location.assign(sessionPath(created.id));
  } catch (error) {
    showError(formError, error.describe ? error.describe() : String(error));
    button.disabled = false;
  }
}

// -- start -------------------------------------------------------------------------------------

localiseTimes(list);
form.addEventListener('submit', submitTask);
agentSelect.addEventListener('change', showAgentSettings);
if (agentSelect.dataset.loaded === 'true') showAgentSettings();
else loadAgents();
if (list.dataset.loaded !== 'true') loadList();
followFeed();
