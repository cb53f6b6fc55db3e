// One session (/sessions/<id>): header and controls, live activity from the session's SSE stream,
// changed files with a diff viewer, and the snapshot timeline (seek, branch).
import {
  API, ApiError, TERMINAL, api, changeCounts, el, encodePath, follow, formatClock, formatTime, setBadge,
  sessionPath, showConnection, showError,
} from './harbor.js';

const root = document.getElementById('session');
const sessionId = root.dataset.sessionId;
const base = sessionPath(sessionId);
const $ = (id) => document.getElementById(id);

/** Activity items kept on the page; older ones are dropped (the API keeps them all). */
const MAX_ITEMS = 2000;
/** When to look again for the snapshot a session takes once it has ended. */
const FINAL_SNAPSHOT_DELAY_MS = 2000;
/** Tool output shown in full up to this many characters. */
const MAX_OUTPUT = 4000;

let status = root.querySelector('.badge')?.dataset.status || 'loading';
let lastSeq = 0;
let stream = null;
let filesLoaded = false; // once the files list is in, it is the fresher source of change counts

function describe(error) {
  return error instanceof ApiError ? error.describe() : String(error);
}

function notAvailable(error) {
  return error instanceof ApiError && (error.status === 404 || error.status === 405 || error.status === 501);
}

// -- header and controls -----------------------------------------------------------------------

function setStatus(next) {
  // A finished session never changes again: replayed history must not make it look alive.
  if (!next || (TERMINAL.has(status) && next !== status)) return;
  status = next;
  setBadge($('status-slot').querySelector('.badge'), next);
  $('pause').disabled = next !== 'running';
  $('resume').disabled = next !== 'paused';
  $('stop').disabled = TERMINAL.has(next);
}

function showChanges(c) {
  const files = c.files_changed || 0;
  $('changes').replaceChildren(`${files} file${files === 1 ? '' : 's'} `, ...changeCounts(c.lines_added, c.lines_removed));
}

function showSession(s) {
  setStatus(s.status);
  $('agent').textContent = s.agent ? `${s.agent.type} ${s.agent.version || ''}`.trim() : '';
  const created = $('created');
  created.setAttribute('datetime', s.createdAt || '');
  created.textContent = formatTime(s.createdAt);
  $('repo').textContent = (s.repo && s.repo.url) ? `${s.repo.url}${s.repo.branch ? ` @ ${s.repo.branch}` : ''}`
    : 'empty workspace';
  if (!filesLoaded) showChanges(s.changes || {});
  $('prompt').textContent = s.prompt || '';
  const problem = s.error || (s.exitCode !== null && s.exitCode !== undefined && s.status === 'failed'
    ? `exit code ${s.exitCode}` : '');
  showError($('session-error'), problem);
  if (s.parentSessionId) {
    $('origin-fact').hidden = false;
    $('origin-link').href = sessionPath(s.parentSessionId);
    $('origin-link').textContent = s.parentSessionId;
  }
}

async function loadSession() {
  try {
    showSession(await api(base));
    return true;
  } catch (error) {
    if (error instanceof ApiError && error.status === 404) {
      root.replaceChildren(el('section', { className: 'panel' },
        el('h2', { text: 'No such session' }),
        el('p', { text: `There is no session ${sessionId}. It may have been deleted.` }),
        el('p', {}, el('a', { href: '/', text: 'Back to all tasks' }))));
      return false;
    }
    showError($('control-error'), `Could not load the session: ${describe(error)}`);
    return true;
  }
}

async function control(action) {
  const button = $(action);
  button.disabled = true;
  showError($('control-error'), '');
  try {
    const answer = await api(`${base}/${action}`, { method: 'POST' });
    if (answer && answer.status && answer.id === sessionId) setStatus(answer.status);
  } catch (error) {
    showError($('control-error'), `${action} failed: ${describe(error)}`);
    setStatus(status);
  }
}

async function deleteSession() {
  if (!window.confirm('Delete this session? Its process is killed and its workspace removed.')) return;
  try {
    await api(base, { method: 'DELETE' });
    location.assign('/');
  } catch (error) {
    showError($('control-error'), `delete failed: ${describe(error)}`);
  }
}

// -- activity ----------------------------------------------------------------------------------

const activity = $('activity');
const tools = new Map(); // tool_execution_id → its activity item

function clip(text, limit) {
  const s = typeof text === 'string' ? text : JSON.stringify(text);
  return s && s.length > limit ? `${s.slice(0, limit)}…` : (s || '');
}

