// Ferry's dashboard, part 2: migrations. The list, the three steps of a migration (configure,
// validate, migrate) and its audit timeline. Live updates come from the event streams.
'use strict';

(() => {
  const {
    $, el, api, follow, debounce, confirmAction, toast, attempt, bytes, count, seconds, time,
    badge, bar, route, onLeave,
  } = Ferry;

  const STATES = ['configured', 'validating', 'validated', 'validation_failed', 'migrating',
    'cutting_over', 'completed', 'failed', 'cancelled'];
  const PRE_START = ['configured', 'validating', 'validated', 'validation_failed'];
  const UUID = '([0-9a-fA-F-]{36})';

  const sourceText = (v) => (v.source.url ? v.source.url : `backup ${v.source.rdb.backup_id}`);
  const lagText = (p) => {
    if (p.lag_bytes === null || p.lag_bytes === undefined) return '–';
    const secs = p.lag_seconds === null || p.lag_seconds === undefined ? '' : ` · ${seconds(p.lag_seconds)}`;
    return `${bytes(p.lag_bytes)}${secs}`;
  };
  const percentText = (p) => (p.percent === null || p.percent === undefined ? '–'
    : `${p.percent.toFixed(1)}%${p.estimated ? ' (estimated)' : ''}`);

  function steps(current) {
    const names = ['Configure', 'Validate', 'Migrate'];
    return el('ol', { class: 'steps', 'aria-label': 'Steps' }, names.map((name, i) => el('li', {
      'aria-current': i === current ? 'step' : null,
      class: i < current ? 'done' : null,
    }, `${i + 1}. ${name}`)));
  }

  // ---- the list ---------------------------------------------------------------------------
  route(/^\/migrations$/, 'migrations', async (main) => {
    const stateSelect = el('select', { id: 'filter-state' }, el('option', { value: '' }, 'any state'),
      STATES.map((s) => el('option', { value: s }, s.replace(/_/g, ' '))));
    const search = el('input', { id: 'filter-text', type: 'search', placeholder: 'name, id or server' });
    const tbody = el('tbody');
    main.replaceChildren(
      el('h1', {}, 'Migrations'),
      el('div', { class: 'filters' },
        el('div', {}, el('label', { for: 'filter-state' }, 'State'), stateSelect),
        el('div', {}, el('label', { for: 'filter-text' }, 'Search'), search),
        el('div', {}, el('button', { class: 'primary', onclick: () => { location.hash = '#/new'; } }, 'New migration'))),
      el('table', { id: 'migrations' },
        el('thead', {}, el('tr', {}, ['Migration', 'State', 'Phase', 'Progress', 'Lag', 'Started', 'Finished']
          .map((h) => el('th', { scope: 'col' }, h)))),
        tbody));
    let views = new Map();
    const draw = () => {
      const state = stateSelect.value;
      const text = search.value.trim().toLowerCase();
      const rows = [...views.values()].reverse().filter((v) => (!state || v.state === state)
        && (!text || [v.name, v.id, sourceText(v), v.target.url].join(' ').toLowerCase().includes(text)));
      tbody.replaceChildren(...rows.map((v) => {
        const p = v.progress;
        return el('tr', { 'data-id': v.id },
          el('td', {}, el('a', { href: `#/migrations/${v.id}` }, v.name || v.id),
            el('div', { class: 'muted mono' }, `${sourceText(v)} → ${v.target.url}`)),
          el('td', {}, badge(v.state)),
          el('td', {}, v.phase || '–'),
          el('td', {}, bar(p.percent, p.estimated, `Progress of ${v.name || v.id}`),
            el('div', { class: 'muted' }, percentText(p))),
          el('td', { class: 'num' }, lagText(p)),
          el('td', {}, time(v.started_at)),
          el('td', {}, time(v.finished_at)));
      }));
      if (!rows.length) {
        tbody.append(el('tr', {}, el('td', { colspan: 7, class: 'muted' },
          views.size ? 'No migration matches the filters.' : 'No migrations yet: start with “New migration”.')));
      }
    };
    const load = async () => {
      const all = [];
      let after = null;
      do {
        const { data } = await api('GET', `/v1/migrations?limit=1000${after ? `&after=${after}` : ''}`);
        all.push(...data.migrations);
        after = data.next_after;
      } while (after);
      views = new Map(all.map((v) => [v.id, v]));
      draw();
    };
    stateSelect.addEventListener('change', draw);
    search.addEventListener('input', draw);
    await load();
    const changed = new Set();
    const refresh = debounce(async () => {
      const ids = [...changed];
      changed.clear();
      for (const id of ids) {
        const got = await attempt(() => api('GET', `/v1/migrations/${id}`));
        if (got) views.set(id, got.data);
      }
      draw();
    }, 250);
    const stream = follow('/v1/events/stream', {
      // Connected: what changed between the first load and now is read again.
      onOpen: debounce(() => load().catch(() => {}), 250),
      onEvent: (event) => {
        if (event.aggregate_type !== 'migration') return;
        changed.add(event.aggregate_id);
        refresh();
      },
    });
    onLeave(() => stream.stop());
  });

  // ---- configure (new, or edit before start) ----------------------------------------------
  const FIELD_INPUT = {
    name: 'name', source: 'source-url', 'source.url': 'source-url', target: 'target-url',
    'target.url': 'target-url', mode: 'mode', options: 'on-conflict', 'options.on_conflict': 'on-conflict',
    'options.verify': 'verify', 'options.backup': 'opt-backup',
  };

  function select(id, value, options) {
    return el('select', { id }, options.map(([v, label]) => el('option', { value: v, selected: v === value }, label)));
  }

  function field(id, label, input, hint) {
    return el('div', { class: 'field' }, el('label', { for: id }, label), input,
      hint ? el('div', { class: 'hint', id: `${id}-hint` }, hint) : null,
      el('div', { class: 'error', id: `${id}-error`, role: 'alert' }));
  }

  function checkbox(id, label, checked, hint) {
    return el('div', { class: 'field check' },
      el('input', { id, type: 'checkbox', checked }), ' ', el('label', { for: id }, label),
      hint ? el('div', { class: 'hint' }, hint) : null);
  }

  async function guide() {
    const { data } = await api('GET', '/v1/guide/redis');
    return el('aside', { class: 'guide', 'aria-labelledby': 'guide-title' },
      el('h2', { id: 'guide-title' }, 'Before you start'),
      el('p', { class: 'muted' }, 'What a migration needs from both servers. Validation checks each of these.'),
      el('dl', {}, data.prerequisites.map((item) => [
        el('dt', {}, item.title),
        el('dd', {}, item.why, ' ', el('span', { class: 'muted' }, `Fix: ${item.how_to_fix}`)),
      ])));
  }

  async function configure(main, existing) {
    const v = existing;
    const o = v ? v.options : { on_conflict: 'fail', backup: true, verify: 'sample', pause_source_writes_on_cutover: true, auto_cutover: false };
    const fromBackup = v && v.source.rdb;
    const form = el('form', { id: 'migration-form', novalidate: true },
      field('name', 'Name (optional)', el('input', { id: 'name', type: 'text', value: v ? v.name || '' : '' })),
      fromBackup
        ? el('p', {}, `Source: backup ${v.source.rdb.backup_id} (an RDB file; snapshot mode).`)
        : field('source-url', 'Source server', el('input', { id: 'source-url', type: 'text', required: true, autocomplete: 'off', spellcheck: 'false', value: v ? v.source.url : '', placeholder: 'redis://[user:password@]host:6379' }),
          v ? 'Shown with *** for its password: leave *** to keep the stored one.' : 'Ferry reads it as a replica: PSYNC, then the live writes.'),
      field('target-url', 'Target server', el('input', { id: 'target-url', type: 'text', required: true, autocomplete: 'off', spellcheck: 'false', value: v ? v.target.url : '', placeholder: 'redis://host:6379' })),
      field('mode', 'Mode', select('mode', v ? v.mode : 'snapshot', [['snapshot', 'snapshot: copy once, then complete'], ['live', 'live: keep applying writes until you cut over'], ['dry_run', 'dry run: read everything, write nothing, report']])),
      el('fieldset', {}, el('legend', {}, 'Options'),
        field('on-conflict', 'A key that already exists on the target', select('on-conflict', o.on_conflict, [
          ['fail', 'fail: stop and name the key (default)'], ['replace', 'replace: overwrite it'],
          ['skip', 'skip: keep the target’s value'], ['flush', 'flush: empty the target’s databases first']])),
        field('verify', 'Verification after the copy', select('verify', o.verify, [
          ['sample', 'sample: key counts and 1,000 keys (default)'], ['full', 'full: every key'], ['none', 'none']])),
        checkbox('opt-backup', 'Take a restore point of the target first (when it holds keys)', o.backup),
        checkbox('opt-pause', 'Pause the source’s writes during cutover', o.pause_source_writes_on_cutover),
        checkbox('opt-auto-cutover', 'Cut over by itself once caught up (live mode)', o.auto_cutover)),
      el('div', { class: 'problem', id: 'form-problem', role: 'alert', hidden: true }),
      el('div', { class: 'buttons' },
        el('button', { type: 'submit', class: 'primary', id: 'save-validate' }, v ? 'Save and validate again' : 'Create and validate'),
        v ? el('a', { href: `#/migrations/${v.id}` }, 'Back without saving') : null));
    main.replaceChildren(
      el('h1', {}, v ? `Edit ${v.name || v.id}` : 'New migration'),
      steps(0),
      el('div', { class: 'layout' }, form, await guide()));
    form.addEventListener('submit', async (event) => {
      event.preventDefault();
      for (const node of form.querySelectorAll('.error')) node.textContent = '';
      const problemBox = $('#form-problem');
      problemBox.hidden = true;
      const spec = {
        name: $('#name').value.trim() || null,
        target: { url: $('#target-url').value.trim() },
        mode: $('#mode').value,
        options: {
          on_conflict: $('#on-conflict').value,
          verify: $('#verify').value,
          backup: $('#opt-backup').checked,
          pause_source_writes_on_cutover: $('#opt-pause').checked,
          auto_cutover: $('#opt-auto-cutover').checked,
        },
      };
      if (!fromBackup) spec.source = { url: $('#source-url').value.trim() };
      const button = $('#save-validate');
      button.disabled = true;
      button.textContent = 'Validating…';
      try {
        const saved = v ? await api('PATCH', `/v1/migrations/${v.id}`, spec) : await api('POST', '/v1/migrations', spec);
        const id = saved.data.id;
        await api('POST', `/v1/migrations/${id}/validate`).catch((e) => toast(e.message, true));
        location.hash = `#/migrations/${id}`;
      } catch (e) {
        const input = e.field && FIELD_INPUT[e.field];
        const slot = input && $(`#${input}-error`);
        if (slot) {
          slot.textContent = e.message;
          $(`#${input}`).focus();
        } else {
          problemBox.textContent = e.message;
          problemBox.hidden = false;
        }
        button.disabled = false;
        button.textContent = v ? 'Save and validate again' : 'Create and validate';
      }
    });
  }

  route(/^\/new$/, 'new', (main) => configure(main, null));
  route(new RegExp(`^/migrations/${UUID}/edit$`), 'migrations', async (main, id) => {
    const { data } = await api('GET', `/v1/migrations/${id}`);
    await configure(main, data);
  });

  // ---- one migration: validate, then migrate ----------------------------------------------
  function measured(details) {
    if (!details || typeof details !== 'object') return '';
    return Object.entries(details)
      .filter(([, value]) => value !== null && typeof value !== 'object')
      .map(([key, value]) => `${key}: ${value}`)
      .join(', ');
  }

  function validationSection(v, fixes) {
    const report = v.validation;
    const allowed = v.allowed_actions;
    const section = el('section', { id: 'validation', 'aria-labelledby': 'validation-title' },
      el('h2', { id: 'validation-title' }, 'Validation'));
    if (!report) {
      section.append(el('p', { class: 'muted' }, v.state === 'validating' ? 'Validating…' : 'Not validated yet.'));
    } else {
      section.append(el('p', {}, 'Result: ', badge(report.status)),
        el('table', { id: 'checks' },
          el('thead', {}, el('tr', {}, ['Check', 'Status', 'What was found', 'Measured', 'Fix'].map((h) => el('th', { scope: 'col' }, h)))),
          el('tbody', {}, report.checks.map((c) => el('tr', { 'data-check': c.id, 'data-status': c.status },
            el('td', { class: 'mono' }, c.id),
            el('td', {}, badge(c.status)),
            el('td', {}, c.message),
            el('td', { class: 'muted' }, measured(c.details)),
            el('td', { class: 'muted' }, c.status === 'pass' ? '' : fixes.get(c.id) || ''))))));
    }
    const act = (name) => allowed.includes(name);
    section.append(el('div', { class: 'buttons' },
      el('button', { id: 'run-validation', disabled: !act('validate'), onclick: async (e) => {
        e.target.disabled = true;
        e.target.textContent = 'Validating…';
        await attempt(() => api('POST', `/v1/migrations/${v.id}/validate`));
        Ferry.navigate();
      } }, 'Run validation again'),
      el('button', { id: 'edit', disabled: !act('update'), onclick: () => { location.hash = `#/migrations/${v.id}/edit`; } }, 'Edit configuration'),
      el('button', { id: 'start', class: 'primary', disabled: !act('start'), onclick: async () => {
        const ok = await confirmAction('Start the migration?',
          `Ferry will write into ${v.target.url} (on conflict: ${v.options.on_conflict}).`, 'Start');
        if (!ok) return;
        if (await attempt(() => api('POST', `/v1/migrations/${v.id}/start`))) Ferry.navigate();
      } }, 'Start migration'),
      el('button', { id: 'cancel', disabled: !act('cancel'), onclick: () => cancel(v) }, 'Cancel migration')));
    return section;
  }

  async function cancel(v) {
    const ok = await confirmAction('Cancel the migration?',
      `Ferry stops writing into ${v.target.url}; what was written stays (roll back to the restore point if you need the target as it was).`,
      'Cancel migration');
    if (ok && await attempt(() => api('POST', `/v1/migrations/${v.id}/cancel`))) toast('Cancelling…');
  }

  /** The lag chart: lag bytes of the checkpoints, as an SVG polyline. */
  function chart(samples) {
    const w = 640;
    const h = 120;
    const svg = document.createElementNS('http://www.w3.org/2000/svg', 'svg');
    svg.setAttribute('class', 'chart');
    svg.setAttribute('viewBox', `0 0 ${w} ${h}`);
    svg.setAttribute('role', 'img');
    const max = Math.max(1, ...samples.map((s) => s.lag));
    svg.setAttribute('aria-label', samples.length
      ? `Lag over the last ${samples.length} checkpoints; now ${bytes(samples[samples.length - 1].lag)}, highest ${bytes(max)}`
      : 'No lag measured yet');
    const points = samples.map((s, i) => {
      const x = samples.length < 2 ? 0 : (i / (samples.length - 1)) * (w - 10) + 5;
      const y = h - 18 - (s.lag / max) * (h - 30);
      return `${x.toFixed(1)},${y.toFixed(1)}`;
    });
    const line = document.createElementNS('http://www.w3.org/2000/svg', 'polyline');
    line.setAttribute('points', points.join(' '));
    svg.append(line);
    const label = document.createElementNS('http://www.w3.org/2000/svg', 'text');
    label.setAttribute('x', 6);
    label.setAttribute('y', h - 4);
    label.textContent = samples.length ? `lag (bytes), max ${bytes(max)}` : 'lag: no checkpoint yet';
    svg.append(label);
    return svg;
  }

  const MILESTONES = {
    MigrationStarted: 'started', BackupCompleted: 'restore point taken', SnapshotRequested: 'snapshot requested',
    SnapshotStarted: 'snapshot started', SnapshotCompleted: 'snapshot copied', StreamingStarted: 'streaming live writes',
    LinkLost: 'link lost', LinkResumed: 'link resumed', CutoverStarted: 'cutover started',
    VerificationCompleted: 'verified', CutoverCompleted: 'cut over', MigrationCompleted: 'completed',
    MigrationFailed: 'failed', MigrationCancelled: 'cancelled', RollbackRequested: 'rollback requested',
    RollbackEnded: 'rollback ended', LimitsChanged: 'rate limits changed',
    Throttled: 'slowed down (HA guard)', ThrottleLifted: 'slowdown lifted',
    SourceBufferNearLimit: 'source buffer near its limit', ScheduledStart: 'started as scheduled',
    CutoverDeferred: 'cutover waits for its window', CutoverWindowMissed: 'cutover window missed',
    CutoverForced: 'cutover forced outside its window',
    DryRunCompleted: 'dry run report', AclDiffed: 'ACL users compared',
    AclCopied: 'ACL users copied',
    ShardFailedOver: 'a source shard failed over (followed)',
  };

  // A dry run's report (`dry_run_report`): counts per db and type, the biggest keys, what the
  // target cannot take, memory and ETA. The ACL diff (`acl_users`): names and statuses only.
  function dryRunReport(r) {
    const table = (id, head, rows) => el('table', { id }, el('thead', {}, el('tr', {}, head.map((h) => el('th', {}, h)))),
      el('tbody', {}, rows.map((cells) => el('tr', {}, cells.map((c, i) => el('td', i === 0 || typeof c !== 'number' ? {} : { class: 'num' }, typeof c === 'number' ? count(c) : c))))));
    const m = r.memory;
    const fits = m.fits === null ? 'no maxmemory on the target' : (m.fits ? `fits in ${bytes(m.target_free_bytes)} free` : `does NOT fit in ${bytes(m.target_free_bytes)} free`);
    return [el('h3', {}, 'Dry run'),
      el('p', { id: 'dry-run-summary' }, `${count(r.keys)} keys · ${count(r.keys_expired)} expired · ${bytes(r.rdb_bytes)} read in ${seconds(r.read_ms / 1000)} · ETA ${seconds(r.eta.seconds)} · memory ≈ ${bytes(m.needed_bytes)} (${fits})`),
      table('dry-run-databases', ['db', 'type', 'keys', 'bytes'], r.databases.map((c) => [`db ${c.db}`, c.type, c.keys, bytes(c.bytes)])),
      el('h3', {}, 'Biggest keys'),
      table('dry-run-biggest', ['key', 'type', 'bytes'], r.biggest_keys.map((k) => [`db ${k.db} ${k.key}`, k.type, bytes(k.bytes)])),
      r.cannot_take.length
        ? table('dry-run-cannot-take', ['the target cannot take', 'keys', 'examples'], r.cannot_take.map((c) => [`${c.reason.replace(/_/g, ' ')}: ${c.detail}`, c.count, c.examples.map((k) => `db ${k.db} ${k.key}`).join(', ')]))
        : el('p', { id: 'dry-run-cannot-take' }, 'The target can take every key.'),
      el('p', { class: 'muted' }, r.note)];
  }

  function aclUsers(report) {
    return [el('h3', {}, 'ACL users'), el('table', { id: 'acl-users' }, el('tbody', {}, report.users.map((u) => el('tr', {},
      el('td', { class: 'mono' }, u.user), el('td', {}, u.status), el('td', { class: 'mono' }, u.source_rules), el('td', {}, u.reason || '')))))];
  }

  // A cluster source: one row per shard (`progress.shards`), each read over its own link.
  function shardTable(shards) {
    const head = ['shard', 'read from', 'phase', 'bytes', 'keys', 'commands', 'lag', 'offset'];
    return el('div', {}, el('h3', {}, 'Shards'), el('table', { id: 'shards' },
      el('thead', {}, el('tr', {}, head.map((h) => el('th', { scope: 'col' }, h)))),
      el('tbody', {}, shards.map((sh) => el('tr', { 'data-shard': sh.name },
        el('td', { class: 'mono' }, sh.name), el('td', { class: 'mono', title: sh.node_id }, sh.addr), el('td', {}, sh.phase),
        el('td', { class: 'num' }, bytes(sh.rdb_bytes_read)), el('td', { class: 'num' }, count(sh.keys_written)),
        el('td', { class: 'num' }, count(sh.commands_streamed)),
        el('td', { class: 'num' }, sh.lag_bytes === null || sh.lag_bytes === undefined ? '–' : bytes(sh.lag_bytes)),
        el('td', { class: 'num' }, sh.applied_offset === null || sh.applied_offset === undefined ? '–' : String(sh.applied_offset)))))));
  }

  function migrateSection(v, events, verification) {
    const p = v.progress;
    const allowed = v.allowed_actions;
    const act = (name) => allowed.includes(name);
    const stat = (key, label, value) => el('div', { class: 'stat', 'data-stat': key }, el('div', { class: 'k' }, label), el('div', { class: 'v' }, value));
    const samples = events.filter((e) => e.type === 'Checkpoint' && e.data.lag_bytes !== null)
      .slice(-120).map((e) => ({ lag: e.data.lag_bytes }));
    const timeline = events.filter((e) => MILESTONES[e.type]);
    const section = el('section', { id: 'migrate', 'aria-labelledby': 'migrate-title' },
      el('h2', { id: 'migrate-title' }, 'Migration'),
      el('p', { class: 'detail', id: 'phase' }, el('strong', {}, v.phase ? `${v.phase}: ` : `${v.state.replace(/_/g, ' ')}`),
        v.phase_detail || (v.scheduled_start ? `starts by itself at ${v.scheduled_start}` : '')),
      bar(p.percent, p.estimated, 'Snapshot progress'),
      el('div', { class: 'grid' },
        stat('percent', 'Snapshot', percentText(p)),
        stat('bytes', 'Bytes', `${bytes(p.rdb_bytes_read)} of ${p.rdb_bytes_total === null ? '?' : bytes(p.rdb_bytes_total)}${p.estimated && p.rdb_bytes_total !== null ? ' (est.)' : ''}`),
        stat('keys', 'Keys written', `${count(p.keys_written)}${p.keys_total !== null ? ` of ${count(p.keys_total)}` : ''}`),
        stat('eta', 'Time left', p.eta_seconds === null ? '–' : `${seconds(p.eta_seconds)}${p.estimated ? ' (est.)' : ''}`),
        stat('lag', 'Lag', lagText(p)),
        stat('rate', 'Apply rate', p.apply_rate === null ? '–' : `${count(p.apply_rate)} ops/s`),
        stat('commands', 'Commands applied', count(p.commands_streamed)),
        stat('reconnects', 'Link reconnects', count(p.link_reconnects || 0)),
        stat('throttle', 'Throttled by', p.throttled_by || '–')),
      p.shards && p.shards.length ? shardTable(p.shards) : null,
      v.mode === 'live' ? el('div', {}, el('h3', {}, 'Lag'), chart(samples)) : null,
      v.error ? el('div', { class: 'problem', role: 'alert', id: 'error' }, `${v.error.code}: ${v.error.message}`) : null,
      el('div', { class: 'buttons' },
        v.mode === 'live' ? el('button', { id: 'cutover', class: 'primary', disabled: !act('cutover'), onclick: async () => {
          const ok = await confirmAction('Cut over now?',
            `Ferry waits until ${v.target.url} has applied the source's writes up to now${v.options.pause_source_writes_on_cutover ? ' (pausing the source’s writes)' : ''}, verifies, and completes. Point your clients at the target afterwards.`,
            'Cut over');
          if (ok && await attempt(() => api('POST', `/v1/migrations/${v.id}/cutover`))) toast('Cutting over…');
        } }, 'Cut over') : null,
        el('button', { id: 'cancel', disabled: !act('cancel'), onclick: () => cancel(v) }, 'Cancel migration'),
        act('rollback') ? el('button', { id: 'rollback', class: 'danger', onclick: async () => {
          const ok = await confirmAction('Roll back the target?',
            `This flushes ${v.target.url} and loads the restore point ${v.backup_id} taken before the migration wrote to it.`,
            'Flush and restore');
          if (!ok) return;
          const done = await attempt(() => api('POST', `/v1/migrations/${v.id}/rollback`));
          if (done) toast(`Rollback started: ${done.headers.get('location') || ''}`);
        } }, 'Roll back') : null),
      el('h3', {}, 'Timeline'),
      el('ol', { class: 'timeline', id: 'timeline' }, timeline.map((e) => el('li', {},
        el('strong', {}, MILESTONES[e.type]), ' ', el('span', { class: 'muted' }, `${time(e.at)} · ${e.actor}`)))));
    if (v.backup_id) section.append(el('p', { class: 'muted' }, `Restore point: backup ${v.backup_id}`));
    if (v.dry_run_report) section.append(...dryRunReport(v.dry_run_report));
    if (v.acl_users) section.append(...aclUsers(v.acl_users));
    if (verification) {
      section.append(el('h3', {}, 'Verification'),
        el('p', { id: 'verification' }, `${verification.mode} · ${count(verification.checked)} keys checked · ${verification.missing} missing · ${verification.different} different · ${verification.extra} extra`),
        verification.problems && verification.problems.length
          ? el('table', {}, el('tbody', {}, verification.problems.slice(0, 20).map((k) => el('tr', {},
            el('td', { class: 'mono' }, `db ${k.db} ${k.key}`), el('td', {}, k.difference)))))
          : null);
    }
    return section;
  }

  route(new RegExp(`^/migrations/${UUID}$`), 'migrations', async (main, id) => {
    const [{ data: first }, { data: guideData }] = await Promise.all([
      api('GET', `/v1/migrations/${id}`), api('GET', '/v1/guide/redis')]);
    const fixes = new Map(guideData.prerequisites.filter((g) => g.check_id).map((g) => [g.check_id, g.how_to_fix]));
    const events = [];
    let view = first;
    let verification = null;
    const header = () => el('div', {},
      el('h1', {}, view.name || `Migration ${view.id}`, ' ', badge(view.state)),
      el('p', { class: 'mono' }, `${sourceText(view)} → ${view.target.url} · ${view.mode}`),
      el('p', {}, el('a', { href: `#/migrations/${view.id}/events`, id: 'timeline-link' }, 'Audit timeline'),
        ' · ', el('span', { class: 'muted mono' }, view.id)));
    const draw = () => {
      // Keyboard focus survives a redraw: the same control gets it back.
      const focused = document.activeElement && document.activeElement.id;
      const pre = PRE_START.includes(view.state);
      main.replaceChildren(header(), steps(pre ? 1 : 2),
        pre ? validationSection(view, fixes) : migrateSection(view, events, verification));
      const again = focused && document.getElementById(focused);
      if (again && main.contains(again)) again.focus();
    };
    draw();
    const refresh = debounce(async () => {
      const got = await attempt(() => api('GET', `/v1/migrations/${id}`));
      if (!got) return;
      const before = view;
      view = got.data;
      if (!verification && events.some((e) => e.type === 'VerificationCompleted')) {
        const report = await api('GET', `/v1/migrations/${id}/verification`).catch(() => null);
        verification = report && report.data;
      }
      // Redraw when something shown changed (keeps the page still otherwise).
      if (JSON.stringify(before) !== JSON.stringify(view) || verification) draw();
    }, 150);
    const stream = follow(`/v1/migrations/${id}/events/stream`, {
      after: 0,
      onEvent: (event) => {
        events.push(event);
        refresh();
      },
    });
    onLeave(() => stream.stop());
  });

  // ---- the audit timeline -----------------------------------------------------------------
  function summary(e) {
    const d = e.data || {};
    switch (e.type) {
      case 'ValidationCompleted': return `${d.report.status}: ${d.report.checks.filter((c) => c.status !== 'pass').map((c) => `${c.id} ${c.status}`).join(', ') || 'every check passed'}`;
      case 'SnapshotRequested': return d.diskless ? `diskless, delay ${d.delay_secs || 0} s, ~${count(d.keys_estimate)} keys` : `~${count(d.keys_estimate)} keys`;
      case 'SnapshotProgress': return `${bytes(d.rdb_bytes_read)}, ${count(d.keys_written)} keys`;
      case 'SnapshotCompleted': return `${count(d.keys_written)} keys, ${bytes(d.rdb_bytes)} in ${seconds(d.duration_ms / 1000)}`;
      case 'Checkpoint': return `offset ${d.applied_offset}, ${count(d.commands_streamed)} commands, lag ${bytes(d.lag_bytes)}`;
      case 'MigrationFailed': return `${d.code}: ${d.message}`;
      case 'MigrationCancelled': return d.reason || '';
      case 'LinkLost': return `${d.link}: ${d.cause}`;
      case 'LinkResumed': return `${d.link} ${d.kind}: ${d.reason}`;
      case 'VerificationCompleted': return `${count(d.report.checked)} checked, ${d.report.missing} missing, ${d.report.different} different`;
      case 'BackupCompleted': return `restore point ${d.backup_id}`;
      case 'DryRunCompleted': return `${count(d.report.keys)} keys, ${d.report.cannot_take.length} reason(s) the target cannot take some`;
      case 'ShardEvent': { const inner = summary(d.event || {}); return `${d.shard.name} (${d.shard.addr}) ${d.event ? d.event.type : ''}${inner ? `: ${inner}` : ''}`; }
      case 'ShardFailedOver': return `${d.shard}: ${d.from.addr} → ${d.to.addr}`;
      case 'TransactionSplit': return `a source transaction at offset ${d.offset} applied slot by slot: ${d.commands} commands over slots ${d.slots.join(', ')}`;
      case 'AclCopied': return `created ${d.created.join(', ') || 'none'}; replaced ${d.replaced.join(', ') || 'none'}`;
      default: return '';
    }
  }

  route(new RegExp(`^/migrations/${UUID}/events$`), 'migrations', async (main, id) => {
    const { data: view } = await api('GET', `/v1/migrations/${id}`);
    const events = [];
    const typeSelect = el('select', { id: 'filter-type' }, el('option', { value: '' }, 'any type'));
    const actorSelect = el('select', { id: 'filter-actor' }, el('option', { value: '' }, 'anyone'));
    const search = el('input', { id: 'filter-text', type: 'search', placeholder: 'text in the event' });
    const tbody = el('tbody');
    const known = { types: new Set(), actors: new Set() };
    const shown = () => events.filter((e) => (!typeSelect.value || e.type === typeSelect.value)
      && (!actorSelect.value || e.actor === actorSelect.value)
      && (!search.value || JSON.stringify(e).toLowerCase().includes(search.value.toLowerCase())));
    const draw = () => {
      const rows = shown();
      tbody.replaceChildren(...rows.map((e) => el('tr', { 'data-seq': e.seq },
        el('td', { class: 'num' }, e.seq), el('td', {}, time(e.at)), el('td', {}, e.actor),
        el('td', {}, e.type), el('td', {}, summary(e)),
        el('td', { class: 'mono muted', title: e.hash || '' }, e.hash ? e.hash.slice(0, 12) : '–'))));
      $('#event-count').textContent = `${rows.length} of ${events.length} events`;
    };
    const addOption = (selectNode, set, value) => {
      if (set.has(value)) return;
      set.add(value);
      selectNode.append(el('option', { value }, value));
    };
    main.replaceChildren(
      el('h1', {}, `Audit timeline: ${view.name || view.id}`),
      el('p', {}, el('a', { href: `#/migrations/${id}` }, 'Back to the migration')),
      el('div', { class: 'filters' },
        el('div', {}, el('label', { for: 'filter-type' }, 'Type'), typeSelect),
        el('div', {}, el('label', { for: 'filter-actor' }, 'Actor'), actorSelect),
        el('div', {}, el('label', { for: 'filter-text' }, 'Search'), search),
        el('div', {}, el('button', { id: 'export', onclick: () => {
          const lines = shown().map((e) => JSON.stringify(e)).join('\n');
          Ferry.saveBlob(new Blob([`${lines}\n`], { type: 'application/x-ndjson' }), `migration-${id}.ndjson`);
        } }, 'Export NDJSON'))),
      el('p', { class: 'muted', id: 'event-count' }),
      el('table', { id: 'events' },
        el('thead', {}, el('tr', {}, ['Seq', 'Time', 'Actor', 'Type', 'Summary', 'Hash'].map((h) => el('th', { scope: 'col' }, h)))),
        tbody));
    for (const node of [typeSelect, actorSelect]) node.addEventListener('change', draw);
    search.addEventListener('input', draw);
    const redraw = debounce(draw, 100);
    const stream = follow(`/v1/migrations/${id}/events/stream`, {
      after: 0,
      onEvent: (event) => {
        events.push(event);
        addOption(typeSelect, known.types, event.type);
        addOption(actorSelect, known.actors, event.actor);
        redraw();
      },
    });
    onLeave(() => stream.stop());
    draw();
  });
})();
