// sightline console. One script for every page: the page is named by
// <body data-page>, and each page is a function that renders into <main>
// from the daemon's own API. Text from the daemon only ever goes into the
// page as text (el() below), never as HTML.
'use strict';

const session = { csrf: null };
const main = () => document.getElementById('main');

// ---- small helpers -------------------------------------------------------

/** An element: el('p', {class: 'x', onclick: f}, 'text', child, ...). */
function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
    else if (k === 'dataset') Object.assign(e.dataset, v);
    else e.setAttribute(k, v === true ? '' : String(v));
  }
  for (const c of children.flat(Infinity)) {
    if (c === null || c === undefined || c === false) continue;
    e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return e;
}

function toast(text, bad) {
  const t = document.getElementById('toast');
  t.replaceChildren(el('span', { class: bad ? 'bad' : '' }, text));
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => t.replaceChildren(), 5000);
}

class ApiError extends Error {
  constructor(status, message) { super(message); this.status = status; }
}

/** Calls the API with the session cookie (and the CSRF token on writes). */
async function api(method, path, body) {
  const headers = { accept: 'application/json' };
  if (body !== undefined) headers['content-type'] = 'application/json';
  if (method !== 'GET' && session.csrf) headers['x-csrf-token'] = session.csrf;
  const r = await fetch(path, {
    method, headers, credentials: 'same-origin',
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  let j = null;
  try { j = await r.json(); } catch (_) { /* not JSON */ }
  if (r.status === 401 && document.body.dataset.page !== 'signin') {
    location.assign('/signin?next=' + encodeURIComponent(location.pathname));
    throw new ApiError(401, 'signed out');
  }
  if (!r.ok || !j || j.success === false) {
    throw new ApiError(r.status, (j && j.message) || r.statusText || 'request failed');
  }
  return j.data;
}

/** Runs an action from a button, showing its failure instead of throwing. */
async function act(button, what, f) {
  if (button) button.disabled = true;
  try {
    const r = await f();
    if (what) toast(what);
    return r;
  } catch (e) {
    if (e.status !== 401) toast(e.message, true);
    return undefined;
  } finally {
    if (button) button.disabled = false;
  }
}

const pct = (c) => (typeof c === 'number' ? Math.round(c * 100) + '%' : '–');
const when = (ms) => (ms ? new Date(ms).toLocaleString() : '–');

// When an occurrence began, in Unix ms. History rows carry it; a live
// message's `timestamp` is the wall time of the frame that decided it
// (stream time `decided_time`), which for an end or clip_ready message is
// long after the start: step back by the stream time between the two.
function startedMs(o) {
  const stored = o.start_ms || (o.data && o.data.start_ms);
  if (stored) return stored;
  const at = Date.parse(o.timestamp);
  if (Number.isNaN(at)) return null;
  const decided = typeof o.decided_time === 'number' ? o.decided_time : o.end_time;
  const back = typeof decided === 'number' && typeof o.start_time === 'number'
    ? Math.max(0, decided - o.start_time) : 0;
  return Math.round(at - back * 1000);
}
const secs = (s) => (typeof s === 'number' ? s.toFixed(1) + ' s' : '–');

function facts(pairs) {
  return el('dl', { class: 'facts' }, pairs.filter(Boolean).map(([k, v]) => [el('dt', {}, k), el('dd', {}, v)]));
}

/** Gives each cell of a table its column's heading (shown beside the
 * value when the table is stacked on a narrow screen). */
function labelled(table) {
  const heads = [...table.querySelectorAll('thead th')].map((t) => t.textContent);
  for (const row of table.querySelectorAll('tbody tr')) {
    [...row.children].forEach((td, i) => { if (heads[i]) td.dataset.label = heads[i]; });
  }
  return table;
}

function field(label, input) { return el('label', {}, label, input); }

function options(select, items, keep) {
  const old = keep ? select.value : null;
  select.replaceChildren(...items.map(([v, t]) => el('option', { value: v }, t)));
  if (old !== null && items.some(([v]) => v === old)) select.value = old;
}

/** Re-runs f every `ms` while this page is shown (and the tab visible). */
function every(ms, f) {
  let busy = false;
  const tick = async () => {
    if (busy || document.hidden) return;
    busy = true;
    try { await f(); } catch (e) { if (e.status !== 401) toast(e.message, true); } finally { busy = false; }
  };
  tick();
  return setInterval(tick, ms);
}

async function streamNames() {
  const d = await api('GET', '/rtstream');
  const names = {};
  for (const s of d.results || []) names[s.id] = s.name || s.id;
  return { list: d.results || [], names };
}

// ---- an occurrence card (Live and History) -------------------------------

/** A card for one occurrence; `o` is an alert payload or a history row. */
function occurrenceCard(o, names) {
  const card = el('li', { class: 'card', dataset: { occurrence: o.occurrence_id } });
  fillCard(card, o, names);
  return card;
}

function fillCard(card, o, names) {
  // A clip already playing in the card stays; the facts around it change.
  const playing = card.querySelector('video');
  const camera = names[o.stream_id] || o.stream_id;
  const ended = o.phase ? o.phase !== 'start' : o.end_ms != null;
  // Evicted by the recording budget: the links answer 410, say why instead.
  const gone = o.expired ? el('div', { class: 'muted body expired' }, 'Evidence expired: ' + o.expired) : null;
  const img = gone || o.snapshot_url
    ? gone || el('img', { src: o.snapshot_url, alt: `Snapshot: ${o.label} on ${camera}`, loading: 'lazy', width: 320, height: 180 })
    : el('div', { class: 'muted body' }, 'No snapshot (the stream is not recorded)');
  const play = !gone && o.clip_url && el('button', {
    type: 'button', class: 'play',
    onclick: () => {
      const v = el('video', { src: o.clip_url, controls: true, muted: true, playsinline: true, autoplay: true, preload: 'auto' });
      v.muted = true;
      (card.querySelector('img') || card.firstChild).replaceWith(v);
      v.play().catch(() => { /* the controls remain */ });
      play.remove();
    },
  }, 'Play clip');
  card.replaceChildren(
    playing || img,
    el('div', { class: 'body' },
      el('div', { class: 'title' }, el('span', { class: 'label' }, o.label),
        el('span', { class: 'badge ' + (o.phase || (ended ? 'end' : 'start')) }, o.phase || (ended ? 'ended' : 'ongoing')),
        gone && el('span', { class: 'badge expired' }, 'expired')),
      facts([
        ['Confidence', pct(o.confidence)],
        ['Camera', camera],
        o.box_id ? ['Box', o.box_id] : null,
        o.explanation ? ['Why', o.explanation] : null,
        ['Started', when(startedMs(o))],
        ['Stream time', `${secs(o.start_time)} – ${ended ? secs(o.end_time) : 'now'}`],
      ]),
      el('div', { class: 'actions' }, !playing && play, !gone && o.player_url && el('a', { href: o.player_url, target: '_blank', rel: 'noopener' }, 'Open player'))));
}

// ---- sign-in --------------------------------------------------------------

function nextPage() {
  const n = new URLSearchParams(location.search).get('next') || '/live';
  return /^\/(live|cameras|rules|history|health)$/.test(n) ? n : '/live';
}

function pageSignin() {
  const key = el('input', { type: 'password', id: 'key', name: 'key', autocomplete: 'current-password', required: true });
  const msg = el('p', { id: 'signin-error', class: 'note bad', hidden: true, role: 'alert' });
  const form = el('form', {
    onsubmit: async (ev) => {
      ev.preventDefault();
      msg.hidden = true;
      try {
        await api('POST', '/session', { api_key: key.value });
        location.assign(nextPage());
      } catch (e) {
        msg.textContent = e.status === 401 ? 'That is not this box\'s API key.' : e.message;
        msg.hidden = false;
        key.select();
      }
    },
  }, field('API key', key), msg, el('button', { type: 'submit' }, 'Sign in'),
  el('p', { class: 'muted' }, 'The key is in the daemon\'s state directory (api-key), or the file [api] key_file names.'));
  main().replaceChildren(el('section', { class: 'signin panel' }, el('h1', {}, 'Sign in to sightline'), form));
  key.focus();
}

// ---- live -----------------------------------------------------------------

/** The console's WebSocket feed, resumed across reconnects and reloads. */
function liveFeed(onAlert, onGap, onState) {
  const store = window.sessionStorage;
  let stopped = false;
  let failures = 0;
  async function open() {
    if (stopped) return;
    let url;
    try {
      url = new URL((await api('GET', '/collection/default/websocket')).websocket_url);
    } catch (e) {
      onState('offline');
      setTimeout(open, 3000);
      return;
    }
    url.protocol = location.protocol === 'https:' ? 'wss:' : 'ws:';
    url.host = location.host;
    url.searchParams.set('console', 'true');
    const id = store.getItem('ws.connection');
    const seq = store.getItem('ws.seq');
    if (id && seq && failures < 2) {
      url.searchParams.set('connection_id', id);
      url.searchParams.set('since', seq);
    }
    const ws = new WebSocket(url);
    ws.onmessage = (m) => {
      let msg;
      try { msg = JSON.parse(m.data); } catch (_) { return; }
      if (msg.type === 'init') {
        failures = 0;
        store.setItem('ws.connection', msg.connection_id);
        document.body.dataset.feed = msg.resumed_after !== undefined ? 'resumed' : 'fresh';
        if (!store.getItem('ws.seq') || !msg.resumed_after) store.setItem('ws.seq', '0');
        onState('live');
        return;
      }
      if (msg.type === 'gap') { onGap(msg); return; }
      if (typeof msg.seq === 'number') store.setItem('ws.seq', String(msg.seq));
      if (msg.channel === 'alert') onAlert(msg.data);
    };
    ws.onclose = () => {
      if (stopped) return;
      failures += 1;
      onState('reconnecting');
      setTimeout(open, Math.min(1000 * failures, 5000));
    };
    liveFeed.socket = ws;
  }
  open();
  window.addEventListener('pagehide', () => { stopped = true; if (liveFeed.socket) liveFeed.socket.close(); });
}

async function pageLive() {
  const { list, names } = await streamNames();
  const camera = el('select', { id: 'filter-camera' });
  const label = el('select', { id: 'filter-label' });
  options(camera, [['', 'All cameras'], ...list.map((s) => [s.id, s.name || s.id])]);
  const labels = new Set();
  const refreshLabels = () => options(label, [['', 'All labels'], ...[...labels].sort().map((l) => [l, l])], true);
  refreshLabels();
  const state = el('span', { id: 'feed-state', class: 'badge' }, 'connecting');
  const cards = el('ol', { id: 'alerts', class: 'cards', 'aria-live': 'polite' });
  const empty = el('p', { class: 'muted', id: 'no-alerts' }, 'No alerts yet. They appear here as they happen.');
  const gaps = el('div');
  const apply = () => {
    for (const c of cards.children) {
      const ok = (!camera.value || c.dataset.stream === camera.value) && (!label.value || c.dataset.label === label.value);
      c.hidden = !ok;
    }
  };
  camera.onchange = apply;
  label.onchange = apply;
  main().replaceChildren(
    el('h1', {}, 'Live ', state),
    el('div', { class: 'filters' }, field('Camera', camera), field('Label', label)),
    gaps, empty, cards);
  liveFeed((a) => {
    empty.hidden = true;
    let card = cards.querySelector(`[data-occurrence="${CSS.escape(a.occurrence_id)}"]`);
    if (card) fillCard(card, a, names);
    else {
      card = occurrenceCard(a, names);
      card.dataset.arrived = String(Date.now());
      cards.prepend(card);
    }
    card.dataset.stream = a.stream_id;
    card.dataset.label = a.label;
    card.dataset.phase = a.phase;
    if (!labels.has(a.label)) { labels.add(a.label); refreshLabels(); }
    apply();
  }, (g) => {
    gaps.append(el('p', { class: 'note bad' }, `Messages ${g.from}–${g.to} were missed and are no longer kept; History has what was recorded.`));
  }, (s) => { state.textContent = s; state.className = 'badge ' + (s === 'live' ? 'up' : 'reconnecting'); });
}

// ---- cameras --------------------------------------------------------------

/** Per-second rates from two readings of the same counters. */
function rates(prev, now, dt) {
  const r = {};
  for (const k of Object.keys(now)) r[k] = prev && dt > 0 ? Math.max(0, (now[k] - prev[k]) / dt) : null;
  return r;
}

function cameraState(s) {
  if (s.status === 'stopped') return 'stopped';
  return s.health && s.health.up ? 'up' : 'reconnecting';
}

async function pageCameras() {
  const grid = el('ul', { class: 'cards', id: 'cameras' });
  const name = el('input', { type: 'text', id: 'new-name', required: true, placeholder: 'Front door' });
  const url = el('input', { type: 'url', id: 'new-url', required: true, placeholder: 'rtsp://camera/stream' });
  const fps = el('input', { type: 'number', id: 'new-fps', min: '0.1', step: '0.1', value: '2' });
  const add = el('form', {
    class: 'inline panel',
    onsubmit: async (ev) => {
      ev.preventDefault();
      await act(ev.submitter, 'Camera added', () => api('POST', '/rtstream', { name: name.value, url: url.value, sample_rate: Number(fps.value) }));
      draw();
    },
  }, field('Name', name), field('RTSP URL', url), field('Frames scored per second', fps), el('button', { type: 'submit' }, 'Add camera'));
  main().replaceChildren(el('h1', {}, 'Cameras'), grid, el('h2', {}, 'Add a camera'), add);
  const last = {};
  const cards = {};
  async function draw() {
    const [{ list, names }, status] = await Promise.all([streamNames(), api('GET', '/status')]);
    const now = performance.now() / 1000;
    const byId = Object.fromEntries((status.streams || []).map((s) => [s.id, s]));
    for (const id of Object.keys(cards)) if (!byId[id]) { cards[id].remove(); delete cards[id]; }
    // In a site, a camera another box runs has its health from that box.
    const here = status.fleet && status.fleet.box_id;
    for (const row of list) {
      const remote = here && row.owner && row.owner.box_id && row.owner.box_id !== here;
      const s = (!remote && byId[row.id]) || { id: row.id, status: row.status, health: row.health, models: [] };
      const counts = {
        in: (s.health && s.health.frames) || 0,
        scored: (s.models || []).reduce((a, m) => a + m.frames, 0),
        skipped: (s.models || []).reduce((a, m) => a + m.skipped_no_motion, 0),
        dropped: (s.models || []).reduce((a, m) => a + m.dropped, 0),
      };
      const prev = last[row.id];
      const r = rates(prev && prev.counts, counts, prev ? now - prev.at : 0);
      last[row.id] = { counts, at: now };
      if (!cards[row.id]) { cards[row.id] = cameraCard(row.id); grid.append(cards[row.id]); }
      updateCamera(cards[row.id], row, s, names[row.id], counts, r);
    }
    if (!list.length) grid.replaceChildren(el('li', { class: 'muted' }, 'No cameras yet.'));
  }
  every(2000, draw);
  // The snapshot refreshes every few seconds, one load at a time.
  every(3000, async () => {
    for (const c of Object.values(cards)) {
      const img = c.querySelector('img');
      if (img.dataset.loading === '1') continue;
      img.dataset.loading = '1';
      img.onload = img.onerror = () => { img.dataset.loading = '0'; };
      img.src = `/rtstream/${encodeURIComponent(c.dataset.stream)}/snapshot.jpg?t=${Date.now()}`;
    }
  });
}

function cameraCard(id) {
  const card = el('li', { class: 'card camera', dataset: { stream: id } },
    el('img', { alt: `Latest picture of ${id}`, width: 320, height: 180 }),
    el('div', { class: 'body' }));
  return card;
}

/** The gist of a GStreamer error: its last sentence-like part, short. */
function brief(text) {
  const parts = text.split(/: |\n/).map((p) => p.trim()).filter((p) => p && !p.startsWith('/Gst') && !p.startsWith('('));
  const t = parts.length ? parts[parts.length - 1] : text;
  return t.length > 120 ? t.slice(0, 117) + '…' : t;
}

function updateCamera(card, row, s, name, counts, r) {
  const st = cameraState(s);
  const rate = (v) => (v === null ? '…' : v.toFixed(1) + '/s');
  const age = s.last_frame_age_ms == null ? '–' : (s.last_frame_age_ms / 1000).toFixed(1) + ' s ago';
  const toggle = el('button', {
    type: 'button',
    onclick: (ev) => act(ev.target, st === 'stopped' ? 'Started' : 'Stopped',
      () => api('PATCH', `/rtstream/${encodeURIComponent(row.id)}/status`, { action: st === 'stopped' ? 'start' : 'stop' })),
  }, st === 'stopped' ? 'Start' : 'Stop');
  const del = row.origin === 'api' && el('button', {
    type: 'button', class: 'danger',
    onclick: (ev) => {
      if (!window.confirm(`Delete camera ${name}, its indexes and their alerts?`)) return;
      act(ev.target, 'Camera deleted', () => api('DELETE', `/rtstream/${encodeURIComponent(row.id)}`));
    },
  }, 'Delete');
  card.dataset.state = st;
  card.dataset.frames = String(counts.in);
  card.dataset.box = (row.owner && row.owner.box_id) || '';
  card.querySelector('.body').replaceChildren(
    el('div', { class: 'title' }, el('span', {}, name), el('span', { class: 'badge state ' + st }, st)),
    facts([
      ['Frames', el('span', { class: 'frames' }, String(counts.in))],
      ['Last scored frame', age],
      ['In / scored', `${rate(r.in)} / ${rate(r.scored)}`],
      ['Skipped / dropped', `${rate(r.skipped)} / ${rate(r.dropped)}`],
      ['Restarts', String((s.health && s.health.restarts) || 0)],
      row.owner ? ['Box', el('span', { class: 'box' }, row.owner.box_id || 'none (fits on no box)')] : null,
      s.health && s.health.last_error && !s.health.up ? ['Last error', el('span', { title: s.health.last_error }, brief(s.health.last_error))] : null,
      ['URL', row.url],
    ]),
    el('div', { class: 'actions' }, toggle, del));
}

// ---- rules ----------------------------------------------------------------

async function pageRules() {
  const [events, alerts, models, { list, names }, status] = await Promise.all([
    api('GET', '/rtstream/event'), api('GET', '/alert'), api('GET', '/models'), streamNames(), api('GET', '/status')]);
  const eventList = events.events || [];
  const modelList = models.models || [];
  const byEvent = Object.fromEntries(eventList.map((e) => [e.event_id, e]));
  main().replaceChildren(
    el('h1', {}, 'Rules'),
    el('h2', {}, 'Alerts'), alertTable(alerts.alerts || [], byEvent, names),
    el('h2', {}, 'New alert'), alertForm(eventList, list),
    el('h2', {}, 'Events'), eventTable(eventList, modelList),
    el('h2', {}, 'New event'), eventForm(modelList),
    el('h2', {}, 'Models'), modelTable(modelList),
    el('h2', {}, 'Search and backtest'), searchPanel(modelList, status.streams || [], names));
}

function alertTable(alerts, byEvent, names) {
  if (!alerts.length) return el('p', { class: 'muted' }, 'No alerts yet.');
  const rows = alerts.map((a) => {
    const ev = byEvent[a.event_id] || {};
    const on = a.status === 'enabled';
    const id = encodeURIComponent(a.alert_id);
    const cams = a.rtstream_id ? [names[a.rtstream_id] || a.rtstream_id] : (a.streams && a.streams.length ? a.streams.map((s) => names[s] || s) : ['every camera']);
    const targets = [a.callback_url && 'webhook ' + a.callback_url, a.mqtt && 'MQTT', a.ws_connection_id && 'WebSocket'].filter(Boolean);
    return el('tr', { dataset: { alert: a.alert_id } },
      el('td', {}, a.label || a.event_id, el('div', { class: 'muted' }, ev.event_prompt || '')),
      el('td', {}, cams.join(', ')),
      el('td', {}, ev.model || '–'),
      el('td', {}, targets.join(', ') || 'console only'),
      el('td', {}, el('span', { class: 'badge status ' + a.status }, a.status)),
      el('td', {}, el('div', { class: 'actions' },
        el('button', {
          type: 'button', class: 'toggle',
          onclick: (ev) => act(ev.target, on ? 'Alert disabled' : 'Alert enabled',
            () => api('PATCH', `/alert/${id}/status`, { action: on ? 'disable' : 'enable' })).then(pageRules),
        }, on ? 'Disable' : 'Enable'),
        el('button', { type: 'button', onclick: (ev) => act(ev.target, 'Test alert sent', () => api('POST', `/alert/${id}/test`, {})) }, 'Send test'),
        a.origin === 'api' && el('button', {
          type: 'button', class: 'danger',
          onclick: (ev) => {
            if (!window.confirm('Delete this alert?')) return;
            act(ev.target, 'Alert deleted', () => api('DELETE', `/alert/${id}`)).then(pageRules);
          },
        }, 'Delete'))));
  });
  return el('div', { class: 'table-wrap' }, labelled(el('table', { id: 'alert-table', class: 'stack' },
    el('thead', {}, el('tr', {}, ['Event', 'Cameras', 'Model', 'Targets', 'Status', ''].map((h) => el('th', { scope: 'col' }, h)))),
    el('tbody', {}, rows))));
}

function alertForm(events, streams) {
  const event = el('select', { id: 'alert-event', required: true });
  options(event, events.map((e) => [e.event_id, `${e.label} (${e.event_prompt || e.event_id})`]));
  const camera = el('select', { id: 'alert-camera', required: true });
  options(camera, streams.map((s) => [s.id, s.name || s.id]));
  const hook = el('input', { type: 'url', id: 'alert-webhook', placeholder: 'https://receiver/hook (optional)' });
  const mqtt = el('input', { type: 'checkbox', id: 'alert-mqtt' });
  return el('form', {
    class: 'inline panel',
    onsubmit: async (ev) => {
      ev.preventDefault();
      const done = await act(ev.submitter, 'Alert created', async () => {
        const sid = encodeURIComponent(camera.value);
        // Alerts hang under a scene index of the camera: use its first, or make one.
        const idx = (await api('GET', `/rtstream/${sid}/index/scene`)).scene_indexes || [];
        const index = idx.length ? idx[0] : await api('POST', `/rtstream/${sid}/index/scene`, { name: 'console' });
        const body = { event_id: event.value };
        if (hook.value) body.callback_url = hook.value;
        if (mqtt.checked) body.mqtt = true;
        return api('POST', `/rtstream/${sid}/index/${encodeURIComponent(index.rtstream_index_id)}/alert`, body);
      });
      if (done) pageRules();
    },
  }, field('Event', event), field('Camera', camera), field('Webhook', hook),
  el('label', { class: 'check' }, mqtt, 'MQTT'), el('button', { type: 'submit', disabled: !events.length || !streams.length }, 'Create alert'));
}

/** How an event is scored, from its classes and its model's kind. */
function resolution(e, models) {
  if (e.classes && e.classes.length) return 'labels: ' + e.classes.join(', ');
  const m = models.find((x) => x.name === e.model);
  if (!m) return '–';
  return m.kind === 'dual-encoder' ? 'free text' : 'the labels its prompt names';
}

function eventTable(events, models) {
  if (!events.length) return el('p', { class: 'muted' }, 'No events yet.');
  return el('div', { class: 'table-wrap' }, labelled(el('table', { id: 'event-table', class: 'stack' },
    el('thead', {}, el('tr', {}, ['Label', 'Prompt', 'Resolves to', 'Model', ''].map((h) => el('th', { scope: 'col' }, h)))),
    el('tbody', {}, events.map((e) => el('tr', {},
      el('td', {}, e.label), el('td', {}, e.event_prompt || '–'),
      el('td', {}, resolution(e, models)),
      el('td', {}, e.model || 'does not compile'),
      el('td', {}, e.origin === 'api' && el('button', {
        type: 'button', class: 'danger',
        onclick: (ev) => act(ev.target, 'Event deleted', () => api('DELETE', `/rtstream/event/${encodeURIComponent(e.event_id)}`)).then(pageRules),
      }, 'Delete'))))))));
}

function eventForm(models) {
  const prompt = el('input', { type: 'text', id: 'event-prompt', required: true, placeholder: 'Detect person' });
  const label = el('input', { type: 'text', id: 'event-label', required: true, placeholder: 'person_alert' });
  const save = el('button', { type: 'submit', id: 'event-save', disabled: true }, 'Save event');
  const result = el('div', { id: 'event-preview', 'aria-live': 'polite' });
  const body = () => ({ event_prompt: prompt.value, label: label.value || prompt.value });
  const check = el('button', {
    type: 'button', id: 'event-check',
    onclick: async () => {
      save.disabled = true;
      try {
        const p = await api('POST', '/rtstream/event/preview', body());
        const what = p.resolution === 'labels'
          ? `the detector labels ${p.classes.join(', ')} at confidence ≥ ${pct(p.min_confidence)}`
          : `free text "${p.text}" scored against ${p.competing_prompts} competing prompts, confidence ≥ ${pct(p.min_confidence)}${p.truncated ? ' (the prompt was cut to the model\'s length)' : ''}`;
        result.replaceChildren(el('p', { class: 'note good' }, `Model ${p.model} will score ${what}.`));
        save.disabled = false;
      } catch (e) {
        const vocab = models.filter((m) => m.labels && m.labels.length).map((m) => `${m.name}: ${m.labels.join(', ')}`);
        result.replaceChildren(el('div', { class: 'note bad', role: 'alert' }, el('p', {}, e.message),
          vocab.length && !/detects:/.test(e.message) ? el('p', {}, 'What the loaded models know: ', vocab.join('; ')) : null));
      }
    },
  }, 'Check');
  prompt.oninput = label.oninput = () => { save.disabled = true; result.replaceChildren(); };
  return el('form', {
    class: 'panel',
    onsubmit: async (ev) => {
      ev.preventDefault();
      if (await act(save, 'Event saved', () => api('POST', '/rtstream/event', body()))) pageRules();
    },
  }, el('div', { class: 'inline filters' }, field('Prompt', prompt), field('Label', label), check, save), result);
}

function modelTable(models) {
  return el('div', { class: 'table-wrap' }, el('table', {},
    el('thead', {}, el('tr', {}, ['Model', 'Kind', 'Vocabulary', 'Frames scored'].map((h) => el('th', { scope: 'col' }, h)))),
    el('tbody', {}, models.map((m) => el('tr', {},
      el('td', {}, m.name), el('td', {}, m.kind || '–'),
      el('td', {}, m.labels && m.labels.length ? m.labels.slice(0, 40).join(', ') + (m.labels.length > 40 ? ' …' : '') : 'free text'),
      el('td', {}, String(m.frames ?? '–')))))));
}

/** Ranges [{start, end}] (Unix s) drawn over [first, last]. */
function timeline(ranges, first, last) {
  const span = Math.max(last - first, 1);
  return el('div', {},
    el('div', { class: 'timeline', role: 'img', 'aria-label': `${ranges.length} ranges` },
      ranges.map((r) => el('span', {
        title: `${new Date(r.start * 1000).toLocaleTimeString()} – ${new Date(r.end * 1000).toLocaleTimeString()}`,
        style: null, dataset: { left: String(((r.start - first) / span) * 100), width: String(((r.end - r.start) / span) * 100) },
      }))),
    el('div', { class: 'timeline-axis' }, el('span', {}, new Date(first * 1000).toLocaleString()), el('span', {}, new Date(last * 1000).toLocaleString())));
}

/** Positions timeline spans (styles are set from script, not attributes, for the CSP). */
function placeSpans(root) {
  for (const s of root.querySelectorAll('.timeline span')) {
    s.style.left = s.dataset.left + '%';
    s.style.width = `max(3px, ${s.dataset.width}%)`;
  }
}

function searchPanel(models, streams, names) {
  const dual = new Set(models.filter((m) => m.kind === 'dual-encoder').map((m) => m.name));
  const usable = streams.filter((s) => (s.models || []).some((m) => dual.has(m.name)));
  if (!usable.length) return el('p', { class: 'muted' }, 'Search and backtest need a stream scored by a dual-encoder model; none is.');
  const camera = el('select', { id: 'search-camera' });
  options(camera, usable.map((s) => [s.id, names[s.id] || s.id]));
  const text = el('input', { type: 'text', id: 'search-text', required: true, placeholder: 'a delivery van at the gate' });
  const out = el('div', { id: 'search-result', 'aria-live': 'polite' });
  const run = async (kind, button) => {
    const sid = encodeURIComponent(camera.value);
    const r = await act(button, null, () => (kind === 'search'
      ? api('POST', `/rtstream/${sid}/search`, { query: text.value })
      : api('POST', `/rtstream/${sid}/backtest`, { event_prompt: text.value })));
    if (!r) return;
    const ranges = (kind === 'search' ? r.results : r.occurrences) || [];
    const sc = r.scanned || {};
    out.replaceChildren(
      el('p', {}, `${kind === 'search' ? 'Search' : 'Backtest'}: ${ranges.length} ${ranges.length === 1 ? 'range' : 'ranges'} in ${sc.frames || 0} stored frames.`),
      sc.first ? timeline(ranges, sc.first, sc.last) : el('p', { class: 'muted' }, 'No stored frames yet.'),
      el('ol', {}, ranges.map((x) => el('li', {}, `${new Date(x.start * 1000).toLocaleTimeString()} – ${new Date(x.end * 1000).toLocaleTimeString()}`,
        ` (${pct(x.score ?? x.confidence)})`))));
    placeSpans(out);
  };
  return el('form', { class: 'panel', onsubmit: (ev) => { ev.preventDefault(); run('search', ev.submitter); } },
    el('div', { class: 'inline filters' }, field('Camera', camera), field('Text', text),
      el('button', { type: 'submit' }, 'Search'),
      el('button', { type: 'button', onclick: (ev) => { if (text.reportValidity()) run('backtest', ev.target); } }, 'Backtest as an event')),
    out);
}

// ---- history --------------------------------------------------------------

async function pageHistory() {
  const status = await api('GET', '/status');
  // In a site the other boxes' history is shown even when this box records nothing.
  if (!status.recording && !status.fleet) {
    main().replaceChildren(el('h1', {}, 'History'), el('p', { class: 'note' }, 'Recording is off on this daemon ([recording] in the config), so no history is kept.'));
    return;
  }
  const { list, names } = await streamNames();
  const camera = el('select', { id: 'history-camera' });
  options(camera, [['', 'All cameras'], ...list.map((s) => [s.id, s.name || s.id])]);
  const label = el('input', { type: 'text', id: 'history-label', placeholder: 'any label' });
  const cards = el('ol', { class: 'cards', id: 'history' });
  const more = el('button', { type: 'button', id: 'history-more', hidden: true }, 'Older');
  const missing = el('p', { class: 'note bad', id: 'history-missing', hidden: true, role: 'status' });
  let before = null;
  async function load(reset) {
    if (reset) { before = null; cards.replaceChildren(); }
    const q = new URLSearchParams({ limit: '12' });
    if (camera.value) q.set('stream', camera.value);
    if (label.value.trim()) q.set('label', label.value.trim());
    if (before) q.set('before', String(before));
    const d = await api('GET', '/occurrences?' + q);
    const silent = d.unanswered || [];
    missing.hidden = !silent.length;
    missing.textContent = silent.length ? `Not shown: the history of ${silent.join(', ')}, which did not answer in time.` : '';
    cards.append(...d.occurrences.map((o) => occurrenceCard(o, names)));
    before = d.next_before;
    more.hidden = !before;
    if (!cards.children.length) cards.append(el('li', { class: 'muted' }, 'Nothing recorded matches.'));
  }
  more.onclick = (ev) => act(ev.target, null, () => load(false));
  const filters = el('form', { class: 'filters', onsubmit: (ev) => { ev.preventDefault(); act(null, null, () => load(true)); } },
    field('Camera', camera), field('Label', label), el('button', { type: 'submit' }, 'Show'));
  main().replaceChildren(el('h1', {}, 'History'), filters, missing, cards, el('p', {}, more));
  await load(true);
}

// ---- health ---------------------------------------------------------------

async function pageHealth() {
  const box = el('div', { id: 'health' });
  main().replaceChildren(el('h1', {}, 'Health'), box);
  every(3000, async () => {
    const [status, dead] = await Promise.all([api('GET', '/status'), api('GET', '/delivery/dead')]);
    const letters = dead.dead_letters || [];
    const outbox = status.outbox || [];
    box.replaceChildren(
      facts([
        ['Version', status.version],
        ['Cameras up', `${(status.streams || []).filter((s) => s.health && s.health.up).length} of ${(status.streams || []).length}`],
        ['WebSocket clients', String((status.websocket || {}).connected ?? 0)],
        ['Recording', status.recording ? (status.recording.paused ? 'paused (disk short of space)' : 'on') : 'off'],
        ['Held in memory', String((status.outbox_spill || {}).held ?? 0)],
      ]),
      el('h2', {}, 'Delivery outbox'),
      outbox.length
        ? el('div', { class: 'table-wrap' }, el('table', { id: 'outbox' },
          el('thead', {}, el('tr', {}, ['Target', 'Waiting', 'Dead letters'].map((h) => el('th', { scope: 'col' }, h)))),
          el('tbody', {}, outbox.map((o) => el('tr', {}, el('td', {}, o.target), el('td', {}, String(o.queued)), el('td', {}, String(o.dead)))))))
        : el('p', { class: 'muted', id: 'outbox' }, 'The outbox is empty: everything accepted has been delivered.'),
      el('h2', {}, 'Dead letters'),
      letters.length
        ? el('div', { class: 'table-wrap' }, labelled(el('table', { id: 'dead', class: 'stack' },
          el('thead', {}, el('tr', {}, ['Target', 'Alert', 'Attempts', 'Last error', ''].map((h) => el('th', { scope: 'col' }, h)))),
          el('tbody', {}, letters.map((d) => el('tr', {},
            el('td', {}, d.target), el('td', {}, d.alert_id), el('td', {}, String(d.attempts)), el('td', {}, d.last_error || '–'),
            el('td', {}, el('button', { type: 'button', onclick: (ev) => act(ev.target, 'Back in line', () => api('POST', `/delivery/dead/${d.seq}/redeliver`, {})) }, 'Redeliver'))))))))
        : el('p', { class: 'muted' }, 'No dead letters.'),
      el('h2', {}, 'Metrics'),
      el('p', {}, el('a', { href: '/metrics' }, 'Prometheus metrics'), ' (text format, for a scraper).'));
  });
}

// ---- start ----------------------------------------------------------------

const PAGES = { signin: pageSignin, live: pageLive, cameras: pageCameras, rules: pageRules, history: pageHistory, health: pageHealth };

async function start() {
  const page = document.body.dataset.page;
  for (const a of document.querySelectorAll('.bar nav a')) {
    if (a.getAttribute('href') === '/' + page) a.setAttribute('aria-current', 'page');
  }
  if (page !== 'signin') {
    try {
      session.csrf = (await api('GET', '/session')).csrf_token;
    } catch (_) { return; }
    document.getElementById('signout').onclick = async () => {
      try { await api('DELETE', '/session'); } catch (_) { /* signed out either way */ }
      sessionStorage.clear();
      location.assign('/signin');
    };
  }
  try {
    await (PAGES[page] || pageLive)();
  } catch (e) {
    if (e.status !== 401) main().replaceChildren(el('p', { class: 'note bad', role: 'alert' }, e.message));
  }
}

start();
