// The terminal page: one xterm.js terminal, fit to the window, on the sandbox's
// /ws/pty WebSocket. The sandbox id comes from location.pathname
// (/v1/sandboxes/{id}/terminal), the session from ?session= (default
// "terminal"), the token from ?token=, which is removed from the address bar at
// once and kept only in memory. Binary frames carry terminal bytes both ways;
// text frames JSON: ready/exit/error from coved, resize from us.
// window.coveTerminal is the Terminal (the browser tests read its buffer).
'use strict';
(() => {
  const status = document.getElementById('status');
  const setStatus = (state, text, reconnect) => {
    status.dataset.state = state;
    status.textContent = text;
    if (reconnect) {
      const b = document.createElement('button');
      b.type = 'button';
      b.textContent = 'Reconnect';
      b.addEventListener('click', connect);
      status.append(b);
    }
  };

  const match = /^\/v1\/sandboxes\/([a-z0-9-]{1,63})\/terminal\/?$/.exec(location.pathname);
  const params = new URLSearchParams(location.search);
  const token = params.get('token') || '';
  const session = params.get('session') || 'terminal';
  if (params.has('token')) {
    params.delete('token');
    const q = params.toString();
    history.replaceState(history.state, '', location.pathname + (q ? '?' + q : '') + location.hash);
  }
  if (!match) {
    setStatus('error', 'not a sandbox terminal address');
    return;
  }
  const id = match[1];
  document.title = `${id} · cove terminal`;

  const term = new Terminal({ cursorBlink: true, scrollback: 5000, fontSize: 14,
                              fontFamily: 'ui-monospace, "DejaVu Sans Mono", Menlo, monospace' });
  const fit = new FitAddon.FitAddon();
  term.loadAddon(fit);
  term.open(document.getElementById('terminal'));
  fit.fit();
  term.focus();
  window.coveTerminal = term;

  const encoder = new TextEncoder();
  let ws = null;
  let exited = false;

  function sendResize() {
    if (ws && ws.readyState === WebSocket.OPEN)
      ws.send(JSON.stringify({ type: 'resize', cols: term.cols, rows: term.rows }));
  }

  function connect() {
    exited = false;
    term.reset();  // the server replays the session's recent output
    const scheme = location.protocol === 'https:' ? 'wss:' : 'ws:';
    const q = new URLSearchParams({ sessionId: session, cols: String(term.cols), rows: String(term.rows) });
    if (token) q.set('token', token);
    const socket = new WebSocket(`${scheme}//${location.host}/v1/sandboxes/${encodeURIComponent(id)}/ws/pty?${q}`);
    socket.binaryType = 'arraybuffer';
    ws = socket;
    setStatus('connecting', `connecting to ${id}…`);
    socket.onmessage = (ev) => {
      if (typeof ev.data !== 'string') {
        term.write(new Uint8Array(ev.data));
        return;
      }
      let m;
      try { m = JSON.parse(ev.data); } catch { return; }
      if (m.type === 'ready') {
        setStatus('open', 'connected');
        sendResize();  // the window may have changed while connecting
      } else if (m.type === 'exit') {
        exited = true;
        const how = m.signal ? `signal ${m.signal}` : `code ${m.code}`;
        setStatus('exited', `the shell exited (${how})`, true);
      } else if (m.type === 'error') {
        setStatus('error', `error: ${m.message}`, true);
      }
    };
    socket.onclose = (ev) => {
      if (ws !== socket) return;
      ws = null;
      if (exited || status.dataset.state === 'error') return;
      const why = ev.code === 1000 || ev.code === 1005 ? '' : ` (code ${ev.code})`;
      setStatus('closed', `connection closed${why}`, true);
    };
  }

  term.onData((data) => {
    if (ws && ws.readyState === WebSocket.OPEN) ws.send(encoder.encode(data));
  });
  term.onBinary((data) => {
    if (!ws || ws.readyState !== WebSocket.OPEN) return;
    const bytes = new Uint8Array(data.length);
    for (let i = 0; i < data.length; i++) bytes[i] = data.charCodeAt(i) & 0xff;
    ws.send(bytes);
  });
  term.onResize(sendResize);
  let pending = 0;
  window.addEventListener('resize', () => {
    cancelAnimationFrame(pending);
    pending = requestAnimationFrame(() => fit.fit());
  });

  connect();
})();
