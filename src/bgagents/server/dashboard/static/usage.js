// What the agents used and cost: totals per model, agent or day over a period (GET /api/v1/usage).
import {useEffect, useMemo, useState} from 'preact/hooks';
import {api, onEvent, throttle} from './live.js';
import {cost, html, tokens} from './ui.js';

const BY = [['model', 'Model', 'by model'], ['agent', 'Agent', 'by agent'], ['day', 'Day (UTC)', 'by day']];
const SINCE = [['1', 'last 24 hours'], ['7', 'last 7 days'], ['30', 'last 30 days'], ['', 'all time']];
const ENDED = new Set(['task.completed', 'task.failed', 'task.cancelled', 'dashboard.reconnected']);

function sum(rows, key) {
  return rows.reduce((total, r) => total + (r[key] || 0), 0);
}

function costSum(rows) {
  const known = rows.filter((r) => r.cost_usd !== null && r.cost_usd !== undefined);
  return known.length ? sum(known, 'cost_usd') : null;
}

export function UsageView() {
  const [by, setBy] = useState('model');
  const [days, setDays] = useState('7');
  const [rows, setRows] = useState(null);
  const [error, setError] = useState(null);
  const load = useMemo(() => throttle(async () => {
    const params = new URLSearchParams({by});
    if (days) params.set('since', String(Math.floor(Date.now() / 1000) - Number(days) * 86400));
    try {
      setRows(await api('GET', `/api/v1/usage?${params}`));
      setError(null);
    } catch (e) { setError(e.message); }
  }, 500), [by, days]);
  useEffect(() => { load(); }, [by, days]);
  useEffect(() => onEvent((e) => { if (ENDED.has(e.type)) load(); }), [by, days]);

  const all = rows || [];
  return html`<section class="usage">
    <div class="toolbar"><h1>Usage</h1>
      <div class="filters" role="group" aria-label="Group by">
        ${BY.map(([key, , chip]) => html`<button class=${by === key ? 'chip on' : 'chip'} aria-pressed=${by === key}
          onClick=${() => setBy(key)}>${chip}</button>`)}
      </div>
      <label class="inline">Period <select aria-label="Period" value=${days} onChange=${(e) => setDays(e.target.value)}>
        ${SINCE.map(([value, label]) => html`<option value=${value}>${label}</option>`)}</select></label>
    </div>
    ${error ? html`<div class="notice notice-error" role="alert">${error}</div>` : ''}
    <div class="table-wrap">
      <table class="tasks usage-table">
        <thead><tr><th>${BY.find(([key]) => key === by)[1]}</th><th class="num">Tasks</th><th class="num">Requests</th>
          <th class="num">Tool calls</th><th class="num col-tokens">Input tokens</th><th class="num col-tokens">Output tokens</th>
          <th class="num">Cost</th></tr></thead>
        <tbody>
          ${all.map((r) => html`<tr class="usage-row" data-key=${r.key}><td>${r.key}</td><td class="num">${r.tasks}</td>
            <td class="num">${r.requests}</td><td class="num">${r.tool_calls}</td>
            <td class="num col-tokens">${tokens(r.input_tokens)}</td><td class="num col-tokens">${tokens(r.output_tokens)}</td>
            <td class="num">${cost(r.cost_usd)}</td></tr>`)}
        </tbody>
        ${all.length > 1 ? html`<tfoot><tr class="usage-total"><td>Total</td><td class="num">${sum(all, 'tasks')}</td>
          <td class="num">${sum(all, 'requests')}</td><td class="num">${sum(all, 'tool_calls')}</td>
          <td class="num col-tokens">${tokens(sum(all, 'input_tokens'))}</td>
          <td class="num col-tokens">${tokens(sum(all, 'output_tokens'))}</td>
          <td class="num">${cost(costSum(all))}</td></tr></tfoot>` : ''}
      </table>
      ${rows && !rows.length ? html`<p class="empty">No task in this period.</p>` : ''}
      ${!rows && !error ? html`<p class="empty">Loading…</p>` : ''}
    </div>
    <p class="muted small">Costs come from genai-prices where it knows the model (— where it does not); a task
      counts in the period it was created in.</p>
  </section>`;
}
