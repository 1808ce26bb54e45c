// Ferry's dashboard, part 1: the API client, the token, live streams, the router and helpers.
// Plain JavaScript, no build step. Every value from the server is put into the page as text
// (textContent), never as HTML.
'use strict';

const Ferry = (() => {
  // The API token, when the server asks for one: in this tab's memory only.
  let token = null;
  let tokenPrompt = null;

  const $ = (selector, root = document) => root.querySelector(selector);

  /** Builds an element: el('td', {class: 'num'}, 'text', childNode, ...). */
  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (key.startsWith('on')) node.addEventListener(key.slice(2), value);
      else if (key === 'text') node.textContent = value;
      else node.setAttribute(key, value === true ? '' : String(value));
    }
    for (const child of children.flat(Infinity)) {
      if (child === null || child === undefined || child === false) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  class Problem extends Error {
    constructor(body, status) {
      super((body && (body.detail || body.title)) || `HTTP ${status}`);
      this.body = body || {};
      this.status = status;
      this.field = this.body.field || null;
    }
  }

  function authHeaders(headers) {
    if (token) headers.Authorization = `Bearer ${token}`;
    return headers;
  }

  /** Asks for a token (once for every request waiting on it). */
  function askToken(reason) {
    if (!tokenPrompt) {
      tokenPrompt = new Promise((resolve) => {
        const dialog = $('#token-dialog');
        $('#token-reason').textContent = reason || 'This Ferry needs an API token.';
        const form = $('#token-form');
        const done = (event) => {
          event.preventDefault();
          token = $('#token-input').value.trim() || null;
          $('#token-input').value = '';
          form.removeEventListener('submit', done);
          dialog.close();
          tokenPrompt = null;
          resolve();
        };
        form.addEventListener('submit', done);
        dialog.showModal();
        $('#token-input').focus();
      });
    }
    return tokenPrompt;
  }

  /** Calls the API; JSON in and out unless `raw` (a Blob/File body). Throws a Problem on 4xx/5xx. */
  async function api(method, path, body, { raw = false } = {}) {
    for (;;) {
      const headers = authHeaders({ Accept: 'application/json' });
      let payload;
      if (body !== undefined) {
        if (raw) {
          headers['Content-Type'] = 'application/octet-stream';
          payload = body;
        } else {
          headers['Content-Type'] = 'application/json';
          payload = JSON.stringify(body);
        }
      }
      const res = await fetch(path, { method, headers, body: payload, cache: 'no-store' });
      const type = res.headers.get('content-type') || '';
      const data = type.includes('json') ? await res.json().catch(() => null) : null;
      if (res.status === 401) {
        await askToken(data && data.detail);
        continue;
      }
      if (!res.ok) throw new Problem(data, res.status);
      return { status: res.status, data, headers: res.headers };
    }
  }

  /** Downloads `path` with the token (a plain link could not send it) as `filename`. */
  async function download(path, filename) {
    for (;;) {
      const res = await fetch(path, { headers: authHeaders({}), cache: 'no-store' });
      if (res.status === 401) {
        await askToken();
        continue;
      }
      if (!res.ok) throw new Problem(await res.json().catch(() => null), res.status);
      saveBlob(await res.blob(), filename);
      return;
    }
  }

  function saveBlob(blob, filename) {
    const url = URL.createObjectURL(blob);
    const link = el('a', { href: url, download: filename });
    document.body.append(link);
    link.click();
    link.remove();
    setTimeout(() => URL.revokeObjectURL(url), 10000);
  }

  const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

  /**
   * Follows a Server-Sent Events stream with fetch (so the token can go in a header, which
   * EventSource cannot send). Reconnects with Last-Event-ID after a drop. `after`: start after
   * this seq (null: only events from now on). Returns {stop}.
   */
  // `onOpen` runs each time the stream is connected: a page that drew itself from a list before
  // following the log without a position (`after`) reloads then, or an event between its load
  // and the connection (a short restore finishing, say) is never seen and the page stays stale.
  function follow(path, { after = null, onEvent, onOpen = null }) {
    let last = after;
    let stopped = false;
    let controller = null;
    const live = $('#live');
    const status = (text, on) => {
      live.textContent = text;
      live.classList.toggle('on', on);
    };
    const dispatch = (block) => {
      let id = null;
      const data = [];
      for (const line of block.split('\n')) {
        if (line.startsWith(':')) continue;
        const colon = line.indexOf(':');
        const field = colon < 0 ? line : line.slice(0, colon);
        const value = colon < 0 ? '' : line.slice(colon + 1).replace(/^ /, '');
        if (field === 'id') id = value;
        else if (field === 'data') data.push(value);
      }
      if (!data.length) return;
      if (id !== null) last = Number(id);
      try {
        onEvent(JSON.parse(data.join('\n')));
      } catch (e) {
        console.error('event handler failed', e);
      }
    };
    (async () => {
      while (!stopped) {
        controller = new AbortController();
        try {
          const headers = authHeaders({ Accept: 'text/event-stream' });
          if (last !== null) headers['Last-Event-ID'] = String(last);
          const res = await fetch(path, { headers, signal: controller.signal, cache: 'no-store' });
          if (res.status === 401) {
            await askToken();
            continue;
          }
          if (!res.ok) throw new Error(`HTTP ${res.status}`);
          status('live', true);
          if (onOpen) onOpen();
          const reader = res.body.getReader();
          const decoder = new TextDecoder();
          let buffer = '';
          for (;;) {
            const { value, done } = await reader.read();
            if (done) break;
            buffer += decoder.decode(value, { stream: true });
            let end;
            while ((end = buffer.indexOf('\n\n')) >= 0) {
              const block = buffer.slice(0, end);
              buffer = buffer.slice(end + 2);
              dispatch(block);
            }
          }
        } catch (e) {
          if (stopped) return;
        }
        if (stopped) return;
        status('reconnecting…', false);
        await sleep(2000);
      }
    })();
    return {
      stop() {
        stopped = true;
        if (controller) controller.abort();
      },
    };
  }

  /** Calls `fn` at most once per `ms`, with the latest arguments, after things settle. */
  function debounce(fn, ms) {
    let timer = null;
    return (...args) => {
      clearTimeout(timer);
      timer = setTimeout(() => fn(...args), ms);
    };
  }

  /** Shows the confirmation dialog; resolves true when confirmed. */
  function confirmAction(title, text, okLabel) {
    return new Promise((resolve) => {
      const dialog = $('#confirm-dialog');
      $('#confirm-title').textContent = title;
      $('#confirm-text').textContent = text;
      const ok = $('#confirm-ok');
      const cancel = $('#confirm-cancel');
      ok.textContent = okLabel || 'Confirm';
      const finish = (answer) => {
        ok.removeEventListener('click', yes);
        cancel.removeEventListener('click', no);
        dialog.removeEventListener('cancel', no);
        dialog.close();
        resolve(answer);
      };
      const yes = () => finish(true);
      const no = (event) => {
        if (event) event.preventDefault();
        finish(false);
      };
      ok.addEventListener('click', yes);
      cancel.addEventListener('click', no);
      dialog.addEventListener('cancel', no);
      dialog.showModal();
      cancel.focus();
    });
  }

  function toast(message, bad) {
    const item = el('div', { class: bad ? 'bad' : null }, message);
    $('#toast').append(item);
    setTimeout(() => item.remove(), bad ? 9000 : 4000);
  }

  /** Runs an action, reporting a failure as a toast; returns its result or null. */
  async function attempt(fn) {
    try {
      return await fn();
    } catch (e) {
      toast(e.message, true);
      return null;
    }
  }

  // ---- formatting -------------------------------------------------------------------------
  function bytes(n) {
    if (n === null || n === undefined) return '–';
    const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
    let value = n;
    let unit = 0;
    while (value >= 1024 && unit < units.length - 1) {
      value /= 1024;
      unit += 1;
    }
    return `${value.toFixed(unit ? 1 : 0)} ${units[unit]}`;
  }
  const count = (n) => (n === null || n === undefined ? '–' : Number(n).toLocaleString('en'));
  function seconds(s) {
    if (s === null || s === undefined) return '–';
    if (s < 60) return `${Math.round(s * 10) / 10} s`;
    if (s < 3600) return `${Math.floor(s / 60)} min ${Math.round(s % 60)} s`;
    return `${Math.floor(s / 3600)} h ${Math.round((s % 3600) / 60)} min`;
  }
  function time(iso) {
    if (!iso) return '–';
    const d = new Date(iso);
    return d.toLocaleString('en-GB', { hour12: false });
  }
  const badge = (status) => el('span', { class: `badge s-${status}` }, String(status).replace(/_/g, ' '));
  function bar(percent, estimated, label) {
    const value = percent === null || percent === undefined ? 0 : percent;
    // Through the CSSOM: the Content-Security-Policy refuses style attributes.
    const fill = el('span');
    fill.style.width = `${Math.min(100, value)}%`;
    return el('div', {
      class: `bar${estimated ? ' estimated' : ''}`,
      role: 'progressbar',
      'aria-label': label || 'Progress',
      'aria-valuemin': 0,
      'aria-valuemax': 100,
      'aria-valuenow': Math.round(value),
      'aria-valuetext': percent === null || percent === undefined ? 'unknown' : `${value.toFixed(1)}%${estimated ? ' (estimated)' : ''}`,
    }, fill);
  }

  // ---- routing ----------------------------------------------------------------------------
  const routes = [];
  let cleanup = [];

  /** Registers a page: `pattern` is a RegExp on the hash path, `render(main, ...groups)`. */
  function route(pattern, nav, render) {
    routes.push({ pattern, nav, render });
  }

  /** Registers something to stop when the page changes (a stream, a timer). */
  function onLeave(fn) {
    cleanup.push(fn);
  }

  async function navigate() {
    for (const fn of cleanup) fn();
    cleanup = [];
    const path = (location.hash || '#/migrations').slice(1);
    const main = $('#main');
    for (const { pattern, nav, render } of routes) {
      const match = path.match(pattern);
      if (!match) continue;
      for (const link of document.querySelectorAll('nav a')) {
        if (link.dataset.nav === nav) link.setAttribute('aria-current', 'page');
        else link.removeAttribute('aria-current');
      }
      // Each visit renders into a fresh element. A page left behind may still finish a fetch or
      // a debounced redraw after its streams stopped; it then draws into its own detached element
      // instead of over the page the person has moved to.
      const page = el('div', { class: 'page' }, el('p', { class: 'muted' }, 'Loading…'));
      main.replaceChildren(page);
      try {
        await render(page, ...match.slice(1));
      } catch (e) {
        page.replaceChildren(el('div', { class: 'problem', role: 'alert' }, e.message));
      }
      return;
    }
    location.hash = '#/migrations';
  }

  window.addEventListener('hashchange', navigate);
  window.addEventListener('DOMContentLoaded', navigate);

  return {
    $, el, api, Problem, download, saveBlob, follow, debounce, confirmAction, toast, attempt,
    bytes, count, seconds, time, badge, bar, route, onLeave, navigate,
  };
})();