// The list follows new activity while the reader is at its end; scrolling up stops that.
let following = true;
activity.addEventListener('scroll', () => {
  following = activity.scrollHeight - activity.scrollTop - activity.clientHeight < 40;
});

function keepFollowing() {
  if (following) activity.scrollTop = activity.scrollHeight;
}

function append(item, data) {
  if (data.ts) item.prepend(el('time', { className: 'when', attrs: { datetime: data.ts }, text: formatClock(data.ts) }));
  if (data.seq) item.dataset.seq = data.seq;
  activity.append(item);
  while (activity.childElementCount > MAX_ITEMS) activity.firstElementChild.remove();
  $('no-activity').hidden = true;
  keepFollowing();
}

function entry(kind, label, ...body) {
  return el('li', { className: `event event-${kind}`, dataset: { kind } },
    el('span', { className: 'label', text: label }), el('div', { className: 'body' }, ...body));
}

function toolItem(data) {
  let item = tools.get(data.tool_execution_id);
  if (item) return item;
  const args = data.tool_args === undefined ? '' : clip(data.tool_args, 500);
  item = entry('tool', 'Tool',
    el('div', { className: 'tool-head' },
      el('strong', { className: 'tool-name', text: data.tool_name || 'tool' }), ' ',
      el('code', { className: 'tool-args', text: args }), ' ',
      el('span', { className: 'pill tool-status', dataset: { state: 'running' }, text: 'running' })),
    el('pre', { className: 'tool-last-line', hidden: true }),
    el('pre', { className: 'tool-output', hidden: true }));
  item.dataset.toolId = data.tool_execution_id || '';
  if (data.tool_execution_id) tools.set(data.tool_execution_id, item);
  append(item, data);
  return item;
}

function onTool(data) {
  const item = toolItem(data);
  if (data.last_line !== undefined) {
    const line = item.querySelector('.tool-last-line');
    line.textContent = data.last_line;
    line.hidden = false;
  }
  if (data.type === 'tool_result') {
    const ok = data.tool_status !== 'error' && data.status !== 'failed';
    const pill = item.querySelector('.tool-status');
    pill.dataset.state = ok ? 'ok' : 'error';
    pill.textContent = ok ? 'done' : 'failed';
    const output = item.querySelector('.tool-output');
    output.textContent = clip(data.tool_output ?? '', MAX_OUTPUT);
    output.hidden = !output.textContent;
  }
  keepFollowing();
}

function onFileEdit(data) {
  const path = data.file_path || data.path || '';
  append(entry('file', 'Edit',
    el('button', { type: 'button', className: 'link file-open', text: path, on: { click: () => openDiff(path) } }),
    ' ', ...changeCounts(data.lines_added, data.lines_removed),
    data.description ? el('span', { className: 'muted', text: ` \u2014 ${data.description}` }) : null), data);
  soon('files', loadFiles);
}

function onLog(data) {
  if (data.last_line !== undefined && data.tool_execution_id) {
    onTool(data);
    return;
  }
  const role = data.role;
  const kind = role === 'assistant' ? 'assistant' : role === 'user' ? 'user' : `log-${data.level || 'info'}`;
  const label = role === 'assistant' ? 'Agent' : role === 'user' ? 'User' : (data.level || 'info');
  append(entry(kind, label, el('span', { className: 'text', text: data.message || '' })), data);
}

function onProgress(data) {
  const value = Math.max(0, Math.min(100, Number(data.progress) || 0));
  $('progress').hidden = false;
  $('progress-fill').style.width = `${value}%`;
  $('progress-label').textContent = `${value}%${data.stage ? ` \u00b7 ${data.stage}` : ''}`;
}

function onStatusEvent(data) {
  setStatus(data.status);
  if (data.seq) {
    append(entry('status', 'Status', el('span', { dataset: { status: data.status }, text: data.status }),
      data.reason ? el('span', { className: 'muted', text: ` (${data.reason})` }) : null), data);
  }
  if (TERMINAL.has(data.status) && data.seq) {
    // The stream ends after the terminal status (and tells the browser not to come back); closing
    // it shows the page's state at once.
    stream?.close();
    $('stream-state').textContent = 'ended';
    showConnection('closed');
    loadSession();
    loadFiles();
    loadTimeline();
    // The final snapshot is taken just after the end, when this stream is already closed.
    soon('timeline', loadTimeline, FINAL_SNAPSHOT_DELAY_MS);
  }
}

