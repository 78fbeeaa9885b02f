// envd's process.Process service (spec §3.1, §3.2) through the unmodified JS SDK: commands.run in
// the foreground and background, streamed callbacks, list, kill, stdin, re-attach, the
// Connect-Timeout-Ms process deadline, envs/cwd/user; plus the Connect wire details the SDK
// hides (envelopes, end-stream, keepalives, auth).
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { Sandbox, CommandExitError, NotFoundError, InvalidArgumentError, TimeoutError } from 'e2b';
import { startServer, within, sleep } from './harness.mjs';

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

async function running() {
  return (await within(10_000, sbx.commands.list())).map((p) => p.pid);
}

describe('commands.run (foreground)', () => {
  it('returns stdout, stderr and exit code 0, multibyte text intact', async () => {
    const r = await within(30_000, sbx.commands.run('printf "héllo ✓\\n"; echo warn >&2'));
    assert.equal(r.exitCode, 0);
    assert.equal(r.stdout, 'héllo ✓\n');
    assert.equal(r.stderr, 'warn\n');
    assert.equal(r.error, undefined);
  });

  it('throws CommandExitError with the output and "exit status N" on a non-zero exit', async () => {
    const err = await within(30_000, sbx.commands.run('echo partial; echo bad >&2; exit 7').then(() => null, (e) => e));
    assert.ok(err instanceof CommandExitError, `got ${err}`);
    assert.equal(err.exitCode, 7);
    assert.equal(err.stdout, 'partial\n');
    assert.equal(err.stderr, 'bad\n');
    assert.equal(err.error, 'exit status 7');
  });

  it('runs as the default user in its home, and honours envs, cwd and user root', async () => {
    const plain = await within(30_000, sbx.commands.run('whoami; pwd; echo "[$FOO]"'));
    assert.equal(plain.stdout, 'user\n/home/user\n[]\n');
    const r = await within(30_000, sbx.commands.run('whoami; pwd; echo "$FOO"', { envs: { FOO: 'b a r' }, cwd: '/tmp', user: 'root' }));
    assert.equal(r.stdout, 'root\n/tmp\nb a r\n');
  });

  it('refuses a cwd that does not exist with InvalidArgumentError', async () => {
    const err = await within(30_000, sbx.commands.run('pwd', { cwd: '/no/such/dir' }).then(() => null, (e) => e));
    assert.ok(err instanceof InvalidArgumentError, `got ${err}`);
  });

  it('gives the command no stdin by default (cat sees EOF at once)', async () => {
    const r = await within(15_000, sbx.commands.run('cat; echo done'));
    assert.equal(r.stdout, 'done\n');
  });

  it('streams output through onStdout/onStderr as it happens, not at the end', async () => {
    const seen = [];
    const began = Date.now();
    const r = await within(30_000, sbx.commands.run('echo first; echo e1 >&2; sleep 2; echo second', {
      onStdout: (d) => seen.push({ kind: 'out', d, at: Date.now() - began }),
      onStderr: (d) => seen.push({ kind: 'err', d, at: Date.now() - began }),
    }));
    const ended = Date.now() - began;
    assert.equal(r.stdout, 'first\nsecond\n');
    assert.equal(seen.filter((s) => s.kind === 'out').map((s) => s.d).join(''), 'first\nsecond\n');
    assert.equal(seen.filter((s) => s.kind === 'err').map((s) => s.d).join(''), 'e1\n');
    const first = seen.find((s) => s.d.includes('first'));
    assert.ok(first.at < ended - 1500, `first chunk came at ${first.at} ms, the command ended at ${ended} ms`);
  });

  it('kills the process when timeoutMs (Connect-Timeout-Ms) passes', async () => {
    const marker = `deadline-${Date.now()}`;
    const began = Date.now();
    const err = await within(30_000, sbx.commands.run(`sleep 60 # ${marker}`, { timeoutMs: 1500 }).then(() => null, (e) => e));
    assert.ok(err instanceof TimeoutError || (err instanceof CommandExitError && err.exitCode === -1), `got ${err}`);
    assert.ok(Date.now() - began < 10_000);
    // The server killed it, not just the client giving up.
    for (let i = 0; i < 50; i++) {
      const left = (await sbx.commands.list()).filter((p) => p.args.some((a) => a.includes(marker)));
      if (left.length === 0) return;
      await sleep(100);
    }
    assert.fail('the process outlived its Connect-Timeout-Ms deadline');
  });
});

