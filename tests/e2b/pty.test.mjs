// envd PTYs (spec §3.2: Start with pty{size}, SendInput{pty}, Update, SendSignal) through the
// unmodified JS SDK: pty.create, sendInput, resize, kill, onData, and re-attach with pty.connect.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { Sandbox } from 'e2b';
import { startServer, within } from './harness.mjs';

let server;
let sbx;
before(async () => {
  server = await startServer();
  sbx = await within(30_000, Sandbox.create({ timeoutMs: 300_000 }));
});
after(async () => {
  await sbx?.kill().catch(() => {});
  await server?.stop();
});

/** A terminal whose output is collected as text; `waitFor` resolves once a pattern shows up. */
async function terminal(opts = {}) {
  let text = '';
  const waiters = [];
  const onData = (bytes) => {
    text += Buffer.from(bytes).toString();
    for (const w of [...waiters]) {
      if (w.re.test(text)) { waiters.splice(waiters.indexOf(w), 1); w.resolve(text); }
    }
  };
  const handle = await within(15_000, sbx.pty.create({ cols: 80, rows: 24, onData, ...opts }));
  const waitFor = (re, ms = 15_000) => within(ms, new Promise((resolve) => {
    if (re.test(text)) resolve(text); else waiters.push({ re, resolve });
  })).catch((e) => { throw new Error(`${e.message}; terminal so far: ${JSON.stringify(text)}`); });
  const type = (s) => within(10_000, sbx.pty.sendInput(handle.pid, new TextEncoder().encode(s)));
  return { handle, waitFor, type, text: () => text };
}

describe('pty', () => {
  it('runs an interactive shell on a real terminal with TERM set', async () => {
    const t = await terminal();
    try {
      await t.type('echo "$((6*7))-$TERM"; tty\n');
      await t.waitFor(/42-xterm-256color/);
      await t.waitFor(/\/dev\/pts\/\d+/);
    } finally {
      await t.handle.kill();
    }
  });

  it('starts at the requested size and resizes with Update', async () => {
    const t = await terminal({ cols: 91, rows: 17 });
    try {
      await t.type('stty size\n');
      await t.waitFor(/17 91/);
      await within(10_000, sbx.pty.resize(t.handle.pid, { cols: 120, rows: 33 }));
      await t.type('stty size\n');
      await t.waitFor(/33 120/);
    } finally {
      await t.handle.kill();
    }
  });

  it('ends with the shell\'s exit code when the shell exits', async () => {
    const t = await terminal();
    await t.type('exit 5\n');
    const err = await within(15_000, t.handle.wait().then(() => null, (e) => e));
    assert.equal(err?.exitCode, 5);
  });

  it('kill ends it (signal: killed), removes it from the list, and a second kill is false', async () => {
    const t = await terminal();
    assert.ok((await sbx.commands.list()).some((p) => p.pid === t.handle.pid));
    assert.equal(await within(10_000, sbx.pty.kill(t.handle.pid)), true);
    const err = await within(10_000, t.handle.wait().then(() => null, (e) => e));
    assert.equal(err?.exitCode, -1);
    assert.equal(err?.error, 'signal: killed');
    assert.ok(!(await sbx.commands.list()).some((p) => p.pid === t.handle.pid));
    assert.equal(await within(10_000, sbx.pty.kill(t.handle.pid)), false);
  });

  it('re-attaches with pty.connect and keeps typing into the same shell', async () => {
    const t = await terminal();
    try {
      await t.type('export MARK=kept-$((40+2))\n');
      await t.waitFor(/\$ $/m);
      await t.handle.disconnect();
      let seen = '';
      const again = await within(15_000, sbx.pty.connect(t.handle.pid, { onData: (b) => { seen += Buffer.from(b).toString(); } }));
      await t.type('echo "$MARK"\n');
      await within(15_000, (async () => { while (!/kept-42\r?\n/.test(seen)) await new Promise((r) => setTimeout(r, 50)); })());
      assert.equal(again.pid, t.handle.pid);
    } finally {
      await sbx.pty.kill(t.handle.pid);
    }
  });
});
