// Ferry's dashboard, part 3: backups and restores, and the audit chain.
'use strict';

(() => {
  const {
    $, el, api, download, follow, debounce, confirmAction, toast, attempt, bytes, count, time,
    badge, bar, route, onLeave,
  } = Ferry;

  async function all(path, key) {
    const items = [];
    let after = null;
    do {
      const { data } = await api('GET', `${path}?limit=1000${after ? `&after=${after}` : ''}`);
      items.push(...data[key]);
      after = data.next_after;
    } while (after);
    return items.reverse();
  }

  function restoreForm(backup, onDone) {
    const id = `restore-${backup.id}`;
    const form = el('form', { class: 'row', id: `${id}-form` },
      el('div', {}, el('label', { for: `${id}-target` }, 'Target server'),
        el('input', { id: `${id}-target`, type: 'text', required: true, size: 34, placeholder: 'redis://host:6379', autocomplete: 'off' })),
      el('div', {}, el('label', { for: `${id}-conflict` }, 'Existing keys'),
        el('select', { id: `${id}-conflict` },
          [['fail', 'fail: refuse if any exists'], ['replace', 'replace them'], ['skip', 'keep them'], ['flush', 'flush the target first']]
            .map(([v, label]) => el('option', { value: v }, label)))),
      el('div', {}, el('button', { type: 'submit', class: 'primary' }, 'Restore')));
    form.addEventListener('submit', async (event) => {
      event.preventDefault();
      const target = $(`#${id}-target`).value.trim();
      const onConflict = $(`#${id}-conflict`).value;
      const ok = await confirmAction('Restore this backup?',
        `Load backup ${backup.label || backup.id} (${bytes(backup.bytes)}) into ${target}, on conflict: ${onConflict}${onConflict === 'flush' ? ' (everything on that server is deleted first)' : ''}.`,
        'Restore');
      if (!ok) return;
      const done = await attempt(() => api('POST', `/v1/backups/${backup.id}/restore`, { target: { url: target }, on_conflict: onConflict }));
      if (done) {
        toast(`Restore started into ${target}`);
        onDone();
      }
    });
    return form;
  }

  route(/^\/backups$/, 'backups', async (main) => {
    const backupsBody = el('tbody');
    const restoresBody = el('tbody');
    const capture = el('form', { class: 'row', id: 'capture-form' },
      el('div', {}, el('label', { for: 'capture-server' }, 'Server'),
        el('input', { id: 'capture-server', type: 'text', required: true, size: 34, placeholder: 'redis://host:6379', autocomplete: 'off' })),
      el('div', {}, el('label', { for: 'capture-label' }, 'Label (optional)'), el('input', { id: 'capture-label', type: 'text' })),
      el('div', {}, el('button', { type: 'submit', class: 'primary' }, 'Capture')));
    const upload = el('form', { class: 'row', id: 'upload-form' },
      el('div', {}, el('label', { for: 'upload-file' }, 'RDB file'), el('input', { id: 'upload-file', type: 'file', required: true })),
      el('div', {}, el('label', { for: 'upload-label' }, 'Label (optional)'), el('input', { id: 'upload-label', type: 'text' })),
      el('div', {}, el('button', { type: 'submit' }, 'Upload')));
    main.replaceChildren(
      el('h1', {}, 'Backups and restores'),
      el('p', { class: 'muted' }, 'A backup is a server’s RDB, captured over the replication link or uploaded. It can be restored into a server, or be a migration’s source.'),
      el('h2', {}, 'Capture a backup'), capture,
      el('h2', {}, 'Upload an RDB file'), upload,
      el('h2', {}, 'Backups'),
      el('table', { id: 'backups' }, el('thead', {}, el('tr', {},
        ['Backup', 'Server', 'Status', 'Size', 'Created', 'Actions'].map((h) => el('th', { scope: 'col' }, h)))), backupsBody),
      el('h2', {}, 'Restores'),
      el('table', { id: 'restores' }, el('thead', {}, el('tr', {},
        ['Restore', 'Backup', 'Target', 'State', 'Progress', 'Started', 'Finished'].map((h) => el('th', { scope: 'col' }, h)))), restoresBody));

    let backups = [];
    // Restore forms a person has opened, by backup id. The list is redrawn on every backup or
    // restore event; an open form is carried into the new rows as it is (typed values included)
    // instead of vanishing under the person filling it in.
    const openForms = new Map();
    const load = async () => {
      const [b, r] = await Promise.all([all('/v1/backups', 'backups'), all('/v1/restores', 'restores')]);
      backups = b;
      // Moving a form out of the document blurs the field being typed in: give it focus back.
      const focused = document.activeElement;
      backupsBody.replaceChildren(...backups.map((backup) => {
        const allowed = backup.allowed_actions || [];
        const actions = el('td', {});
        if (backup.status === 'completed') {
          actions.append(el('button', { 'data-download': backup.id, onclick: () => attempt(() => download(`/v1/backups/${backup.id}/download`, `${backup.id}.rdb`)) }, 'Download'), ' ');
        }
        if (allowed.includes('restore')) {
          const open = openForms.get(backup.id);
          actions.append(open || el('button', { 'data-restore': backup.id, onclick: (e) => {
            const form = restoreForm(backup, () => {
              openForms.delete(backup.id);
              load();
            });
            openForms.set(backup.id, form);
            e.target.replaceWith(form);
          } }, 'Restore…'), ' ');
        }
        if (allowed.includes('delete')) {
          actions.append(el('button', { class: 'danger', 'data-delete': backup.id, onclick: async () => {
            const ok = await confirmAction('Delete this backup?',
              `The file of backup ${backup.label || backup.id} (of ${backup.server}) is deleted; its history stays in the audit trail.`, 'Delete');
            if (ok && await attempt(() => api('DELETE', `/v1/backups/${backup.id}`))) load();
          } }, 'Delete'));
        }
        return el('tr', { 'data-id': backup.id },
          el('td', {}, backup.label || backup.id, el('div', { class: 'muted mono' }, backup.id)),
          el('td', { class: 'mono' }, backup.server),
          el('td', {}, badge(backup.status), backup.error ? el('div', { class: 'muted' }, backup.error) : null),
          el('td', { class: 'num' }, bytes(backup.bytes)),
          el('td', {}, time(backup.created_at)),
          actions);
      }));
      if (!backups.length) backupsBody.append(el('tr', {}, el('td', { colspan: 6, class: 'muted' }, 'No backups yet.')));
      for (const [id, form] of openForms) if (!form.isConnected) openForms.delete(id);
      if (focused && focused !== document.activeElement && focused.isConnected) focused.focus();
      restoresBody.replaceChildren(...r.map((restore) => el('tr', { 'data-id': restore.id },
        el('td', { class: 'mono' }, restore.id, restore.for_migration
          ? el('div', {}, 'rollback of ', el('a', { href: `#/migrations/${restore.for_migration}` }, 'its migration')) : null),
        el('td', { class: 'mono' }, restore.backup_id),
        el('td', { class: 'mono' }, restore.target),
        el('td', {}, badge(restore.state), restore.error ? el('div', { class: 'muted' }, restore.error.message) : null),
        el('td', {}, bar(restore.progress.percent, false, 'Restore progress'),
          el('div', { class: 'muted' }, `${count(restore.progress.keys_written)} keys`)),
        el('td', {}, time(restore.started_at)),
        el('td', {}, time(restore.completed_at)))));
      if (!r.length) restoresBody.append(el('tr', {}, el('td', { colspan: 7, class: 'muted' }, 'No restores yet.')));
    };

    capture.addEventListener('submit', async (event) => {
      event.preventDefault();
      const server = $('#capture-server').value.trim();
      const ok = await confirmAction('Capture a backup?',
        `Ferry connects to ${server} as a replica and stores its RDB (the server forks once).`, 'Capture');
      if (!ok) return;
      const label = $('#capture-label').value.trim() || null;
      if (await attempt(() => api('POST', '/v1/backups', { server: { url: server }, label }))) {
        toast(`Capturing ${server}…`);
        load();
      }
    });
    upload.addEventListener('submit', async (event) => {
      event.preventDefault();
      const file = $('#upload-file').files[0];
      if (!file) return;
      const label = $('#upload-label').value.trim();
      const query = label ? `?label=${encodeURIComponent(label)}` : '';
      if (await attempt(() => api('POST', `/v1/backups/upload${query}`, file, { raw: true }))) {
        toast(`Uploaded ${file.name}`);
        load();
      }
    });

    await load();
    const reload = debounce(load, 400);
    const stream = follow('/v1/events/stream', {
      onOpen: reload,
      onEvent: (event) => {
        if (event.aggregate_type === 'backup' || event.aggregate_type === 'restore') reload();
      },
    });
    onLeave(() => stream.stop());
  });

  route(/^\/audit$/, 'audit', async (main) => {
    const result = el('div', { id: 'audit-result', 'aria-live': 'polite' });
    main.replaceChildren(
      el('h1', {}, 'Audit trail'),
      el('p', {}, 'Every event carries the hash of the event before it and a hash of its own content, so an edit of any stored event shows. Verify the chain here, or download the log and check it offline with the script in the README.'),
      el('div', { class: 'buttons' },
        el('button', { class: 'primary', id: 'verify-chain', onclick: async (e) => {
          e.target.disabled = true;
          result.replaceChildren(el('p', { class: 'muted' }, 'Walking the chain…'));
          const done = await attempt(() => api('GET', '/v1/audit/verify'));
          e.target.disabled = false;
          if (!done) return;
          const r = done.data;
          result.replaceChildren(
            el('p', {}, 'The chain is ', badge(r.status), ` (${count(r.events)} events checked).`),
            el('table', {}, el('tbody', {},
              el('tr', {}, el('th', { scope: 'row' }, 'Head'), el('td', { class: 'mono' }, `seq ${r.head_seq}: ${r.head_hash}`)),
              el('tr', {}, el('th', { scope: 'row' }, 'Genesis'), el('td', { class: 'mono' }, `seq ${r.genesis_seq}, prev_hash ${r.genesis_prev_hash}`)),
              r.first_broken_seq !== null ? el('tr', {}, el('th', { scope: 'row' }, 'First broken'),
                el('td', {}, `seq ${r.first_broken_seq}: ${r.problem}`)) : null)));
        } }, 'Verify the chain'),
        el('button', { id: 'export-all', onclick: () => attempt(() => download('/v1/events/export', 'ferry-events.ndjson')) },
          'Download the whole log (NDJSON)')),
      result);
  });
})();
