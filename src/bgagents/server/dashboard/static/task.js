// One task: its transcript as it grows, todos, attempts and errors, its result, and every action on it.
import {useEffect, useMemo, useRef, useState} from 'preact/hooks';
import {api, onEvent, throttle} from './live.js';
import {ApprovalCard} from './approvals.js';
import {WorktreePanel} from './worktree.js';
import {ACTIVE, Model, Notice, Status, clock, cost, elapsed, html, pretty, tokens, useAction, useNow} from './ui.js';

const PAGE = 500;

async function readTranscript(id, since) {
  let entries = [];
  for (;;) {
    const part = await api('GET', `/api/v1/tasks/${id}/transcript?since=${since}&limit=${PAGE}`);
    entries = entries.concat(part);
    const last = part.length ? part[part.length - 1].index : null;
    if (last === null || new Set(part.map((e) => e.index)).size < PAGE) return entries;
    since = last + 1;
  }
}

// The todo list as the agent last wrote it (the arguments of its last `todowrite` call).
function lastTodos(entries) {
  for (let i = entries.length - 1; i >= 0; i--) {
    const e = entries[i];
    if (e.role === 'tool_call' && e.tool_name === 'todowrite') {
      try { return JSON.parse(e.content).todos || []; } catch (err) { return []; }
    }
  }
  return null;
}

function Entry({entry}) {
  switch (entry.role) {
    case 'user':
      return html`<div class="msg msg-user"><div class="who">prompt · message ${entry.index}</div>
        <div class="text">${entry.content}</div></div>`;
    case 'assistant':
      return html`<div class="msg msg-assistant"><div class="who">assistant · message ${entry.index}</div>
        <div class="text">${entry.content}</div></div>`;
    case 'tool_call': {
      const args = pretty(entry.content);
      const long = args.split('\n').length > 8;
      return html`<div class="msg msg-tool" data-tool=${entry.tool_name}><div class="who">tool call <code>${entry.tool_name}</code></div>
        ${long ? html`<details><summary class="args-short">${entry.content.slice(0, 90)}${entry.content.length > 90 ? '…' : ''}</summary>
          <pre class="args">${args}</pre></details>` : html`<pre class="args">${args}</pre>`}</div>`;
    }
    case 'tool_result': {
      const lines = entry.content.split('\n').length;
      return html`<details class="msg msg-result"><summary>result of <code>${entry.tool_name}</code>
        <span class="muted">(${lines} line${lines === 1 ? '' : 's'})</span></summary>
        <pre>${entry.content}</pre></details>`;
    }
    case 'retry':
      return html`<div class="msg msg-retry"><div class="who">retry asked of the model</div>
        <div class="text">${entry.content}</div></div>`;
    default:
      return html`<details class="msg msg-system"><summary>${entry.role}</summary><pre>${entry.content}</pre></details>`;
  }
}