describe('background commands', () => {
  it('lists, kills (SIGKILL → exit -1, "signal: killed") and forgets a background command', async () => {
    const h = await within(15_000, sbx.commands.run('sleep 120', { background: true }));
    assert.ok(h.pid > 0);
    const listed = (await within(10_000, sbx.commands.list())).find((p) => p.pid === h.pid);
    assert.ok(listed, 'the background command is listed');
    assert.equal(listed.cmd, '/bin/bash');
    assert.deepEqual(listed.args, ['-l', '-c', 'sleep 120']);

    assert.equal(await within(10_000, h.kill()), true);
    const err = await within(10_000, h.wait().then(() => null, (e) => e));
    assert.ok(err instanceof CommandExitError, `got ${err}`);
    assert.equal(err.exitCode, -1);
    assert.equal(err.error, 'signal: killed');
    assert.ok(!(await running()).includes(h.pid));
    // Killing it again: the pid is unknown → not_found → false.
    assert.equal(await within(10_000, sbx.commands.kill(h.pid)), false);
    assert.equal(await within(10_000, sbx.commands.kill(999_999)), false);
  });

  it('keeps running when the client stops listening, and wait() collects the result', async () => {
    const h = await within(15_000, sbx.commands.run('sleep 1; echo late', { background: true }));
    await h.disconnect();
    await sleep(300);
    assert.ok((await running()).includes(h.pid), 'still running after the client disconnected');
    const again = await within(15_000, sbx.commands.connect(h.pid));
    const r = await within(15_000, again.wait());
    assert.equal(r.stdout, 'late\n');
  });

  it('feeds stdin with sendStdin and ends it with closeStdin', async () => {
    const h = await within(15_000, sbx.commands.run('cat; echo "<eof>"', { background: true, stdin: true }));
    await within(10_000, sbx.commands.sendStdin(h.pid, 'one\n'));
    await within(10_000, h.sendStdin('two\n'));
    await within(10_000, sbx.commands.closeStdin(h.pid));
    const r = await within(15_000, h.wait());
    assert.equal(r.stdout, 'one\ntwo\n<eof>\n');
  });

  it('refuses stdin to a command started without it', async () => {
    const h = await within(15_000, sbx.commands.run('sleep 30', { background: true }));
    try {
      await assert.rejects(within(10_000, sbx.commands.sendStdin(h.pid, 'x')));
    } finally {
      await h.kill();
    }
  });

  it('re-attaches with connect: replays earlier output, streams the rest, and sees the end', async () => {
    const h = await within(15_000, sbx.commands.run('echo before; sleep 1.5; echo after', { background: true }));
    await sleep(500);
    const chunks = [];
    const attached = await within(15_000, sbx.commands.connect(h.pid, { onStdout: (d) => chunks.push(d) }));
    assert.equal(attached.pid, h.pid);
    const r = await within(15_000, attached.wait());
    assert.equal(r.exitCode, 0);
    assert.equal(r.stdout, 'before\nafter\n');
    assert.equal(chunks.join(''), 'before\nafter\n');
    // An exited process still answers connect with start, output and end.
    const late = await within(15_000, sbx.commands.connect(h.pid));
    assert.equal((await within(15_000, late.wait())).stdout, 'before\nafter\n');
  });

  it('connect to an unknown pid fails with NotFoundError', async () => {
    const err = await within(15_000, sbx.commands.connect(987_654).then(() => null, (e) => e));
    assert.ok(err instanceof NotFoundError, `got ${err}`);
  });
});