/** Wrap a handler so replayed events (after a reconnect) are not shown twice. */
function fresh(handler) {
  return (data) => {
    if (data.seq) {
      if (data.seq <= lastSeq) return;
      lastSeq = data.seq;
    }
    handler(data);
  };
}

function followEvents() {
  stream = follow(`${API}${base}/events`, {
    status: fresh(onStatusEvent),
    thinking: fresh((d) => append(entry('thought', 'Thinking', el('span', { className: 'text', text: d.thought || '' })), d)),
    tool_execution: fresh(onTool),
    file_edit: fresh(onFileEdit),
    progress: fresh(onProgress),
    log: fresh(onLog),
    snapshot: fresh((d) => {
      append(entry('snapshot', 'Snapshot', el('span', { className: 'text', text: d.label || d.snapshotId || '' })), d);
      soon('timeline', loadTimeline);
    }),
  }, (state) => {
    if (state !== 'live' && TERMINAL.has(status)) {
      stream.close();
      state = 'closed';
    }
    $('stream-state').textContent = { live: 'live', reconnecting: 'reconnecting…', closed: 'ended' }[state];
    showConnection(state);
  });
}

// -- changed files and diffs -------------------------------------------------------------------

const timers = {};
/** Run `fn` once after a burst of triggers (edits come in bursts). */
function soon(key, fn, ms = 300) {
  clearTimeout(timers[key]);
  timers[key] = setTimeout(fn, ms);
}

async function loadFiles() {
  const note = $('files-note');
  let items;
  try {
    items = (await api(`${base}/files`)).items || [];
  } catch (error) {
    $('files').replaceChildren();
    note.hidden = false;
    note.textContent = notAvailable(error) ? 'File changes are not available from this daemon.'
      : `Could not load the files: ${describe(error)}`;
    return;
  }
  $('files').replaceChildren(...items.map((f) => el('li', { dataset: { path: f.path } },
    el('button', { type: 'button', className: 'link file-open', text: f.path, on: { click: () => openDiff(f.path) } }),
    el('span', { className: `pill file-status file-${f.status}`, text: f.status || 'modified' }),
    el('span', { className: 'counts' }, ...changeCounts(f.lines_added, f.lines_removed)))));
  note.hidden = items.length > 0;
  note.textContent = 'No changes yet.';
  filesLoaded = true;
  showChanges({ files_changed: items.length, lines_added: items.reduce((n, f) => n + (f.lines_added || 0), 0),
    lines_removed: items.reduce((n, f) => n + (f.lines_removed || 0), 0) });
}

function diffLine(text) {
  let kind = 'context';
  if (text.startsWith('@@')) kind = 'hunk';
  else if (text.startsWith('+++') || text.startsWith('---') || text.startsWith('diff ') || text.startsWith('index ')) kind = 'meta';
  else if (text.startsWith('+')) kind = 'add';
  else if (text.startsWith('-')) kind = 'del';
  else if (text.startsWith('\\')) kind = 'meta';
  return el('div', { className: `line line-${kind}`, text: text || ' ' });
}

async function openDiff(path) {
  const panel = $('diff-panel');
  const view = $('diff');
  panel.hidden = false;
  panel.dataset.path = path;
  $('diff-path').textContent = path;
  $('diff-stats').replaceChildren();
  view.dataset.state = 'loading';
  view.replaceChildren(el('p', { className: 'muted', text: 'Loading…' }));
  panel.scrollIntoView({ block: 'nearest' });
  try {
    const d = await api(`${base}/diff/${encodePath(path)}?format=unified`);
    $('diff-stats').replaceChildren(...changeCounts(d.lines_added, d.lines_removed));
    const text = typeof d.diff === 'string' ? d.diff
      : (d.hunks || []).map((h) => h.content).join('\n');
    if (!text) {
      view.replaceChildren(el('p', { className: 'muted', text: d.binary || d.is_binary ? 'Binary file: no diff to show.' : 'No differences.' }));
    } else {
      view.replaceChildren(...text.replace(/\n$/, '').split('\n').map(diffLine));
    }
    view.dataset.state = 'ready';
  } catch (error) {
    view.dataset.state = 'error';
    view.replaceChildren(el('p', { className: 'muted',
      text: notAvailable(error) ? 'Diffs are not available from this daemon.' : `Could not load the diff: ${describe(error)}` }));
  }
}

// -- timeline: snapshots, seek, branch ---------------------------------------------------------

