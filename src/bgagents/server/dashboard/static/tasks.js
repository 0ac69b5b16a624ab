// The task list: a page at a time from the server (fast with thousands of tasks), nested agents
// under their parent, filters, the "new task" form; re-read when an event touches what is shown.
import {useEffect, useMemo, useRef, useState} from 'preact/hooks';
import {api, onEvent, throttle} from './live.js';
import {Model, Notice, Status, cost, elapsed, html, tokens, useAction, useNow} from './ui.js';

const STATUSES = ['queued', 'running', 'waiting', 'completed', 'failed', 'cancelled'];
const PAGE = 50;
// Events that can add a task to a page or move it between status filters.
const RESHAPING = new Set(['task.queued', 'task.running', 'task.waiting', 'task.completed', 'task.failed',
                           'task.cancelled', 'task.resumed', 'dashboard.reconnected']);

function NewTask({agents, defaultModel, onLaunched}) {
  const [prompt, setPrompt] = useState('');
  const [agent, setAgent] = useState('');
  const [model, setModel] = useState('');
  const [priority, setPriority] = useState(0);
  const action = useAction();
  const submit = async (e) => {
    e.preventDefault();
    const body = {prompt, priority: Number(priority) || 0};
    if (agent) body.agent = agent;
    if (model.trim()) body.model = model.trim();
    const task = await action.run(() => api('POST', '/api/v1/tasks', body), (t) => html`Launched <a href=${`#/task/${t.id}`}>${t.name}</a> (${t.id}).`);
    if (task) { setPrompt(''); onLaunched(task); }
  };
  return html`<details class="panel new-task">
    <summary>New task</summary>
    <form onSubmit=${submit} class="form-grid">
      <label class="wide">Prompt
        <textarea name="prompt" rows="3" required value=${prompt} onInput=${(e) => setPrompt(e.target.value)}
          placeholder="What should the agent do?"></textarea></label>
      <label>Agent
        <select name="agent" value=${agent} onChange=${(e) => setAgent(e.target.value)}>
          <option value="">default (general)</option>
          ${agents.map((a) => html`<option value=${a}>${a}</option>`)}
        </select></label>
      <label>Model
        <input name="model" value=${model} onInput=${(e) => setModel(e.target.value)}
          placeholder=${defaultModel ? `default: ${defaultModel}` : 'e.g. demo, openai:gpt-4o'} /></label>
      <label>Priority
        <input name="priority" type="number" value=${priority} onInput=${(e) => setPriority(e.target.value)} /></label>
      <div class="form-actions"><button type="submit" disabled=${action.busy}>Launch</button></div>
    </form>
    <${Notice} notice=${action.notice} />
  </details>`;
}

// What a waiting task waits for: a person to allow a tool call (the approvals inbox decides it).
function Waits({on}) {
  if (!on || !on.length) return null;
  const tools = [...new Set(on.map((a) => a.tool))].join(', ');
  return html`<a class="waits small" href="#/approvals" title="decide it in the approvals inbox">waits for approval: ${tools}</a>`;
}

function Row({task, depth, now, waiting}) {
  const p = task.progress || {};
  const todos = p.todos && p.todos.total ? `${p.todos.done}/${p.todos.total}` : '—';
  const tree = task.subtree && task.subtree.tasks > 1 ? task.subtree : null;  // the task and its descendants
  return html`<tr class=${`task-row depth-${Math.min(depth, 4)}`} data-id=${task.id} data-status=${task.status}>
    <td><${Status} status=${task.status} /><${Waits} on=${waiting} /></td>
    <td class="name" style=${`padding-left: ${0.5 + depth * 1.25}rem`}>
      ${depth ? html`<span class="tree" aria-hidden="true">└ </span>` : ''}
      <a href=${`#/task/${task.id}`}>${task.name}</a>
      <div class="muted small ellipsis" title=${task.prompt}>${task.id}</div></td>
    <td class="col-agent">${task.agent}</td>
    <td class="col-model"><${Model} model=${task.model} /></td>
    <td class="num">${elapsed(task, now)}</td>
    <td class="num col-requests">${p.requests || 0}</td>
    <td class="num">${p.tool_calls || 0}</td>
    <td class="col-last ellipsis" title=${p.last_tool_args || ''}>${p.last_tool || '—'}</td>
    <td class="num col-todos">${todos}</td>
    <td class="num col-tokens">${tokens((p.input_tokens || 0) + (p.output_tokens || 0))}${tree
      ? html`<div class="muted small" title=${`with its ${tree.tasks - 1} descendant task(s)`}>Σ ${
        tokens((tree.input_tokens || 0) + (tree.output_tokens || 0))}</div>` : ''}</td>
    <td class="num col-cost">${cost(p.cost_usd)}${tree
      ? html`<div class="muted small" title=${`with its ${tree.tasks - 1} descendant task(s)`}>Σ ${
        cost(tree.cost_usd)}</div>` : ''}</td>
  </tr>`;
}

// Parents first, each followed by its descendants (depth-first, oldest child first).
function ordered(page) {
  const byParent = new Map();
  for (const c of page.children) {
    if (!byParent.has(c.parent_id)) byParent.set(c.parent_id, []);
    byParent.get(c.parent_id).push(c);
  }
  const rows = [];
  const walk = (task, depth) => {
    const kids = byParent.get(task.id) || [];
    rows.push({task, depth});
    for (const k of kids) walk(k, depth + 1);
  };
  for (const t of page.tasks) walk(t, 0);
  return rows;
}

export function TasksView({state}) {
  const [status, setStatus] = useState('');
  const [query, setQuery] = useState('');
  const [typed, setTyped] = useState('');
  const [offset, setOffset] = useState(0);
  const [page, setPage] = useState(null);
  const [error, setError] = useState(null);
  const now = useNow();
  const want = useRef({status, query, offset});
  want.current = {status, query, offset};
  const visible = useRef(new Set());

  const load = useMemo(() => throttle(async () => {
    const {status, query, offset} = want.current;
    const params = new URLSearchParams({offset, limit: PAGE});
    if (status) params.set('status', status);
    if (query) params.set('q', query);
    try {
      const data = await api('GET', `/dashboard/api/tasks?${params}`);
      const w = want.current;
      if (w.status !== status || w.query !== query || w.offset !== offset) return;
      visible.current = new Set([...data.tasks, ...data.children].map((t) => t.id));
      setPage(data);
      setError(null);
    } catch (e) { setError(e.message); }
  }, 150), []);

  useEffect(() => { load(); }, [status, query, offset]);
  useEffect(() => onEvent((e) => {
    if (RESHAPING.has(e.type) || (e.task_id && visible.current.has(e.task_id))) load();
  }), []);
  useEffect(() => {  // search as one types, once typing pauses; only a changed search goes back to page one
    const next = typed.trim();
    if (next === want.current.query) return undefined;  // (the first render must not undo a quick page turn)
    const timer = setTimeout(() => { setQuery(next); setOffset(0); }, 250);
    return () => clearTimeout(timer);
  }, [typed]);

  const rows = page ? ordered(page) : [];
  const total = page ? page.total : 0;
  return html`<section>
    <div class="toolbar">
      <h1>Tasks</h1>
      <div class="filters" role="group" aria-label="Filter by status">
        <button class=${status === '' ? 'chip on' : 'chip'} aria-pressed=${status === ''}
          onClick=${() => { setStatus(''); setOffset(0); }}>all</button>
        ${STATUSES.map((s) => html`<button class=${status === s ? 'chip on' : 'chip'} aria-pressed=${status === s}
          onClick=${() => { setStatus(s); setOffset(0); }}>${s}</button>`)}
      </div>
      <input type="search" class="search" placeholder="Search name, prompt, id, model…" aria-label="Search tasks"
        value=${typed} onInput=${(e) => setTyped(e.target.value)} />
    </div>
    <${NewTask} agents=${state.agents || []} defaultModel=${state.model} onLaunched=${() => load()} />
    ${error ? html`<div class="notice notice-error" role="alert">${error}</div>` : ''}
    <div class="table-wrap">
      <table class="tasks">
        <thead><tr>
          <th>Status</th><th>Name</th><th class="col-agent">Agent</th><th class="col-model">Model</th>
          <th class="num">Elapsed</th><th class="num col-requests">Req.</th><th class="num">Tools</th>
          <th class="col-last">Last tool</th><th class="num col-todos">Todos</th>
          <th class="num col-tokens">Tokens</th><th class="num col-cost">Cost</th>
        </tr></thead>
        <tbody>
          ${rows.map((r) => html`<${Row} key=${r.task.id} task=${r.task} depth=${r.depth} now=${now}
            waiting=${page.waiting && page.waiting[r.task.id]} />`)}
        </tbody>
      </table>
      ${page && !rows.length ? html`<p class="empty">${status || query ? 'No task matches.' :
        'No tasks yet: launch one above, or run bgagents demo.'}</p>` : ''}
      ${!page && !error ? html`<p class="empty">Loading…</p>` : ''}
    </div>
    <nav class="pager" aria-label="Pages">
      <button disabled=${offset === 0} onClick=${() => setOffset(Math.max(0, offset - PAGE))}>← Newer</button>
      <span class="muted">${total ? `${offset + 1}–${Math.min(offset + PAGE, total)} of ${total}` : ''}
        ${page && page.nested ? ' top-level tasks' : ''}</span>
      <button disabled=${offset + PAGE >= total} onClick=${() => setOffset(offset + PAGE)}>Older →</button>
    </nav>
  </section>`;
}

