// Small shared pieces: html``, formatting, a status badge, a ticking clock, an action's answer.
import {h} from 'preact';
import {useEffect, useState} from 'preact/hooks';
import htm from 'htm';

export const html = htm.bind(h);

export const ACTIVE = new Set(['queued', 'running', 'waiting']);

// One shared 1-second tick for elapsed times (a local clock, no request behind it).
const tickers = new Set();
setInterval(() => { for (const fn of tickers) fn(); }, 1000);
export function useNow() {
  const [now, setNow] = useState(Date.now() / 1000);
  useEffect(() => {
    const fn = () => setNow(Date.now() / 1000);
    tickers.add(fn);
    return () => tickers.delete(fn);
  }, []);
  return now;
}

export function duration(seconds) {
  if (seconds === null || seconds === undefined || !isFinite(seconds)) return '—';
  seconds = Math.max(0, Math.floor(seconds));
  if (seconds < 60) return `${seconds}s`;
  const m = Math.floor(seconds / 60);
  if (m < 60) return `${m}m ${String(seconds % 60).padStart(2, '0')}s`;
  const hours = Math.floor(m / 60);
  if (hours < 48) return `${hours}h ${String(m % 60).padStart(2, '0')}m`;
  return `${Math.floor(hours / 24)}d`;
}

export function elapsed(task, now) {
  const start = task.started_at || task.created_at;
  const end = task.finished_at || (ACTIVE.has(task.status) ? now : task.last_activity_at || now);
  return duration(end - start);
}

export function tokens(n) {
  if (!n) return '0';
  if (n < 1000) return String(n);
  if (n < 1e6) return `${(n / 1000).toFixed(n < 1e4 ? 1 : 0)}k`;
  return `${(n / 1e6).toFixed(1)}M`;
}

export function cost(usd) {
  if (usd === null || usd === undefined) return '—';
  return usd < 0.01 ? `$${usd.toFixed(4)}` : `$${usd.toFixed(2)}`;
}

export function clock(t) {
  if (!t) return '';
  const d = new Date(t * 1000);
  return d.toLocaleTimeString([], {hour: '2-digit', minute: '2-digit', second: '2-digit'});
}

export function Status({status}) {
  return html`<span class="status status-${status}">${status}</span>`;
}

export function isDemo(model) { return model === 'demo' || (model || '').endsWith(':demo'); }

export function Model({model}) {
  if (model === 'demo') return html`<span class="model">demo <span class="tag">offline demo model</span></span>`;
  return html`<span class="model">${model}${isDemo(model) ? html` <span class="tag">demo</span>` : ''}</span>`;
}

// The answer or the error of the last action, shown where the action was taken.
export function Notice({notice}) {
  if (!notice) return null;
  return html`<div class="notice ${notice.error ? 'notice-error' : 'notice-ok'}" role=${notice.error ? 'alert' : 'status'}>
    ${notice.error ? html`<strong>Error: </strong>` : ''}${notice.text}</div>`;
}

// Runs an async action, turning its answer or error into a notice; `busy` guards double clicks.
export function useAction() {
  const [notice, setNotice] = useState(null);
  const [busy, setBusy] = useState(false);
  const run = async (fn, ok) => {
    setBusy(true);
    try {
      const result = await fn();
      const text = typeof ok === 'function' ? ok(result) : ok;
      setNotice(text ? {text} : null);
      return result;
    } catch (e) {
      setNotice({error: true, text: e.message});
      return undefined;
    } finally {
      setBusy(false);
    }
  };
  return {notice, setNotice, busy, run};
}

export function pretty(text) {
  try { return JSON.stringify(JSON.parse(text), null, 2); } catch (e) { return text; }
}
