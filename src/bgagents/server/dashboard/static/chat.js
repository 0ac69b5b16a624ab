// The main conversation as a chat: messages, answers with their buttons and files, background agents
// inline with their live status and result, and the sessions (peek, kill), clear, push to background.
import {useEffect, useMemo, useRef, useState} from 'preact/hooks';
import {api, onEvent, throttle} from './live.js';
import {Model, Notice, Status, clock, duration, html, useAction} from './ui.js';

function fileUrl(path) {
  return `/api/v1/files/${path.split('/').map(encodeURIComponent).join('/')}`;
}

function Files({files}) {
  if (!files || !files.length) return null;
  return html`<ul class="files">${files.map((f) => html`<li><a href=${fileUrl(f)} download>${f}</a></li>`)}</ul>`;
}

function Line({line, onButton, busy}) {
  if (line.kind === 'response') {
    if (!line.delivered) return null;
    return html`<div class="bubble bubble-agent" data-kind="response">
      <div class="who">agent · ${clock(line.created_at)}</div>
      <div class="text">${line.message}</div>
      <${Files} files=${line.files} />
      ${line.buttons.length ? html`<div class="button-row">${line.buttons.map((b) => html`<button
        class="chat-button" disabled=${busy} onClick=${() => onButton(b)}>${b}</button>`)}</div>` : ''}
    </div>`;
  }
  const e = line.data || {};
  switch (line.type) {
    case 'user-message':
      return html`<div class="bubble bubble-person" data-kind="message">
        <div class="who">you · ${clock(line.time)}${e.instructions ? ' · as a background agent' : ''}</div>
        <div class="text">${e.text}</div><${Files} files=${e.files} /></div>`;
    case 'button-click':
      return html`<div class="bubble bubble-person small" data-kind="button">tapped <strong>${e.button}</strong></div>`;
    case 'background-agent-result': {
      const r = e.result || {};
      return html`<div class="agent-card" data-kind="agent-result">
        <div class="who">⚙ background agent <strong>${e.original_event || line.name}</strong>
          <${Status} status=${r.status || 'completed'} /></div>
        ${r.text ? html`<div class="text">${r.text}</div>` : ''}<${Files} files=${r.files} /></div>`;
    }
    case 'background-agent-progress':
      return html`<div class="agent-card muted small" data-kind="agent-progress">⚙ ${e.target_event}: ${e.progress}</div>`;
    case 'schedule-trigger':
      return html`<div class="agent-card muted small">⏰ schedule ${line.name}: ${e.text}</div>`;
    default:
      return html`<div class="agent-card muted small">${line.type}: ${e.text || line.name}</div>`;
  }
}