function Actions({task, entries}) {
  const active = ACTIVE.has(task.status);
  const cancel = useAction();
  const peek = useAction();
  const steer = useAction();
  const resume = useAction();
  const fork = useAction();
  const [message, setMessage] = useState('');
  const [follow, setFollow] = useState('');
  const [forkPrompt, setForkPrompt] = useState('');
  const [forkAt, setForkAt] = useState('');
  const [forkModel, setForkModel] = useState('');
  const messages = [...new Map(entries.filter((e) => e.role === 'user' || e.role === 'assistant')
    .map((e) => [e.index, e])).values()];
  const base = `/api/v1/tasks/${task.id}`;

  const onSteer = async (e) => {
    e.preventDefault();
    const done = await steer.run(() => api('POST', `${base}/messages`, {message}),
      'Sent: the agent reads it before its next model request.');
    if (done) setMessage('');
  };
  const onResume = async (e) => {
    e.preventDefault();
    const done = await resume.run(() => api('POST', `${base}/resume`, {prompt: follow}), 'Resumed: a new turn runs.');
    if (done) setFollow('');
  };
  const onFork = async (e) => {
    e.preventDefault();
    const body = {prompt: forkPrompt};
    if (forkAt !== '') body.at = Number(forkAt);
    if (forkModel.trim()) body.model = forkModel.trim();
    const made = await fork.run(() => api('POST', `${base}/fork`, body),
      (t) => html`Forked as <a href=${`#/task/${t.id}`}>${t.name}</a> (${t.id}).`);
    if (made) setForkPrompt('');
  };
  return html`<section class="panel actions" aria-label="Actions">
    <h2>Actions</h2>
    <div class="button-row">
      <button class="danger" disabled=${!active || cancel.busy}
        onClick=${() => cancel.run(() => api('POST', `${base}/cancel`), 'Cancelled.')}>Cancel</button>
      <button disabled=${task.status !== 'running' || peek.busy}
        onClick=${() => peek.run(() => api('POST', `${base}/peek`), (p) => p.text)}>
        ${peek.busy ? 'Peeking…' : 'Peek'}</button>
    </div>
    <div class="notices"><${Notice} notice=${cancel.notice} /><${Notice} notice=${peek.notice} /></div>
    ${active ? html`<form onSubmit=${onSteer} class="inline-form" aria-label="Steer">
        <label for="steer">Steer (reaches the agent before its next request)</label>
        <div class="row"><input id="steer" name="message" required value=${message}
          onInput=${(e) => setMessage(e.target.value)} placeholder="e.g. also check the tests" />
        <button type="submit" disabled=${steer.busy}>Send</button></div>
        <${Notice} notice=${steer.notice} /></form>`
      : html`<form onSubmit=${onResume} class="inline-form" aria-label="Resume">
        <label for="resume">Resume (a follow-up turn on this session)</label>
        <div class="row"><input id="resume" name="prompt" required value=${follow}
          onInput=${(e) => setFollow(e.target.value)} placeholder="What next?" />
        <button type="submit" disabled=${resume.busy}>Resume</button></div>
        <div class="notices"><${Notice} notice=${resume.notice} /><${Notice} notice=${steer.notice} /></div></form>`}
    <form onSubmit=${onFork} class="inline-form fork" aria-label="Fork">
      <label for="fork-prompt">Fork (a new task on a copy of this session)</label>
      <input id="fork-prompt" name="prompt" required value=${forkPrompt}
        onInput=${(e) => setForkPrompt(e.target.value)} placeholder="Prompt for the fork" />
      <select name="at" aria-label="Fork at" value=${forkAt} onChange=${(e) => setForkAt(e.target.value)}>
        <option value="">from the whole session</option>
        ${messages.map((m) => html`<option value=${m.index}>up to message ${m.index}: ${m.content.slice(0, 40)}</option>`)}
      </select>
      <div class="row">
        <input name="model" aria-label="Fork model" value=${forkModel} onInput=${(e) => setForkModel(e.target.value)}
          placeholder=${`model (default ${task.model})`} />
        <button type="submit" disabled=${fork.busy}>Fork</button>
      </div>
      <${Notice} notice=${fork.notice} />
    </form>
  </section>`;
}

function waitingFor(approvals) {
  if (!approvals.length) return 'waiting for a decision…';
  return `waiting for a person to allow ${[...new Set(approvals.map((a) => a.tool))].join(', ')} (above)…`;
}

export function TaskView({id}) {
  const [task, setTask] = useState(null);
  const [entries, setEntries] = useState([]);
  const [approvals, setApprovals] = useState([]);
  const [error, setError] = useState(null);
  const now = useNow();
  const seen = useRef(-1);

  const refresh = useMemo(() => throttle(async () => {
    try {
      const [t, more, pending] = await Promise.all([
        api('GET', `/api/v1/tasks/${id}`),
        readTranscript(id, Math.max(0, seen.current)),
        api('GET', '/api/v1/approvals'),
      ]);
      setTask(t);
      setApprovals(pending.filter((a) => a.task_id === id));
      if (more.length) {
        const from = more[0].index;
        seen.current = more[more.length - 1].index;
        setEntries((old) => old.filter((e) => e.index < from).concat(more));
      }
      setError(null);
    } catch (e) { setError(e.message); }
  }, 150), [id]);

  useEffect(() => { seen.current = -1; setEntries([]); setTask(null); refresh(); }, [id]);
  useEffect(() => onEvent((e) => {
    if (e.task_id === id || e.type === 'dashboard.reconnected') refresh();
  }), [id]);

  if (error && !task) return html`<section><div class="notice notice-error" role="alert">${error}</div>
    <p><a href="#/">← all tasks</a></p></section>`;
  if (!task) return html`<p class="empty">Loading…</p>`;
  const p = task.progress;
  const todos = lastTodos(entries);
  return html`<section class="task-detail">
    <div class="crumbs"><a href="#/">Tasks</a> ›
      ${task.parent_id ? html`<a href=${`#/task/${task.parent_id}`}>${task.parent_id}</a> › ` : ''}${task.id}</div>
    <div class="title-row">
      <h1>${task.name}</h1><${Status} status=${task.status} />
      ${task.end_reason ? html`<span class="muted">(${task.end_reason})</span>` : ''}
    </div>
    <dl class="facts">
      <div><dt>Agent</dt><dd>${task.agent}</dd></div>
      <div><dt>Model</dt><dd><${Model} model=${task.model} /></dd></div>
      <div><dt>Elapsed</dt><dd>${elapsed(task, now)}</dd></div>
      <div><dt>Requests</dt><dd>${p.requests}</dd></div>
      <div><dt>Tool calls</dt><dd>${p.tool_calls}${p.last_tool ? html` <span class="muted">· last ${p.last_tool_args || p.last_tool}</span>` : ''}</dd></div>
      <div><dt>Tokens</dt><dd>${tokens(p.input_tokens)} in · ${tokens(p.output_tokens)} out</dd></div>
      <div><dt>Cost</dt><dd>${cost(p.cost_usd)}</dd></div>
      <div><dt>Turn</dt><dd>${task.turn}</dd></div>
    </dl>
    <div class="alerts">
      ${error ? html`<div class="notice notice-error" role="alert">${error}</div>` : ''}
      ${approvals.map((a) => html`<${ApprovalCard} key=${a.id} approval=${a} task=${task} onDone=${refresh} />`)}
      ${task.error ? html`<div class="notice notice-error" role="alert"><strong>Error: </strong>${task.error}</div>` : ''}
      ${task.result ? html`<section class="panel result" aria-label="Result"><h2>Result</h2>
        ${task.result.data !== null && task.result.data !== undefined
          ? html`<pre>${JSON.stringify(task.result.data, null, 2)}</pre>` : ''}
        ${task.result.text ? html`<div class="text">${task.result.text}</div>` : ''}</section>` : ''}
    </div>
    <div class="columns" key="columns">
      <div class="main-col">
        ${task.worktree ? html`<${WorktreePanel} task=${task} onChange=${refresh} />` : ''}
        <section class="panel transcript" aria-label="Transcript">
          <h2>Transcript</h2>
          ${entries.length ? entries.map((e, i) => html`<${Entry} key=${`${e.index}-${i}`} entry=${e} />`)
            : html`<div class="msg msg-user"><div class="who">prompt</div><div class="text">${task.prompt}</div></div>`}
          ${ACTIVE.has(task.status) ? html`<p class="muted live-dot">${task.status === 'queued' ? 'queued…' :
            task.status === 'waiting' ? waitingFor(approvals) : 'working…'}</p>` : ''}
        </section>
      </div>
      <div class="side-col">
        <${Actions} task=${task} entries=${entries} />
        <section class="panel" aria-label="Todos"><h2>Todos ${p.todos.total ? `${p.todos.done}/${p.todos.total}` : ''}</h2>
          ${todos && todos.length ? html`<ul class="todos">${todos.map((t) => html`<li class=${`todo todo-${t.status}`}>
            <span aria-hidden="true">${t.status === 'completed' ? '☑' : t.status === 'in_progress' ? '▸' : '☐'}</span>
            ${t.content}</li>`)}</ul>` : html`<p class="muted">No todos.</p>`}
        </section>
        <section class="panel" aria-label="Attempts"><h2>Attempts</h2>
          ${task.attempts.length ? html`<ol class="attempts">${task.attempts.map((a) => html`<li>
            <${Model} model=${a.model} /> <span class="muted">${clock(a.started_at)}${a.finished_at ? `–${clock(a.finished_at)}` : ''}</span>
            ${a.error ? html`<div class="error-text">${a.error}</div>` : ''}</li>`)}</ol>`
            : html`<p class="muted">${task.status === 'queued' ? 'Not started yet.' : `On ${task.model}: no retry or fallback so far.`}</p>`}
          ${task.fallback_models.length ? html`<p class="muted small">Fallbacks: ${task.fallback_models.join(', ')}</p>` : ''}
        </section>
      </div>
    </div>
  </section>`;
}
