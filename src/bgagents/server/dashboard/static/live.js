// The page's link to the server: JSON calls (session cookie + CSRF header) and the live event stream.
//
// The stream is /api/v1/events, followed from the newest event at load. After a drop or a server
// restart it reconnects from the last event seen (so nothing is missed) and tells every view to
// re-read, since the state may have moved on meanwhile.

const CSRF = document.querySelector('meta[name="csrf-token"]').content;

export class ApiError extends Error {
  constructor(message, status, code) { super(message); this.status = status; this.code = code; }
}

export async function api(method, path, body, {raw = false} = {}) {
  const headers = {Accept: 'application/json'};
  if (method !== 'GET') headers['X-CSRF-Token'] = CSRF;
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  let response;
  try {
    response = await fetch(path, {method, headers, credentials: 'same-origin',
                                  body: body === undefined ? undefined : JSON.stringify(body)});
  } catch (e) {
    throw new ApiError('the server does not answer (is bgagents serve running?)', 0, 'no_server');
  }
  if (response.status === 401) {
    location.replace('/');  // the session ended (the server has a new token): back to the login page
  }
  const text = await response.text();
  if (raw && response.ok) return text;
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch (e) { data = text; }
  if (!response.ok) {
    const err = data && data.error ? data.error : {message: `HTTP ${response.status}`, code: 'http_error'};
    throw new ApiError(err.message, response.status, err.code);
  }
  return data;
}

// Every event type the server sends (EventSource only reports named events it listens for).
const TYPES = [
  'task.queued', 'task.running', 'task.waiting', 'task.completed', 'task.failed', 'task.cancelled',
  'task.progress', 'task.tool_call', 'task.tool_result', 'task.todos', 'task.steered', 'task.resumed',
  'task.interrupted', 'task.recovered', 'task.model_switched', 'task.approved', 'task.denied',
  'task.children_done', 'task.forked', 'task.session', 'task.worktree_merged', 'task.worktree_discarded',
  'conversation.event', 'conversation.response', 'conversation.silent',
  'conversation.turn_started', 'conversation.backgrounded', 'conversation.checked',
  'conversation.children_done', 'conversation.cleared', 'conversation.dropped', 'conversation.killed',
  'message',
];

const listeners = new Set();
const statusListeners = new Set();
let lastSeq = null;
let source = null;
let status = 'connecting';
let retryDelay = 500;

export function onEvent(fn) { listeners.add(fn); return () => listeners.delete(fn); }
export function onStatus(fn) { statusListeners.add(fn); fn(status); return () => statusListeners.delete(fn); }
export function connectionStatus() { return status; }

function setStatus(next) {
  status = next;
  for (const fn of statusListeners) fn(next);
}

function dispatch(event) {
  for (const fn of listeners) {
    try { fn(event); } catch (e) { console.error(e); }
  }
}

function handle(message) {
  const seq = Number(message.lastEventId);
  if (seq && lastSeq !== null && seq <= lastSeq) return;
  if (seq) lastSeq = seq;
  dispatch(JSON.parse(message.data));
}

// Down until the server answers again: 'stopped' when it said it was stopping, else 'offline'.
function down(why) {
  setStatus(status === 'stopped' ? 'stopped' : why);
  setTimeout(open, retryDelay);
  retryDelay = Math.min(retryDelay * 2, 3000);
}

async function open() {
  try {
    // Also tells a server that is down (retry later) from a session that ended (the login page).
    const state = await api('GET', '/dashboard/api/state');
    if (lastSeq === null) lastSeq = state.last_event_seq;
  } catch (e) {
    down('offline');
    return;
  }
  source = new EventSource(`/api/v1/events?since=${lastSeq}`);
  source.onopen = () => {
    const wasDown = status !== 'live' && status !== 'connecting';
    retryDelay = 500;
    setStatus('live');
    if (wasDown) dispatch({type: 'dashboard.reconnected'});
  };
  source.onerror = () => {
    // Reconnect ourselves (from the last event seen) rather than rely on the browser's retry,
    // which gives up for good on some failures.
    source.close();
    down('offline');
  };
  // The server's last word before it stops: shown at once, then the page waits for it to come back.
  source.addEventListener('server.stopping', () => {
    source.close();
    status = 'stopped';
    down('stopped');
  });
  for (const type of TYPES) source.addEventListener(type, handle);
}

export function connect() { if (source === null) open(); }

// Calls `fn` at most once per `ms`, after the last of a burst too: for re-reads that events trigger.
export function throttle(fn, ms) {
  let timer = null;
  let again = false;
  const run = () => {
    timer = null;
    if (again) { again = false; timer = setTimeout(run, ms); fn(); }
  };
  return () => {
    if (timer === null) { fn(); timer = setTimeout(run, ms); } else { again = true; }
  };
}