// The wire itself: what connect-web accepts silently could still be off-spec for other clients.
describe('Connect wire', () => {
  const headers = (extra = {}) => ({
    'E2b-Sandbox-Id': sbx.sandboxId,
    'X-Access-Token': sbx.envdAccessToken,
    'Connect-Protocol-Version': '1',
    ...extra,
  });

  function envelope(obj) {
    const json = Buffer.from(JSON.stringify(obj));
    const head = Buffer.alloc(5);
    head.writeUInt32BE(json.length, 1);
    return Buffer.concat([head, json]);
  }

  function parseEnvelopes(buf) {
    const out = [];
    for (let i = 0; i < buf.length;) {
      const flags = buf[i];
      const len = buf.readUInt32BE(i + 1);
      out.push({ flags, msg: JSON.parse(buf.subarray(i + 5, i + 5 + len).toString()) });
      i += 5 + len;
    }
    return out;
  }

  it('streams start, data (base64), keepalives after the ping interval, end, then end-stream {}', async () => {
    const res = await within(20_000, fetch(`${server.url}/process.Process/Start`, {
      method: 'POST',
      headers: headers({ 'Content-Type': 'application/connect+json', 'Keepalive-Ping-Interval': '1' }),
      body: envelope({ process: { cmd: '/bin/sh', args: ['-c', 'echo hi; sleep 2.5; exit 3'] }, stdin: false }),
    }));
    assert.equal(res.status, 200);
    assert.match(res.headers.get('content-type'), /^application\/connect\+json/);
    const frames = parseEnvelopes(Buffer.from(await within(20_000, res.arrayBuffer())));
    assert.ok(frames[0].msg.event.start.pid > 0);
    const kinds = frames.slice(0, -1).map((f) => Object.keys(f.msg.event)[0]);
    assert.equal(kinds[1], 'data');
    assert.equal(Buffer.from(frames[1].msg.event.data.stdout, 'base64').toString(), 'hi\n');
    assert.ok(kinds.filter((k) => k === 'keepalive').length >= 1, `kinds: ${kinds}`);
    const end = frames.at(-2).msg.event.end;
    assert.deepEqual(end, { exitCode: 3, exited: true, status: 'exit status 3', error: 'exit status 3' });
    assert.equal(frames.at(-1).flags, 2);
    assert.deepEqual(frames.at(-1).msg, {});
    assert.ok(frames.slice(0, -1).every((f) => f.flags === 0));
  });

  it('omits exitCode 0 (proto3 defaults) and ignores unknown request fields', async () => {
    const res = await within(20_000, fetch(`${server.url}/process.Process/Start`, {
      method: 'POST',
      headers: headers({ 'Content-Type': 'application/connect+json' }),
      body: envelope({ process: { cmd: '/bin/true', some_future_field: 1 }, stdin: false, future: {} }),
    }));
    const frames = parseEnvelopes(Buffer.from(await within(20_000, res.arrayBuffer())));
    assert.deepEqual(frames.at(-2).msg.event.end, { exited: true, status: 'exit status 0' });
  });

  it('puts stream errors in the end-stream message with HTTP 200', async () => {
    const res = await within(20_000, fetch(`${server.url}/process.Process/Connect`, {
      method: 'POST',
      headers: headers({ 'Content-Type': 'application/connect+json' }),
      body: envelope({ process: { pid: 424242 } }),
    }));
    assert.equal(res.status, 200);
    const frames = parseEnvelopes(Buffer.from(await res.arrayBuffer()));
    assert.equal(frames.length, 1);
    assert.equal(frames[0].flags, 2);
    assert.equal(frames[0].msg.error.code, 'not_found');
  });

  it('answers unary errors with {code,message} and the Connect status (SendSignal unknown pid → 404)', async () => {
    const res = await within(10_000, fetch(`${server.url}/process.Process/SendSignal`, {
      method: 'POST',
      headers: headers({ 'Content-Type': 'application/json' }),
      body: JSON.stringify({ process: { pid: 999_999 }, signal: 'SIGNAL_SIGKILL' }),
    }));
    assert.equal(res.status, 404);
    const body = await res.json();
    assert.equal(body.code, 'not_found');
    assert.equal(typeof body.message, 'string');
  });

  it('rejects a missing or wrong X-Access-Token with 401 unauthenticated', async () => {
    for (const token of [undefined, 'wrong', sbx.envdAccessToken + 'x']) {
      const h = headers({ 'Content-Type': 'application/json' });
      if (token === undefined) delete h['X-Access-Token']; else h['X-Access-Token'] = token;
      const res = await within(10_000, fetch(`${server.url}/process.Process/List`, { method: 'POST', headers: h, body: '{}' }));
      assert.equal(res.status, 401);
      assert.equal((await res.json()).code, 'unauthenticated');
      const stream = await within(10_000, fetch(`${server.url}/process.Process/Start`, {
        method: 'POST',
        headers: { ...h, 'Content-Type': 'application/connect+json' },
        body: envelope({ process: { cmd: '/bin/sh', args: ['-c', 'touch /tmp/should-not-exist'] } }),
      }));
      assert.equal(stream.status, 401);
    }
    const check = await within(15_000, sbx.commands.run('test -e /tmp/should-not-exist && echo yes || echo no'));
    assert.equal(check.stdout, 'no\n');
  });
});
