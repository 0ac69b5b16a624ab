// The approvals inbox: tool calls waiting for a person, approved or denied with a reason (or cancelled with
// their task).
import {useEffect, useMemo, useState} from 'preact/hooks';
import {api, onEvent, throttle} from './live.js';
import {Notice, clock, html, useAction} from './ui.js';

// Events after which the set of pending approvals may differ.
export const APPROVAL_EVENTS = new Set(['task.waiting', 'task.approved', 'task.denied', 'task.completed',
  'task.failed', 'task.cancelled', 'dashboard.reconnected']);

export function ApprovalCard({approval, task, onDone}) {
  const [reason, setReason] = useState('');
  const action = useAction();
  const decide = async (decision) => {
    const done = await action.run(() => api('POST', `/api/v1/approvals/${approval.id}`,
      {decision, reason: reason.trim() || null}), decision === 'approve' ? 'Approved.' : 'Denied.');
    if (done && onDone) onDone();
  };
  const pending = approval.status === 'pending';
  return html`<article class=${`panel approval approval-${approval.status}`} aria-label=${`Approval ${approval.id}`}>
    <header><strong>${approval.tool}</strong>
      <span class="muted"> for ${task ? html`<a href=${`#/task/${approval.task_id}`} class="task-name">${task.name}</a>${' '}
        <span class="small">(${approval.task_id}${task.agent ? ` · ${task.agent}` : ''})</span>`
        : html`<a href=${`#/task/${approval.task_id}`}>${approval.task_id}</a>`} · ${clock(approval.created_at)}</span>
      ${pending ? '' : html` <span class=${`status status-${{approved: 'completed', cancelled: 'cancelled'}[approval.status] || 'failed'}`}>${approval.status}</span>`}
    </header>
    <pre class="args">${JSON.stringify(approval.args, null, 2)}</pre>
    <p class="muted small">${approval.reason}</p>
    ${pending ? html`<form class="row" onSubmit=${(e) => { e.preventDefault(); decide('approve'); }}>
        <input name="reason" aria-label="Reason" placeholder="Reason (optional; the agent sees it)" value=${reason}
          onInput=${(e) => setReason(e.target.value)} />
        <button type="submit" class="primary" disabled=${action.busy}>Approve</button>
        <button type="button" class="danger" disabled=${action.busy} onClick=${() => decide('deny')}>Deny</button>
      </form>` : approval.decision_reason ? html`<p class="small">Reason: ${approval.decision_reason}</p>` : ''}
    <${Notice} notice=${action.notice} />
  </article>`;
}

export function ApprovalsView() {
  const [all, setAll] = useState(false);
  const [items, setItems] = useState(null);
  const [tasks, setTasks] = useState({});
  const [error, setError] = useState(null);
  const load = useMemo(() => throttle(async () => {
    try {
      const found = await api('GET', `/dashboard/api/approvals?status=${all ? 'all' : 'pending'}`);
      setTasks(found.tasks);
      setItems(found.approvals);
      setError(null);
    } catch (e) { setError(e.message); }
  }, 200), [all]);
  useEffect(() => { load(); }, [all]);
  useEffect(() => onEvent((e) => { if (APPROVAL_EVENTS.has(e.type)) load(); }), [all]);
  return html`<section>
    <div class="toolbar"><h1>Approvals</h1>
      <label class="check"><input type="checkbox" checked=${all} onChange=${(e) => setAll(e.target.checked)} />
        show decided ones too</label></div>
    ${error ? html`<div class="notice notice-error" role="alert">${error}</div>` : ''}
    ${items && !items.length ? html`<p class="empty">Nothing waits for a decision. A tool whose permission is
      <code>ask</code> shows up here.</p>` : ''}
    ${(items || []).slice().reverse().map((a) => html`<${ApprovalCard} key=${a.id} approval=${a} task=${tasks[a.task_id]}
      onDone=${load} />`)}
  </section>`;
}