let branchFrom = null;

async function loadTimeline() {
  const note = $('timeline-note');
  let snapshots;
  try {
    snapshots = (await api(`${base}/timeline`)).fsSnapshots || [];
  } catch (error) {
    $('snapshots').replaceChildren();
    note.hidden = false;
    note.textContent = notAvailable(error) ? 'The timeline is not available from this daemon.'
      : `Could not load the timeline: ${describe(error)}`;
    return;
  }
  $('snapshots').replaceChildren(...snapshots.map((s) => el('li', { dataset: { snapshotId: s.id } },
    el('div', { className: 'snapshot-head' },
      el('strong', { className: 'snapshot-label', text: s.label || s.trigger || s.id }), ' ',
      el('time', { className: 'muted', attrs: { datetime: s.ts || '' }, title: formatTime(s.ts),
        text: typeof s.offsetSec === 'number' ? `+${s.offsetSec.toFixed(1)} s` : formatClock(s.ts) }),
      s.description ? el('div', { className: 'muted snapshot-description', text: s.description }) : null),
    el('div', { className: 'snapshot-actions' },
      el('button', { type: 'button', className: 'small seek', text: 'Seek', on: { click: () => seek(s) } }),
      el('button', { type: 'button', className: 'small branch', text: 'Branch…', on: { click: () => startBranch(s) } })))));
  note.hidden = snapshots.length > 0;
  note.textContent = 'No snapshots yet.';
}

async function takeSnapshot() {
  const button = $('take-snapshot');
  button.disabled = true;
  try {
    await api(`${base}/fs-snapshots`, { method: 'POST', body: { label: 'manual' } });
    await loadTimeline();
  } catch (error) {
    showResult(el('span', { className: 'error', text: notAvailable(error) ? 'Snapshots are not available from this daemon.'
      : `Snapshot failed: ${describe(error)}` }));
  } finally {
    button.disabled = false;
  }
}

function showResult(...parts) {
  const result = $('timeline-result');
  result.replaceChildren(...parts);
  result.hidden = parts.length === 0;
}

async function seek(snapshot) {
  showResult(el('span', { className: 'muted', text: 'Mounting…' }));
  try {
    const r = await api(`${base}/seek`, { method: 'POST', body: { fsSnapshotId: snapshot.id, mountReadonly: true } });
    showResult(`Snapshot “${snapshot.label || snapshot.id}” is mounted read-only at `,
      el('code', { className: 'mount-path', text: r.mountPath || '' }));
  } catch (error) {
    showResult(el('span', { className: 'error', text: notAvailable(error) ? 'Seeking is not available from this daemon.'
      : `Seek failed: ${describe(error)}` }));
  }
}

function startBranch(snapshot) {
  branchFrom = snapshot;
  $('branch-label').textContent = snapshot.label || snapshot.id;
  $('branch-form').hidden = false;
  $('branch-message').focus();
}

async function submitBranch(event) {
  event.preventDefault();
  if (!branchFrom) return;
  const body = { fsSnapshotId: branchFrom.id };
  const message = $('branch-message').value.trim();
  if (message) body.injectedMessage = message;
  $('branch-submit').disabled = true;
  try {
    const created = await api(`${base}/session-branch`, { method: 'POST', body });
    const id = created.id || created.sessionId || (created.session_ids || [])[0];
    location.assign(sessionPath(id));
  } catch (error) {
    showResult(el('span', { className: 'error', text: notAvailable(error) ? 'Branching is not available from this daemon.'
      : `Branch failed: ${describe(error)}` }));
    $('branch-submit').disabled = false;
  }
}

// -- start -------------------------------------------------------------------------------------

async function start() {
  setStatus(status);
  $('pause').addEventListener('click', () => control('pause'));
  $('resume').addEventListener('click', () => control('resume'));
  $('stop').addEventListener('click', () => control('stop'));
  $('delete').addEventListener('click', deleteSession);
  $('refresh-files').addEventListener('click', loadFiles);
  $('refresh-timeline').addEventListener('click', loadTimeline);
  $('take-snapshot').addEventListener('click', takeSnapshot);
  $('diff-close').addEventListener('click', () => { $('diff-panel').hidden = true; });
  $('branch-form').addEventListener('submit', submitBranch);
  $('branch-cancel').addEventListener('click', () => { $('branch-form').hidden = true; branchFrom = null; });
  if (!(await loadSession())) return;
  followEvents();
  loadFiles();
  loadTimeline();
}

start();
