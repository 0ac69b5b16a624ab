// An isolated task's own git worktree: its branch, state and diff stat, its diff, merge and discard.
import {useState} from 'preact/hooks';
import {api} from './live.js';
import {ACTIVE, Notice, html, useAction} from './ui.js';

export function WorktreePanel({task, onChange}) {
  const wt = task.worktree;
  const [diff, setDiff] = useState(null);
  const show = useAction();
  const merge = useAction();
  const discard = useAction();
  const base = `/api/v1/tasks/${task.id}`;
  const open = wt.state === 'active';
  const stat = (diff && diff.stat) || (task.result && task.result.diff_stat) || '';

  const toggle = async () => {
    if (diff) { setDiff(null); return; }
    const found = await show.run(() => api('GET', `${base}/diff`));
    if (found) setDiff(found);
  };
  const onMerge = async () => {
    if (!window.confirm(`Merge ${wt.branch} into the workspace's current branch?`)) return;
    const done = await merge.run(() => api('POST', `${base}/merge`), `Merged ${wt.branch} into the workspace.`);
    if (done) { setDiff(null); onChange(); }
  };
  const onDiscard = async () => {
    if (!window.confirm(`Throw away ${wt.branch} and its worktree${ACTIVE.has(task.status) ? ' (the task is cancelled first)' : ''}?`)) return;
    const done = await discard.run(() => api('POST', `${base}/discard`), `Discarded ${wt.branch}.`);
    if (done) { setDiff(null); onChange(); }
  };
  return html`<section class="panel worktree" aria-label="Worktree">
    <h2>Worktree <span class=${`tag wt-${wt.state}`} id="worktree-state">${wt.state}</span></h2>
    <dl class="pairs">
      <dt>Branch</dt><dd><code id="worktree-branch">${wt.branch}</code></dd>
      <dt>From</dt><dd><code>${wt.base.slice(0, 12)}</code></dd>
    </dl>
    ${stat ? html`<pre class="stat" id="worktree-stat">${stat}</pre>`
      : html`<p class="muted small">${ACTIVE.has(task.status) ? 'Its changes are counted when it ends.' : 'No changes.'}</p>`}
    <div class="button-row">
      <button disabled=${!open || show.busy} onClick=${toggle}>${diff ? 'Hide diff' : 'Diff'}</button>
      <button class="primary" disabled=${!open || ACTIVE.has(task.status) || merge.busy} onClick=${onMerge}
        title=${ACTIVE.has(task.status) ? 'merge once the task has ended' : 'merge into the workspace'}>Merge</button>
      <button class="danger" disabled=${!open || discard.busy} onClick=${onDiscard}>Discard</button>
    </div>
    <${Notice} notice=${show.notice} /><${Notice} notice=${merge.notice} /><${Notice} notice=${discard.notice} />
    ${diff ? html`<div class="diff">
        <p class="muted small">${diff.files.length} file${diff.files.length === 1 ? '' : 's'}: ${diff.files.join(', ')}</p>
        <pre class="patch" id="worktree-patch">${diff.patch || '(no changes)'}</pre></div>` : ''}
  </section>`;
}
