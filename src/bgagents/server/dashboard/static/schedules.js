// Schedules: each one's timing, next and last run, and pause, resume, run now, remove; a form to add one.
import {useEffect, useMemo, useState} from 'preact/hooks';
import {api, onEvent, throttle} from './live.js';
import {Notice, duration, html, useAction, useNow} from './ui.js';

function when(t) {
  if (!t) return '—';
  return new Date(t * 1000).toLocaleString([], {weekday: 'short', month: 'short', day: 'numeric', hour: '2-digit',
                                                minute: '2-digit'});
}

function Timing({s}) {
  if (s.cron) return html`<code>${s.cron}</code> <span class="muted small">${s.timezone}</span>`;
  return html`once, ${when(s.at)} <span class="muted small">${s.timezone}</span>`;
}

function Target({s}) {
  const what = s.conversation ? html`→ conversation <a href=${`#/chat/${encodeURIComponent(s.conversation)}`}>${s.conversation}</a>`
    : html`a task${s.agent ? ` (${s.agent})` : ''}${s.model ? ` on ${s.model}` : ''}`;
  return html`<div class="small">${what}</div><div class="muted small ellipsis" title=${s.prompt}>${s.prompt}</div>`;
}

function LastRun({run}) {
  if (!run) return html`<span class="muted">never</span>`;
  const late = run.missed_by ? html` <span class="tag">late ${duration(run.missed_by)}</span>` : '';
  const what = run.error ? html`<div class="error-text">${run.error}</div>`
    : run.task_id ? html` <a href=${`#/task/${run.task_id}`}>${run.task_id}</a>` : run.event ? ` ${run.event}` : '';
  return html`${when(run.fired_at)}${run.manual ? html` <span class="tag">run now</span>` : ''}${late}${what}`;
}

function Row({s, now, onChange}) {
  const action = useAction();
  const base = `/api/v1/schedules/${encodeURIComponent(s.name)}`;
  const run = (method, path, ok) => action.run(() => api(method, `${base}${path}`), ok).then((r) => { if (r) onChange(); });
  const state = s.done ? 'done' : s.paused ? 'paused' : 'active';
  return html`<tr class="schedule-row" data-name=${s.name}>
    <td><strong>${s.name}</strong> <span class=${`tag schedule-state schedule-${state}`}>${state}</span>
      ${s.source !== 'api' ? html`<div class="muted small">from ${s.source === 'file' ? 'schedules.toml' : 'the main agent'}</div>` : ''}</td>
    <td><${Timing} s=${s} /></td>
    <td class="col-target"><${Target} s=${s} /></td>
    <td>${s.next_run_at && !s.paused ? html`${when(s.next_run_at)}<div class="muted small">in ${duration(s.next_run_at - now)}</div>`
      : html`<span class="muted">—</span>`}</td>
    <td class="col-last"><${LastRun} run=${s.last_run} /></td>
    <td class="actions-cell"><div class="button-row">
      ${s.paused ? html`<button disabled=${action.busy} onClick=${() => run('POST', '/resume', `Resumed ${s.name}.`)}>Resume</button>`
        : html`<button disabled=${action.busy || s.done} onClick=${() => run('POST', '/pause', `Paused ${s.name}.`)}>Pause</button>`}
      <button disabled=${action.busy} onClick=${() => run('POST', '/run-now', (r) => `Ran ${s.name}${r.task_id ? `: ${r.task_id}` : ''}.`)}>Run now</button>
      <button class="danger" disabled=${action.busy || s.source === 'file'}
        title=${s.source === 'file' ? 'defined in schedules.toml: remove it there' : 'remove this schedule'}
        onClick=${() => window.confirm(`Remove the schedule ${s.name}?`) && run('DELETE', '', `Removed ${s.name}.`)}>Remove</button>
    </div><${Notice} notice=${action.notice} /></td>
  </tr>`;
}

function NewSchedule({onAdded}) {
  const [name, setName] = useState('');
  const [prompt, setPrompt] = useState('');
  const [timing, setTiming] = useState('');
  const [zone, setZone] = useState(Intl.DateTimeFormat().resolvedOptions().timeZone || '');
  const action = useAction();
  const submit = async (e) => {
    e.preventDefault();
    const body = {name: name.trim(), prompt};
    // a time of day and date (2026-12-01T09:00) is a one-shot; anything else a cron expression
    if (/^\d{4}-\d{2}-\d{2}/.test(timing.trim())) body.at = timing.trim(); else body.cron = timing.trim();
    if (zone.trim()) body.timezone = zone.trim();
    const made = await action.run(() => api('POST', '/api/v1/schedules', body), (s) => `Added ${s.name}.`);
    if (made) { setName(''); setPrompt(''); setTiming(''); onAdded(); }
  };
  return html`<details class="panel new-task">
    <summary>New schedule</summary>
    <form onSubmit=${submit} class="form-grid">
      <label>Name <input name="name" required value=${name} onInput=${(e) => setName(e.target.value)}
        placeholder="e.g. morning-inbox" /></label>
      <label>When <input name="when" required value=${timing} onInput=${(e) => setTiming(e.target.value)}
        placeholder="0 8 * * 1-5, or 2026-12-01T09:00" /></label>
      <label>Time zone <input name="timezone" value=${zone} onInput=${(e) => setZone(e.target.value)} /></label>
      <label class="wide">Prompt <textarea name="prompt" rows="2" required value=${prompt}
        onInput=${(e) => setPrompt(e.target.value)} placeholder="What should the task do each time?"></textarea></label>
      <div class="form-actions"><button type="submit" disabled=${action.busy}>Add</button></div>
    </form>
    <${Notice} notice=${action.notice} />
  </details>`;
}

export function SchedulesView() {
  const [items, setItems] = useState(null);
  const [error, setError] = useState(null);
  const now = useNow();
  const load = useMemo(() => throttle(async () => {
    try {
      setItems(await api('GET', '/api/v1/schedules'));
      setError(null);
    } catch (e) { setError(e.message); }
  }, 300), []);
  useEffect(() => { load(); }, []);
  // a run starts a task or sends an event: the last and next runs move
  useEffect(() => onEvent((e) => { if (e.type === 'task.queued' || e.type === 'conversation.event'
    || e.type === 'dashboard.reconnected') load(); }), []);
  // a run that comes due moves its next run without any event of its own
  useEffect(() => {
    const due = (items || []).some((s) => s.next_run_at && !s.paused && s.next_run_at <= now);
    if (due) load();
  }, [Math.floor(now / 5)]);
  return html`<section class="schedules">
    <div class="toolbar"><h1>Schedules</h1></div>
    <${NewSchedule} onAdded=${load} />
    ${error ? html`<div class="notice notice-error" role="alert">${error}</div>` : ''}
    <div class="table-wrap">
      <table class="tasks schedules-table">
        <thead><tr><th>Name</th><th>When</th><th class="col-target">Does</th><th>Next run</th><th class="col-last">Last run</th>
          <th></th></tr></thead>
        <tbody>${(items || []).map((s) => html`<${Row} key=${s.name} s=${s} now=${now} onChange=${load} />`)}</tbody>
      </table>
      ${items && !items.length ? html`<p class="empty">No schedules yet: add one above, with
        <code>bgagents schedule add</code>, in <code>schedules.toml</code>, or ask the main agent
        ("remind me tomorrow at 9").</p>` : ''}
      ${!items && !error ? html`<p class="empty">Loading…</p>` : ''}
    </div>
  </section>`;
}
