// The dashboard shell: the header (pages, approvals count, connection), and the page the URL's hash names.
import {render} from 'preact';
import {useEffect, useMemo, useState} from 'preact/hooks';
import {api, connect, onEvent, onStatus, throttle} from './live.js';
import {APPROVAL_EVENTS, ApprovalsView} from './approvals.js';
import {ChatView} from './chat.js';
import {SchedulesView} from './schedules.js';
import {TaskView} from './task.js';
import {TasksView} from './tasks.js';
import {html} from './ui.js';
import {UsageView} from './usage.js';

function route(hash) {
  const parts = hash.replace(/^#\/?/, '').split('/').filter(Boolean).map(decodeURIComponent);
  if (parts[0] === 'task' && parts[1]) return {page: 'task', id: parts[1]};
  if (parts[0] === 'chat') return {page: 'chat', cid: parts[1] || 'default'};
  if (parts[0] === 'approvals') return {page: 'approvals'};
  if (parts[0] === 'usage') return {page: 'usage'};
  if (parts[0] === 'schedules') return {page: 'schedules'};
  return {page: 'tasks'};
}

const LABELS = {live: 'live', connecting: 'connecting…', offline: 'disconnected · reconnecting…',
                stopped: 'server stopped'};
const DOWN = {
  offline: 'The server does not answer. This page reconnects by itself as soon as it does.',
  stopped: 'The bgagents server stopped. This page reconnects by itself when it is back (bgagents serve).',
};

function App() {
  const [where, setWhere] = useState(route(location.hash));
  const [state, setState] = useState({agents: [], model: null, approvals: 0});
  const [link, setLink] = useState('connecting');

  const readState = useMemo(() => throttle(async () => {
    try { setState(await api('GET', '/dashboard/api/state')); } catch (e) { /* the status shows it */ }
  }, 300), []);

  useEffect(() => {
    const onHash = () => { setWhere(route(location.hash)); window.scrollTo(0, 0); };
    window.addEventListener('hashchange', onHash);
    readState();
    connect();
    const offStatus = onStatus(setLink);
    const offEvent = onEvent((e) => { if (APPROVAL_EVENTS.has(e.type)) readState(); });
    return () => { window.removeEventListener('hashchange', onHash); offStatus(); offEvent(); };
  }, []);

  const tab = (page, href, label, extra) => html`<a href=${href} class=${where.page === page ? 'tab on' : 'tab'}
    aria-current=${where.page === page ? 'page' : undefined}>${label}${extra || ''}</a>`;
  let view;
  if (where.page === 'task') view = html`<${TaskView} id=${where.id} />`;
  else if (where.page === 'chat') view = html`<${ChatView} cid=${where.cid} />`;
  else if (where.page === 'approvals') view = html`<${ApprovalsView} />`;
  else if (where.page === 'usage') view = html`<${UsageView} />`;
  else if (where.page === 'schedules') view = html`<${SchedulesView} />`;
  else view = html`<${TasksView} state=${state} />`;
  return html`<header class="top">
      <a class="brand" href="#/"><span class="logo">bg</span>agents</a>
      <nav aria-label="Pages">
        ${tab('tasks', '#/', 'Tasks')}
        ${tab('chat', '#/chat', 'Chat')}
        ${tab('approvals', '#/approvals', 'Approvals', state.approvals
          ? html` <span class="badge" aria-label=${`${state.approvals} waiting`} id="approvals-count">${state.approvals}</span>` : '')}
        ${tab('schedules', '#/schedules', 'Schedules')}
        ${tab('usage', '#/usage', 'Usage')}
      </nav>
      <span class=${`link link-${link}`} role="status" id="link-status">${LABELS[link] || link}</span>
    </header>
    ${DOWN[link] ? html`<div class="down-banner" role="alert" id="down-banner">${DOWN[link]}</div>` : ''}
    <main>${view}</main>`;
}

const root = document.getElementById('app');
root.textContent = '';
render(html`<${App} />`, root);