function SessionCard({session, cid, onChange}) {
  const peek = useAction();
  const kill = useAction();
  const base = `/api/v1/conversations/${encodeURIComponent(cid)}/sessions/${session.task_id}`;
  const p = session.progress;
  return html`<div class=${`agent-card session ${session.main ? 'session-main' : ''}`} data-session=${session.name}>
    <div class="who">${session.main ? '💬 main turn' : '⚙ background agent'}
      <a href=${`#/task/${session.task_id}`}><strong>${session.name}</strong></a>
      <${Status} status=${session.status} /> <span class="muted">${duration(session.elapsed)}</span></div>
    <div class="muted small">${p.tool_calls} tool calls${p.last_tool_args ? ` · last ${p.last_tool_args}` : ''}
      ${p.todos.total ? ` · todos ${p.todos.done}/${p.todos.total}` : ''} · <${Model} model=${session.model} /></div>
    ${session.main ? '' : html`<div class="small ellipsis" title=${session.prompt}>${session.prompt}</div>`}
    <div class="button-row">
      <button disabled=${peek.busy} onClick=${() => peek.run(() => api('POST', `${base}/peek`), (r) => r.text)}>
        ${peek.busy ? 'Peeking…' : 'Peek'}</button>
      <button class="danger" disabled=${kill.busy}
        onClick=${() => kill.run(() => api('POST', `${base}/kill`), 'Killed: its result will not be delivered.').then(onChange)}>Kill</button>
    </div>
    <${Notice} notice=${peek.notice} /><${Notice} notice=${kill.notice} />
  </div>`;
}

export function ChatView({cid}) {
  const [lines, setLines] = useState(null);
  const [sessions, setSessions] = useState([]);
  const [text, setText] = useState('');
  const [error, setError] = useState(null);
  const send = useAction();
  const control = useAction();
  const sessionIds = useRef(new Set());
  const end = useRef(null);
  const base = `/api/v1/conversations/${encodeURIComponent(cid)}`;

  const load = useMemo(() => throttle(async () => {
    try {
      const [history, running] = await Promise.all([
        api('GET', `${base}/history`, undefined, {raw: true}),
        api('GET', `${base}/sessions`),
      ]);
      setLines(history.split('\n').filter((l) => l.trim()).map((l) => JSON.parse(l)));
      sessionIds.current = new Set(running.map((s) => s.task_id));
      setSessions(running);
      setError(null);
    } catch (e) { setError(e.message); }
  }, 200), [cid]);

  useEffect(() => { setLines(null); load(); }, [cid]);
  useEffect(() => onEvent((e) => {
    if (e.conversation_id === cid || e.type === 'task.queued' || e.type === 'dashboard.reconnected'
        || (e.task_id && sessionIds.current.has(e.task_id))) load();
  }), [cid]);
  // To the very bottom of the page, where the composer sits in its place below the log: lining the last line
  // up with the window's bottom edge left it under the composer, which sticks to that edge.
  useEffect(() => { if (end.current) window.scrollTo(0, document.documentElement.scrollHeight); },
    [lines && lines.length]);

  const post = async (path, body, ok) => {
    const done = await send.run(() => api('POST', `${base}/${path}`, body), ok);
    if (done) load();
    return done;
  };
  const onSend = async (e) => {
    e.preventDefault();
    if (await post('messages', {text}, null)) setText('');
  };
  const onBackgroundAgent = async () => {
    if (!text.trim()) { send.setNotice({error: true, text: 'Type what the background agent should do first.'}); return; }
    if (await post('background-agents', {prompt: text}, 'Asked the main agent to start it in the background.')) setText('');
  };
  const main = sessions.find((s) => s.main);
  const background = sessions.filter((s) => !s.main);
  return html`<section class="chat">
    <div class="toolbar"><h1>Conversation <span class="muted">${cid}</span></h1>
      <div class="button-row">
        <button disabled=${!main || control.busy} title="Move the running main turn into the background"
          onClick=${() => control.run(() => api('POST', `${base}/background`), (s) => `${s.name} goes on in the background.`).then(load)}>
          Push to background</button>
        <button class="danger" disabled=${control.busy}
          onClick=${() => window.confirm('Start a fresh main session? Background agents go on.') &&
            control.run(() => api('POST', `${base}/clear`), 'Cleared: the next message starts a fresh session.').then(load)}>
          Clear</button>
      </div></div>
    <${Notice} notice=${control.notice} />
    ${error ? html`<div class="notice notice-error" role="alert">${error}</div>` : ''}
    <div class="chat-layout">
      <div class="chat-log" aria-live="polite">
        ${lines && !lines.length ? html`<p class="empty">Say hello. Long work goes to background agents, whose
          results come back here.</p>` : ''}
        ${(lines || []).map((l) => html`<${Line} key=${`${l.kind}-${l.seq}`} line=${l} busy=${send.busy}
          onButton=${(label) => post('buttons', {label}, null)} />`)}
        ${main ? html`<div class="typing muted" data-kind="thinking">agent is working…</div>` : ''}
        ${background.map((s) => html`<${SessionCard} key=${s.task_id} session=${s} cid=${cid} onChange=${load} />`)}
        <div ref=${end}></div>
      </div>
      <aside class="panel sessions" aria-label="Sessions">
        <h2>Sessions</h2>
        ${sessions.length ? sessions.map((s) => html`<div class="session-line">
            <a href=${`#/task/${s.task_id}`}>${s.name}</a> ${s.main ? html`<span class="tag">main</span>` : ''}
            <${Status} status=${s.status} /> <span class="muted">${duration(s.elapsed)}</span></div>`)
          : html`<p class="muted">Nothing running.</p>`}
        ${main ? html`<${SessionCard} session=${main} cid=${cid} onChange=${load} />` : ''}
      </aside>
    </div>
    <form class="chat-form" onSubmit=${onSend}>
      <textarea name="text" rows="2" aria-label="Message" placeholder="Message the main agent (Enter sends, Shift+Enter for a new line)"
        value=${text} onInput=${(e) => setText(e.target.value)}
        onKeyDown=${(e) => { if (e.key === 'Enter' && !e.shiftKey) { e.preventDefault(); e.target.form.requestSubmit(); } }}></textarea>
      <div class="chat-buttons">
        <button type="submit" class="primary" disabled=${send.busy}>Send</button>
        <button type="button" disabled=${send.busy} onClick=${onBackgroundAgent}
          title="Ask the main agent to run this as a background agent">As background agent</button>
      </div>
    </form>
    <${Notice} notice=${send.notice} />
  </section>`;
}
