// The Spark fleet console. It talks to the cloud through the public REST API only, with the user's token in the
// Authorization header (never in a URL), and keeps the token in this tab's memory.
'use strict';

(function () {
  const $ = (id) => document.getElementById(id);
  const MAX_EVENTS = 500;
  const MAX_DEVICE_EVENTS = 50;
  const CHART_POINTS = 60;

  const state = {
    token: null,
    user: null,
    devices: new Map(), // id -> device record
    events: [], // newest last, at most MAX_EVENTS
    eventsPaused: false,
    heldEvents: 0,
    received: 0, // events read from the stream, in all
    sort: { key: 'name', dir: 1 },
    route: { page: 'login', id: null },
    rollout: null, // { target, ids: Set, started, samples: [[t, count]] }
    picked: new Set(),
    watch: null, // { id, variable, timer, values: [] }
    perf: { batches: 0, total: 0, max: 0, last: 0 },
  };

  // ---------------------------------------------------------------------------------------------------------
  // Rendering: changes only mark what is stale; one render per animation frame draws it.

  const dirty = { fleet: false, fleetOrder: false, rows: new Set(), events: false, device: false, rollout: false };
  let renderQueued = false;

  function schedule() {
    if (renderQueued) return;
    renderQueued = true;
    // A hidden tab gets no animation frames; the timer keeps the page current there too.
    const timer = setTimeout(render, 250);
    requestAnimationFrame(() => { clearTimeout(timer); render(); });
  }

  function markDevice(id) {
    dirty.rows.add(id);
    dirty.rollout = true;
    if (state.route.page === 'device' && state.route.id === id) dirty.device = true;
    schedule();
  }

  function render() {
    if (!renderQueued) return;
    renderQueued = false;
    const start = performance.now();
    const page = state.route.page;
    if (page === 'fleet' && (dirty.fleet || dirty.fleetOrder || dirty.rows.size)) renderFleet();
    if (page === 'events' && dirty.events) renderEvents();
    if (page === 'device' && (dirty.device || dirty.events)) renderDeviceLive();
    if (page === 'rollout' && (dirty.rollout || dirty.fleet)) renderRollout();
    if (page === 'fleet' || page === 'rollout') dirty.fleet = false;
    if (page === 'events' || page === 'device') dirty.events = false;
    const took = performance.now() - start;
    const p = state.perf;
    p.batches += 1;
    p.total += took;
    p.last = took;
    p.max = Math.max(p.max, took);
    const perf = $('perf');
    perf.dataset.batches = String(p.batches);
    perf.dataset.last = p.last.toFixed(2);
    perf.dataset.max = p.max.toFixed(2);
    perf.dataset.mean = (p.total / p.batches).toFixed(2);
  }

  function el(tag, cls, text) {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined && text !== null) e.textContent = String(text);
    return e;
  }

  function setText(node, text) {
    const t = text === undefined || text === null ? '' : String(text);
    if (node.textContent !== t) node.textContent = t;
  }

  // ---------------------------------------------------------------------------------------------------------
  // The REST API

  class ApiError extends Error {
    constructor(status, message) {
      super(message);
      this.status = status;
    }
  }

  async function api(method, path, body) {
    const headers = { Accept: 'application/json' };
    if (state.token) headers.Authorization = 'Bearer ' + state.token;
    let payload;
    if (body instanceof FormData) {
      payload = body;
    } else if (body) {
      headers['Content-Type'] = 'application/x-www-form-urlencoded';
      payload = new URLSearchParams(body).toString();
    }
    let res;
    try {
      res = await fetch(path, { method, headers, body: payload, cache: 'no-store', credentials: 'omit' });
    } catch (e) {
      cloudDown('the cloud does not answer');
      throw new ApiError(0, 'the cloud does not answer');
    }
    const text = await res.text();
    let json = null;
    try { json = text ? JSON.parse(text) : null; } catch (e) { json = null; }
    if (!res.ok) {
      if (res.status === 401 && state.token) signOut('The session ended: sign in again.');
      throw new ApiError(res.status, errorText(json) || res.status + ' ' + res.statusText);
    }
    return json;
  }

  function errorText(json) {
    if (!json || typeof json !== 'object') return typeof json === 'string' ? json : null;
    if (json.error_description) return json.error_description;
    if (Array.isArray(json.errors)) return json.errors.join('; ');
    if (json.error) return json.error;
    return null;
  }

  // ---------------------------------------------------------------------------------------------------------
  // Signing in and out

  async function login(username, password) {
    const basic = 'Basic ' + btoa('spark:spark');
    const res = await fetch('/oauth/token', {
      method: 'POST',
      headers: { Authorization: basic, 'Content-Type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({ grant_type: 'password', username, password }).toString(),
      credentials: 'omit',
    }).catch(() => null);
    if (!res) throw new Error('The cloud does not answer.');
    const json = await res.json().catch(() => null);
    if (!res.ok || !json || !json.access_token) {
      throw new Error(errorText(json) || 'Sign-in failed (' + res.status + ').');
    }
    return json.access_token;
  }

  async function start(token) {
    state.token = token;
    let who;
    try {
      who = await api('GET', '/v1/user');
    } catch (e) {
      state.token = null;
      throw new Error(e.status === 401 ? 'The token is not valid.' : e.message);
    }
    state.user = who && who.username;
    setText($('who'), state.user || '');
    $('nav').hidden = false;
    $('logout').hidden = false;
    await loadDevices();
    openStream();
    if (state.route.page === 'login') location.hash = '#/fleet';
    route();
  }

  function signOut(message) {
    state.token = null;
    state.user = null;
    closeStream();
    stopWatch();
    state.devices.clear();
    state.events = [];
    state.rollout = null;
    state.picked.clear();
    $('fleet-rows').replaceChildren();
    $('rollout-rows').replaceChildren();
    $('events').replaceChildren();
    rows.clear();
    rolloutRows.clear();
    $('nav').hidden = true;
    $('logout').hidden = true;
    setText($('who'), '');
    setConn('idle', 'signed out');
    hideBanner();
    setText($('login-error'), message || '');
    location.hash = '#/login';
    route();
  }

  // ---------------------------------------------------------------------------------------------------------
  // Devices

  function platformName(id) {
    switch (id) {
      case 0: return 'Core';
      case 6: return 'Photon';
      case 8: return 'P1';
      case 10: return 'Electron';
      case undefined: case null: return '';
      default: return 'platform ' + id;
    }
  }

  function device(id) {
    let d = state.devices.get(id);
    if (!d) {
      d = { id, name: null, connected: false, last_heard: null, last_app: null, cc3000_patch_version: null,
        platform_id: null, product_firmware_version: null, update: null, progress: null, updateText: '',
        usbNeeded: false };
      state.devices.set(id, d);
      dirty.fleetOrder = true;
    }
    return d;
  }

  function merge(d, info) {
    for (const k of ['name', 'connected', 'last_heard', 'last_app', 'cc3000_patch_version', 'platform_id',
      'product_firmware_version']) {
      if (k in info) d[k] = info[k];
    }
  }

  async function loadDevices() {
    const list = await api('GET', '/v1/devices');
    const seen = new Set();
    for (const info of list || []) {
      seen.add(info.id);
      merge(device(info.id), info);
      dirty.rows.add(info.id);
    }
    for (const id of [...state.devices.keys()]) {
      if (!seen.has(id)) {
        state.devices.delete(id);
        dirty.fleetOrder = true;
      }
    }
    dirty.fleet = true;
    dirty.rollout = true;
    schedule();
  }

  let reloadTimer = null;
  function reloadSoon() {
    if (reloadTimer) return;
    reloadTimer = setTimeout(() => {
      reloadTimer = null;
      if (state.token) loadDevices().catch(() => {});
    }, 1000);
  }

  function firmwareText(d) {
    if (d.last_app) return d.last_app;
    // 0xffff is the Hello's "no product firmware version".
    const v = d.product_firmware_version;
    if (v !== null && v !== undefined && v !== 0xffff) return 'v' + v;
    return '';
  }

  function updateText(d) {
    if (d.usbNeeded) return 'needs USB';
    return d.updateText || '';
  }

  function updateClass(d) {
    if (d.usbNeeded) return 'state-usb';
    return d.update ? 'state-' + d.update : '';
  }

  // ---------------------------------------------------------------------------------------------------------
  // The event stream: fetch() with the token in the header, read as it arrives.

  let stream = null; // { controller }
  let backoff = 1000;
  let retryTimer = null;

  function setConn(s, text) {
    const c = $('conn');
    c.dataset.state = s;
    setText(c, text);
  }

  function showBanner(text) {
    const b = $('banner');
    setText(b, text);
    b.hidden = false;
  }

  function hideBanner() {
    $('banner').hidden = true;
  }

  function cloudDown(why) {
    setConn('down', 'cloud unreachable');
    showBanner('Lost the cloud (' + why + '). Reconnecting' +
      (retryTimer ? ' in ' + Math.round(backoff / 1000) + ' s' : '') + '\u2026');
  }

  function closeStream() {
    if (retryTimer) { clearTimeout(retryTimer); retryTimer = null; }
    if (stream) { stream.controller.abort(); stream = null; }
  }

  function retryStream(why) {
    if (!state.token) return;
    if (stream) { stream.controller.abort(); stream = null; }
    if (retryTimer) return;
    const wait = backoff;
    backoff = Math.min(backoff * 2, 30000);
    retryTimer = setTimeout(() => { retryTimer = null; openStream(); }, wait + Math.random() * 250);
    cloudDown(why);
  }

  async function openStream() {
    if (!state.token || stream) return;
    const controller = new AbortController();
    const mine = { controller };
    stream = mine;
    setConn('connecting', 'connecting\u2026');
    let idle = null;
    const kick = () => {
      clearTimeout(idle);
      // The cloud writes a keep-alive at least every 9 s; 20 s of silence is a dead stream.
      idle = setTimeout(() => { if (stream === mine) retryStream('the event stream went silent'); }, 20000);
    };
    try {
      const res = await fetch('/v1/devices/events', {
        headers: { Authorization: 'Bearer ' + state.token, Accept: 'text/event-stream' },
        signal: controller.signal, cache: 'no-store', credentials: 'omit',
      });
      if (res.status === 401) { signOut('The session ended: sign in again.'); return; }
      if (!res.ok || !res.body) throw new Error('the event stream answered ' + res.status);
      setConn('live', 'live');
      hideBanner();
      const recovered = backoff > 1000;
      backoff = 1000;
      // Events during the gap are lost (the stream has no resume): read the fleet again.
      if (recovered) loadDevices().catch(() => {});
      kick();
      const reader = res.body.getReader();
      const decoder = new TextDecoder();
      let buffer = '';
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        kick();
        buffer += decoder.decode(value, { stream: true }).replace(/\r\n?/g, '\n');
        let cut;
        while ((cut = buffer.indexOf('\n\n')) >= 0) {
          const block = buffer.slice(0, cut);
          buffer = buffer.slice(cut + 2);
          handleBlock(block);
        }
        if (buffer.length > 65536) buffer = '';
      }
      throw new Error('the event stream ended');
    } catch (e) {
      clearTimeout(idle);
      if (stream === mine && !controller.signal.aborted) retryStream(e.message || 'the event stream failed');
    } finally {
      clearTimeout(idle);
    }
  }

  function handleBlock(block) {
    let name = null;
    const data = [];
    for (const line of block.split('\n')) {
      if (line.startsWith(':') || line === '') continue;
      const colon = line.indexOf(':');
      const field = colon < 0 ? line : line.slice(0, colon);
      let value = colon < 0 ? '' : line.slice(colon + 1);
      if (value.startsWith(' ')) value = value.slice(1);
      if (field === 'event') name = value;
      else if (field === 'data') data.push(value);
    }
    if (name === null || data.length === 0) return;
    let body;
    try { body = JSON.parse(data.join('\n')); } catch (e) { return; }
    handleEvent({ name, data: body.data, coreid: body.coreid, published_at: body.published_at });
  }

  function handleEvent(e) {
    const d = e.coreid && state.devices.get(e.coreid);
    if (e.coreid && !d) reloadSoon(); // a device the list does not have yet (claimed or provisioned since)
    if (d) {
      if (e.published_at) d.last_heard = e.published_at;
      applyDeviceEvent(d, e.name, e.data === null || e.data === undefined ? '' : String(e.data));
      markDevice(d.id);
    }
    state.received += 1;
    state.events.push(e);
    if (state.events.length > MAX_EVENTS) state.events.splice(0, state.events.length - MAX_EVENTS);
    if (state.eventsPaused) state.heldEvents += 1;
    dirty.events = true;
    schedule();
  }

  function versionAtLeast(version, target) {
    const parse = (v) => String(v || '').trim().split('.').map((n) => parseInt(n, 10));
    const a = parse(version);
    const b = parse(target);
    if (a.some(isNaN) || b.some(isNaN)) return false;
    for (let i = 0; i < Math.max(a.length, b.length); i++) {
      const x = a[i] || 0;
      const y = b[i] || 0;
      if (x !== y) return x > y;
    }
    return true;
  }

  function applyDeviceEvent(d, name, data) {
    const r = state.rollout;
    switch (name) {
      case 'spark/status':
        if (data === 'online') { d.connected = true; reloadSoon(); }
        if (data === 'offline') d.connected = false;
        break;
      case 'spark/cc3000-patch-version': {
        d.connected = true;
        d.cc3000_patch_version = data;
        const target = r ? r.target : $('rollout-target').value;
        if (versionAtLeast(data, target)) {
          if (d.usbNeeded) { d.usbNeeded = false; d.update = 'usb-patched'; d.updateText = 'patched over USB (' + data + ')'; } else if (d.update === 'success') { d.update = 'patched'; d.updateText = 'patched (' + data + ')'; }
        }
        if (r) sampleRollout();
        break;
      }
      case 'spark/flash/status':
        if (data.startsWith('started')) {
          d.update = 'updating'; d.progress = 0; d.updateText = 'started';
        } else if (data.startsWith('success')) {
          d.update = 'success'; d.progress = 1; d.updateText = 'flashed, rebooting';
        } else if (data.startsWith('failed')) {
          d.update = 'failed'; d.updateText = data;
          d.usbNeeded = true;
        }
        break;
      case 'spark/flash/progress': {
        const [sent, total] = data.split('/').map(Number);
        if (total > 0) {
          d.progress = sent / total;
          d.update = 'updating';
          d.updateText = Math.floor(100 * d.progress) + ' %';
        }
        break;
      }
      default:
        break;
    }
  }

  // ---------------------------------------------------------------------------------------------------------
  // Fleet

  const rows = new Map(); // id -> { tr, cells }
  const COLUMNS = ['name', 'id', 'platform', 'online', 'seen', 'firmware', 'sp', 'update'];

  function sortValue(d, key) {
    switch (key) {
      case 'name': return (d.name || '').toLowerCase();
      case 'id': return d.id;
      case 'platform': return platformName(d.platform_id);
      case 'online': return d.connected ? 0 : 1;
      case 'seen': return d.last_heard || '';
      case 'firmware': return firmwareText(d);
      case 'sp': return d.cc3000_patch_version || '';
      case 'update': return updateText(d);
      default: return '';
    }
  }

  function fleetVisible(d, text, show) {
    if (show === 'online' && !d.connected) return false;
    if (show === 'offline' && d.connected) return false;
    if (show === 'updating' && d.update !== 'updating') return false;
    if (show === 'usb' && !d.usbNeeded) return false;
    if (!text) return true;
    const hay = [d.name, d.id, firmwareText(d), d.cc3000_patch_version, platformName(d.platform_id), updateText(d)]
      .join(' ').toLowerCase();
    return hay.includes(text);
  }

  function fleetRow(d) {
    let r = rows.get(d.id);
    if (!r) {
      const tr = el('tr');
      tr.dataset.id = d.id;
      const cells = {};
      for (const c of COLUMNS) {
        const td = el('td', c);
        if (c === 'name') {
          const a = el('a');
          a.href = '#/device/' + d.id;
          td.append(a);
        }
        cells[c] = td;
        tr.append(td);
      }
      r = { tr, cells };
      rows.set(d.id, r);
    }
    return r;
  }

  function fillRow(d, r) {
    setText(r.cells.name.firstChild, d.name || '(unnamed)');
    setText(r.cells.id, d.id);
    setText(r.cells.platform, platformName(d.platform_id));
    setText(r.cells.online, d.connected ? 'online' : 'offline');
    r.cells.online.className = 'online ' + (d.connected ? 'yes' : 'no');
    setText(r.cells.seen, d.last_heard ? new Date(d.last_heard).toLocaleString() : '');
    setText(r.cells.firmware, firmwareText(d));
    setText(r.cells.sp, d.cc3000_patch_version || '');
    setText(r.cells.update, updateText(d));
    r.cells.update.className = 'update ' + updateClass(d);
    r.tr.className = d.connected ? '' : 'offline';
  }

  function renderFleet() {
    const text = $('fleet-filter').value.trim().toLowerCase();
    const show = $('fleet-show').value;
    const reorder = dirty.fleet || dirty.fleetOrder || (dirty.rows.size > 0 && (text || show !== 'all' ||
      state.sort.key !== 'name' && state.sort.key !== 'id'));
    if (reorder) {
      const { key, dir } = state.sort;
      const list = [...state.devices.values()].filter((d) => fleetVisible(d, text, show));
      list.sort((a, b) => {
        const x = sortValue(a, key);
        const y = sortValue(b, key);
        return (x < y ? -1 : x > y ? 1 : a.id < b.id ? -1 : a.id > b.id ? 1 : 0) * dir;
      });
      const body = $('fleet-rows');
      const frag = document.createDocumentFragment();
      for (const d of list) {
        const r = fleetRow(d);
        fillRow(d, r);
        frag.append(r.tr);
      }
      body.replaceChildren(frag);
      for (const id of [...rows.keys()]) if (!state.devices.has(id)) rows.delete(id);
      setText($('fleet-count'), list.length === state.devices.size ? state.devices.size + ' devices'
        : list.length + ' of ' + state.devices.size + ' devices');
      $('fleet-count').dataset.shown = String(list.length);
      dirty.fleetOrder = false;
    } else {
      for (const id of dirty.rows) {
        const d = state.devices.get(id);
        const r = rows.get(id);
        if (d && r) fillRow(d, r);
      }
    }
    dirty.rows.clear();
    for (const th of document.querySelectorAll('#fleet th')) {
      th.classList.toggle('sorted-asc', th.dataset.key === state.sort.key && state.sort.dir > 0);
      th.classList.toggle('sorted-desc', th.dataset.key === state.sort.key && state.sort.dir < 0);
    }
  }

  // ---------------------------------------------------------------------------------------------------------
  // Events

  function eventItem(e) {
    const li = el('li');
    const d = e.coreid && state.devices.get(e.coreid);
    li.append(el('span', 'time', e.published_at ? new Date(e.published_at).toLocaleTimeString() : ''));
    li.append(el('span', 'name', e.name));
    li.append(el('span', 'data', e.data === null || e.data === undefined ? '' : e.data));
    li.append(el('span', 'muted', ' ' + (d && d.name ? d.name : e.coreid || '')));
    li.dataset.name = e.name;
    return li;
  }

  let shownEvents = [];
  function renderEvents() {
    if (state.eventsPaused) {
      setText($('events-held'), state.heldEvents + ' new events held');
      return;
    }
    const filter = $('events-filter').value.trim().toLowerCase();
    const list = state.events.filter((e) => {
      if (!filter) return true;
      const d = e.coreid && state.devices.get(e.coreid);
      return (e.name + ' ' + (e.coreid || '') + ' ' + (d && d.name || '')).toLowerCase().includes(filter);
    });
    const frag = document.createDocumentFragment();
    for (let i = list.length - 1; i >= 0; i--) frag.append(eventItem(list[i]));
    $('events').replaceChildren(frag);
    shownEvents = list;
    setText($('events-held'), list.length + ' events');
  }

  // ---------------------------------------------------------------------------------------------------------
  // One device

  let deviceLoad = 0;
  async function showDevice(id) {
    const token = ++deviceLoad;
    stopWatch();
    const d = state.devices.get(id);
    setText($('device-title'), d ? d.name || id : id);
    $('device-functions').replaceChildren(el('p', 'muted', 'asking the device\u2026'));
    $('device-variables').replaceChildren();
    $('chart').hidden = true;
    setText($('chart-caption'), '');
    setText($('flash-status'), '');
    dirty.device = true;
    schedule();
    let info;
    try {
      info = await api('GET', '/v1/devices/' + encodeURIComponent(id));
    } catch (e) {
      if (token === deviceLoad) $('device-functions').replaceChildren(el('p', 'error', e.message));
      return;
    }
    if (token !== deviceLoad) return;
    merge(device(id), info);
    setText($('device-title'), info.name || id);
    const fns = $('device-functions');
    fns.replaceChildren();
    if (!info.functions) fns.append(el('p', 'muted', 'The device is not connected.'));
    for (const f of info.functions || []) {
      const row = el('div', 'row');
      row.dataset.function = f;
      const input = el('input');
      input.placeholder = 'argument';
      input.maxLength = 63;
      const button = el('button', null, 'Call ' + f);
      button.type = 'button';
      const result = el('span', 'result');
      button.addEventListener('click', async () => {
        setText(result, '\u2026');
        try {
          const r = await api('POST', '/v1/devices/' + encodeURIComponent(id) + '/' + encodeURIComponent(f),
            { arg: input.value });
          setText(result, 'returned ' + r.return_value);
        } catch (e) {
          setText(result, 'error: ' + e.message);
        }
      });
      row.append(el('span', 'label', f), input, button, result);
      fns.append(row);
    }
    const vars = $('device-variables');
    vars.replaceChildren();
    for (const [name, type] of Object.entries(info.variables || {})) {
      const row = el('div', 'row');
      row.dataset.variable = name;
      const value = el('span', 'value');
      const read = el('button', null, 'Read');
      read.type = 'button';
      read.addEventListener('click', () => readVariable(id, name, value));
      row.append(el('span', 'label', name), el('span', 'muted', type), read);
      if (type === 'int32' || type === 'double') {
        const watch = el('button', 'watch', 'Watch');
        watch.type = 'button';
        watch.addEventListener('click', () => toggleWatch(id, name, value, watch));
        row.append(watch);
      }
      row.append(value);
      vars.append(row);
    }
    renderDeviceLive();
  }

  async function readVariable(id, name, out) {
    try {
      const r = await api('GET', '/v1/devices/' + encodeURIComponent(id) + '/' + encodeURIComponent(name));
      setText(out, r.result);
      return r.result;
    } catch (e) {
      setText(out, 'error: ' + e.message);
      return null;
    }
  }

  function stopWatch() {
    if (state.watch) {
      clearTimeout(state.watch.timer);
      if (state.watch.button) setText(state.watch.button, 'Watch');
      state.watch = null;
    }
  }

  function toggleWatch(id, name, out, button) {
    const same = state.watch && state.watch.variable === name;
    stopWatch();
    if (same) return;
    const w = { id, variable: name, values: [], timer: null, button };
    state.watch = w;
    setText(button, 'Stop');
    $('chart').hidden = false;
    const tick = async () => {
      const v = await readVariable(id, name, out);
      if (state.watch !== w) return;
      if (typeof v === 'number') {
        w.values.push(v);
        if (w.values.length > CHART_POINTS) w.values.shift();
        drawChart($('chart'), w.values.map((y, i) => [i, y]), CHART_POINTS - 1);
        setText($('chart-caption'), name + ': ' + w.values.length + ' readings, last ' + v);
        $('chart').dataset.points = String(w.values.length);
      }
      w.timer = setTimeout(tick, 1000);
    };
    tick();
  }

  // A line chart in SVG: points [x, y], x from 0 to xMax; y from the data's range unless given. `step` draws a
  // count that holds until it changes.
  function drawChart(svg, points, xMax, opts) {
    const o = opts || {};
    const ns = 'http://www.w3.org/2000/svg';
    const W = 300;
    const H = 100;
    const pad = 8;
    svg.replaceChildren();
    if (points.length === 0) return;
    let lo = o.lo !== undefined ? o.lo : Math.min(...points.map((p) => p[1]));
    let hi = o.hi !== undefined ? o.hi : Math.max(...points.map((p) => p[1]));
    if (lo === hi) { lo -= 1; hi += 1; }
    const sx = (x) => pad + (W - 2 * pad) * (xMax > 0 ? x / xMax : 0);
    const sy = (y) => H - pad - (H - 2 * pad) * (y - lo) / (hi - lo);
    const drawn = [];
    for (const p of points) {
      if (o.step && drawn.length) drawn.push([p[0], drawn[drawn.length - 1][1]]);
      drawn.push(p);
    }
    const line = document.createElementNS(ns, 'polyline');
    line.setAttribute('points', drawn.map((p) => sx(p[0]).toFixed(1) + ',' + sy(p[1]).toFixed(1)).join(' '));
    svg.append(line);
    const label = (x, y, text, anchor) => {
      const t = document.createElementNS(ns, 'text');
      t.setAttribute('x', String(x));
      t.setAttribute('y', String(y));
      if (anchor) t.setAttribute('text-anchor', anchor);
      t.textContent = text;
      svg.append(t);
    };
    const round = (v) => String(Math.round(v * 100) / 100);
    label(1, Math.max(7, sy(hi) + 2), round(hi));
    label(1, Math.min(H - 1, sy(lo)), round(lo));
    if (o.xLabel) label(W - 1, H - 1, o.xLabel(xMax), 'end');
  }

  function renderDeviceLive() {
    dirty.device = false;
    const id = state.route.id;
    const d = state.devices.get(id);
    const facts = $('device-facts');
    const pairs = d ? [
      ['ID', d.id], ['Platform', platformName(d.platform_id)], ['Online', d.connected ? 'online' : 'offline'],
      ['Last seen', d.last_heard ? new Date(d.last_heard).toLocaleString() : ''], ['Firmware', firmwareText(d)],
      ['CC3000 SP', d.cc3000_patch_version || ''], ['Update', updateText(d)],
    ] : [];
    const frag = document.createDocumentFragment();
    for (const [k, v] of pairs) {
      frag.append(el('dt', null, k));
      const dd = el('dd', null, v);
      dd.dataset.fact = k;
      frag.append(dd);
    }
    facts.replaceChildren(frag);
    if (d) {
      $('flash-progress').value = d.progress || 0;
      setText($('flash-status'), updateText(d));
    }
    const list = state.events.filter((e) => e.coreid === id).slice(-MAX_DEVICE_EVENTS).reverse();
    $('device-events').replaceChildren(...list.map(eventItem));
  }

  // ---------------------------------------------------------------------------------------------------------
  // Rollout

  const rolloutRows = new Map();

  function rolloutRow(d) {
    let r = rolloutRows.get(d.id);
    if (!r) {
      const tr = el('tr');
      tr.dataset.id = d.id;
      const pick = el('input');
      pick.type = 'checkbox';
      pick.className = 'pick';
      pick.addEventListener('change', () => {
        if (pick.checked) state.picked.add(d.id); else state.picked.delete(d.id);
        dirty.rollout = true;
        schedule();
      });
      const cells = {};
      const pickCell = el('td');
      pickCell.append(pick);
      tr.append(pickCell);
      for (const c of ['name', 'id', 'online', 'sp']) { cells[c] = el('td', c); tr.append(cells[c]); }
      const bar = el('progress');
      bar.max = 1;
      cells.progress = el('td', 'progress');
      cells.progress.append(bar);
      cells.state = el('td', 'state');
      tr.append(cells.progress, cells.state);
      r = { tr, pick, bar, cells };
      rolloutRows.set(d.id, r);
    }
    return r;
  }

  function rolloutState(d, r) {
    if (!r || !r.ids.has(d.id)) return ['', ''];
    if (d.usbNeeded) return ['usb', 'needs USB'];
    if (d.update === 'usb-patched') return ['usb-patched', d.updateText];
    if (versionAtLeast(d.cc3000_patch_version, r.target)) return ['patched', 'on ' + d.cc3000_patch_version];
    if (d.update === 'success') return ['success', 'flashed, waiting for the new service pack'];
    if (d.update === 'updating') return ['updating', d.updateText];
    if (r.refused.has(d.id)) return ['failed', r.refused.get(d.id)];
    return ['queued', 'queued'];
  }

  function countOnTarget(target) {
    let n = 0;
    for (const d of state.devices.values()) if (versionAtLeast(d.cc3000_patch_version, target)) n++;
    return n;
  }

  function sampleRollout() {
    const r = state.rollout;
    if (!r) return;
    const n = countOnTarget(r.target);
    const last = r.samples[r.samples.length - 1];
    if (!last || last[1] !== n) r.samples.push([(Date.now() - r.started) / 1000, n]);
    dirty.rollout = true;
  }

  function renderRollout() {
    dirty.rollout = false;
    const r = state.rollout;
    const list = [...state.devices.values()].sort((a, b) =>
      (a.name || '').localeCompare(b.name || '') || (a.id < b.id ? -1 : 1));
    const frag = document.createDocumentFragment();
    const counts = { queued: 0, updating: 0, success: 0, patched: 0, failed: 0, usb: 0, 'usb-patched': 0 };
    for (const d of list) {
      const row = rolloutRow(d);
      row.pick.checked = state.picked.has(d.id);
      row.pick.disabled = Boolean(r && r.running);
      setText(row.cells.name, d.name || '(unnamed)');
      setText(row.cells.id, d.id);
      setText(row.cells.online, d.connected ? 'online' : 'offline');
      setText(row.cells.sp, d.cc3000_patch_version || '');
      const [cls, text] = rolloutState(d, r);
      row.bar.value = cls === 'patched' || cls === 'usb-patched' ? 1 : r && r.ids.has(d.id) ? d.progress || 0 : 0;
      if (cls) counts[cls] += 1;
      setText(row.cells.state, text);
      row.cells.state.className = 'state' + (cls ? ' state-' + cls : '');
      row.tr.dataset.state = cls;
      frag.append(row.tr);
    }
    $('rollout-rows').replaceChildren(frag);
    const summary = $('rollout-summary');
    if (r) {
      const done = counts.patched + counts['usb-patched'];
      const parts = [
        ['picked', r.ids.size], ['queued', counts.queued], ['updating', counts.updating + counts.success],
        ['patched', done], ['failed, needs USB', counts.usb + counts.failed], ['patched over USB', counts['usb-patched']],
      ];
      summary.replaceChildren(...parts.map(([k, v]) => {
        const s = el('span', null, k + ': ' + v);
        s.dataset.count = k;
        s.dataset.value = String(v);
        return s;
      }));
      const finished = r.ids.size > 0 && done + counts.usb + counts.failed === r.ids.size && !r.running;
      summary.dataset.finished = String(finished);
      const svg = $('rollout-chart');
      const pts = r.samples.concat([[(Date.now() - r.started) / 1000, countOnTarget(r.target)]]);
      drawChart(svg, pts, Math.max(1, pts[pts.length - 1][0]), {
        lo: 0, hi: Math.max(1, state.devices.size), step: true, xLabel: (x) => Math.round(x) + ' s',
      });
      setText($('rollout-chart-caption'), 'devices on service pack ' + r.target + ' or later over time: ' +
        countOnTarget(r.target) + ' of ' + state.devices.size);
    } else {
      summary.replaceChildren(el('span', null, state.picked.size + ' picked'));
      summary.dataset.finished = 'false';
    }
  }

  async function startRollout(file, target) {
    const ids = [...state.picked];
    if (ids.length === 0 || (state.rollout && state.rollout.running)) return;
    const r = { target, ids: new Set(ids), started: Date.now(), samples: [], refused: new Map(), running: true };
    state.rollout = r;
    for (const id of ids) {
      const d = state.devices.get(id);
      if (d) { d.update = null; d.updateText = ''; d.progress = 0; d.usbNeeded = false; markDevice(id); }
    }
    sampleRollout();
    schedule();
    // A few flashes at a time: each one is a whole OTA transfer in the cloud.
    const queue = ids.slice();
    const worker = async () => {
      while (queue.length) {
        const id = queue.shift();
        const form = new FormData();
        form.append('file', file, file.name);
        form.append('file_type', 'binary');
        try {
          await api('PUT', '/v1/devices/' + encodeURIComponent(id), form);
        } catch (e) {
          const d = state.devices.get(id);
          r.refused.set(id, 'not started: ' + e.message);
          if (d) { d.usbNeeded = true; d.update = 'failed'; d.updateText = 'not started: ' + e.message; markDevice(id); }
        }
      }
    };
    await Promise.all([worker(), worker(), worker(), worker()]);
    r.running = false;
    dirty.rollout = true;
    schedule();
  }

  // ---------------------------------------------------------------------------------------------------------
  // Pages

  function route() {
    const hash = location.hash.replace(/^#\/?/, '');
    const [page, id] = hash.split('/');
    let next = { page: page || 'fleet', id: id ? decodeURIComponent(id) : null };
    if (!state.token) next = { page: 'login', id: null };
    if (!['login', 'fleet', 'device', 'events', 'rollout'].includes(next.page)) next = { page: 'fleet', id: null };
    if (next.page === 'login' && state.token) next = { page: 'fleet', id: null };
    const changed = next.page !== state.route.page || next.id !== state.route.id;
    state.route = next;
    for (const section of document.querySelectorAll('.page')) section.hidden = section.id !== 'page-' + next.page;
    for (const a of document.querySelectorAll('#nav a')) a.classList.toggle('active', a.id === 'nav-' + next.page);
    if (next.page !== 'device') stopWatch();
    if (next.page === 'device' && changed) showDevice(next.id);
    dirty.fleet = true;
    dirty.events = true;
    dirty.rollout = true;
    schedule();
  }

  function wire() {
    window.addEventListener('hashchange', route);
    $('login-form').addEventListener('submit', async (ev) => {
      ev.preventDefault();
      setText($('login-error'), '');
      try {
        const token = await login($('username').value.trim(), $('password').value);
        $('password').value = '';
        await start(token);
      } catch (e) {
        setText($('login-error'), e.message);
      }
    });
    $('token-form').addEventListener('submit', async (ev) => {
      ev.preventDefault();
      setText($('login-error'), '');
      try {
        await start($('token').value.trim());
        $('token').value = '';
      } catch (e) {
        setText($('login-error'), e.message);
      }
    });
    $('logout').addEventListener('click', () => {
      // The token dies with the session: revoked on the cloud, not only forgotten here.
      api('DELETE', '/v1/access_tokens/current').catch(() => {});
      signOut('');
    });
    $('fleet-filter').addEventListener('input', () => { dirty.fleet = true; schedule(); });
    $('fleet-show').addEventListener('change', () => { dirty.fleet = true; schedule(); });
    for (const th of document.querySelectorAll('#fleet th[data-key]')) {
      th.addEventListener('click', () => {
        const key = th.dataset.key;
        state.sort = { key, dir: state.sort.key === key ? -state.sort.dir : 1 };
        dirty.fleet = true;
        schedule();
      });
    }
    $('events-filter').addEventListener('input', () => { dirty.events = true; schedule(); });
    $('events-pause').addEventListener('click', () => {
      state.eventsPaused = !state.eventsPaused;
      state.heldEvents = 0;
      setText($('events-pause'), state.eventsPaused ? 'Resume' : 'Pause');
      $('events-pause').dataset.paused = String(state.eventsPaused);
      dirty.events = true;
      schedule();
    });
    $('flash-form').addEventListener('submit', async (ev) => {
      ev.preventDefault();
      const file = $('flash-file').files[0];
      const id = state.route.id;
      if (!file || !id) return;
      const form = new FormData();
      form.append('file', file, file.name);
      form.append('file_type', 'binary');
      setText($('flash-status'), 'sending ' + file.name + '\u2026');
      try {
        await api('PUT', '/v1/devices/' + encodeURIComponent(id), form);
      } catch (e) {
        setText($('flash-status'), 'not started: ' + e.message);
      }
    });
    $('rollout-pick-old').addEventListener('click', () => {
      const target = $('rollout-target').value.trim();
      state.picked.clear();
      for (const d of state.devices.values()) {
        if (d.connected && !versionAtLeast(d.cc3000_patch_version, target)) state.picked.add(d.id);
      }
      dirty.rollout = true;
      schedule();
    });
    $('rollout-pick-none').addEventListener('click', () => { state.picked.clear(); dirty.rollout = true; schedule(); });
    $('rollout-form').addEventListener('submit', (ev) => {
      ev.preventDefault();
      const file = $('rollout-file').files[0];
      if (file) startRollout(file, $('rollout-target').value.trim());
    });
    // The chart's time axis moves on while nothing else happens.
    setInterval(() => {
      if (state.rollout && state.route.page === 'rollout') { dirty.rollout = true; schedule(); }
    }, 2000);
    route();
  }

  // Exposed for tests and curious users: counts only, never the token.
  window.sparkConsole = {
    stats: () => ({ devices: state.devices.size, events: state.events.length, received: state.received,
      renders: { ...state.perf } }),
  };

  wire();
})();
