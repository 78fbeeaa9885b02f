// The E2B control plane (spec §1, §5.1) through the unmodified SDKs: create (v2 and, via
// e2b@2.50.0, the v1 path), list with metadata filters and paging, connect, timeout, kill,
// getInfo, metrics, pause, and the error classes the SDKs derive from our error bodies.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { Sandbox, SandboxError, SandboxNotFoundError, AuthenticationError } from 'e2b';
import { Sandbox as SandboxV250 } from 'e2b-v250';
import { startServer, API_KEY, within, sleep } from './harness.mjs';

let server;
before(async () => { server = await startServer(); });
after(async () => { await server?.stop(); });

const tag = () => randomBytes(6).toString('hex');
/**
 * Runs a command through Airlock's native /v1 API, so these control-plane tests do not depend
 * on the envd process RPCs (covered by their own suite).
 */
async function nativeExec(id, cmd) {
  const res = await within(30_000, fetch(`${server.url}/v1/sandboxes/${id}/exec`, {
    method: 'POST',
    headers: { Authorization: `Bearer ${API_KEY}`, 'content-type': 'application/json' },
    body: JSON.stringify({ cmd }),
  }));
  assert.equal(res.status, 200, await res.clone().text());
  return res.json();
}

async function withSandbox(opts, fn) {
  const sbx = await within(30_000, Sandbox.create(opts));
  try {
    return await fn(sbx);
  } finally {
    await within(30_000, Sandbox.kill(sbx.sandboxId)).catch(() => {});
  }
}

/** Drains a paginator, keeping each page's size. */
async function pages(paginator) {
  const out = [];
  while (paginator.hasNext) {
    out.push(await within(10_000, paginator.nextItems()));
    assert.ok(out.length < 50, 'paginator never ended');
  }
  return out;
}

describe('create', () => {
  it('returns an E2B-shaped sandbox and stores metadata, template and timeout', async () => {
    const suite = tag();
    const before = Date.now();
    await withSandbox({ metadata: { suite, owner: 'alice' }, envs: { GREETING: 'hi there' }, timeoutMs: 120_000 }, async (sbx) => {
      assert.match(sbx.sandboxId, /^[a-z0-9]{20}$/, 'ids must be host-name safe (no dashes)');
      const info = await within(10_000, Sandbox.getInfo(sbx.sandboxId));
      assert.equal(info.sandboxId, sbx.sandboxId);
      assert.equal(info.templateId, 'base');
      assert.equal(info.name, 'base');
      assert.equal(info.state, 'running');
      assert.deepEqual(info.metadata, { suite, owner: 'alice' });
      assert.equal(info.envdVersion, '0.6.13');
      assert.equal(info.cpuCount, 1);
      assert.equal(info.memoryMB, 512);
      // timeout is sent in seconds; endAt = startedAt + 120 s.
      assert.ok(Math.abs(info.endAt - info.startedAt - 120_000) < 1_000, `endAt-startedAt = ${info.endAt - info.startedAt}`);
      assert.ok(info.startedAt.getTime() >= before - 2_000 && info.startedAt.getTime() <= Date.now() + 2_000);
      assert.ok(sbx.sandboxDomain, 'domain is returned (falls back to the request host)');
    });
  });

  it('defaults the timeout to 300 s when the SDK omits it', async () => {
    await withSandbox({}, async (sbx) => {
      const info = await within(10_000, sbx.getInfo());
      assert.ok(Math.abs(info.endAt - info.startedAt - 300_000) < 1_000, `endAt-startedAt = ${info.endAt - info.startedAt}`);
    });
  });

  it('applies envVars to every process', async () => {
    await withSandbox({ envs: { GREETING: 'hi there', OTHER: 'x' } }, async (sbx) => {
      const result = await nativeExec(sbx.sandboxId, 'echo "$GREETING/$OTHER"');
      assert.equal(result.stdout, 'hi there/x\n');
    });
  });

  it('applies envVars to commands.run (envd process RPCs)', async () => {
    await withSandbox({ envs: { GREETING: 'hi there' } }, async (sbx) => {
      const result = await within(30_000, sbx.commands.run('echo "$GREETING"'));
      assert.equal(result.stdout, 'hi there\n');
    });
  });

  it('rejects an unknown template with E2B\'s 404', async () => {
    await assert.rejects(within(10_000, Sandbox.create('no-such-template-' + tag())), (err) => {
      assert.ok(err instanceof SandboxError, err.name);
      assert.match(err.message, /^404: template 'no-such-template-[0-9a-f]+' not found$/);
      return true;
    });
  });

  it('rejects a wrong API key with AuthenticationError and creates nothing', async () => {
    const countBefore = (await pages(Sandbox.list())).flat().length;
    await assert.rejects(within(10_000, Sandbox.create({ apiKey: 'e2b_' + 'b2'.repeat(20) })), AuthenticationError);
    await assert.rejects(within(10_000, Sandbox.list({ apiKey: 'e2b_00' }).nextItems()), AuthenticationError);
    assert.equal((await pages(Sandbox.list())).flat().length, countBefore);
  });

  it('answers a missing X-API-KEY with 401 {code, message}', async () => {
    for (const [method, path] of [['POST', '/v2/sandboxes'], ['POST', '/sandboxes'], ['GET', '/v2/sandboxes'], ['DELETE', '/sandboxes/abc']]) {
      const res = await within(10_000, fetch(server.url + path, { method, headers: { 'content-type': 'application/json' }, body: method === 'POST' ? '{"templateID":"base"}' : undefined }));
      assert.equal(res.status, 401, `${method} ${path}`);
      const body = await res.json();
      assert.equal(body.code, 401);
      assert.equal(typeof body.message, 'string');
    }
  });
});

describe('list', () => {
  it('filters by metadata (AND, exact, special characters survive the triple encoding) and pages with X-Next-Token', async () => {
    const suite = tag();
    const tricky = 'a b&c=d%20/é+ü';
    const made = [];
    try {
      for (let i = 0; i < 3; i++) {
        made.push(await within(30_000, Sandbox.create({ metadata: { suite, idx: String(i), ...(i === 1 ? { 'we ird&k=y': tricky } : {}) } })));
        await sleep(5); // distinct startedAt, so the order is checkable
      }
      const ids = made.map((s) => s.sandboxId);

      const all = (await pages(Sandbox.list({ query: { metadata: { suite } } }))).flat();
      assert.deepEqual(all.map((s) => s.sandboxId), [...ids].reverse(), 'newest first');
      for (const s of all) {
        assert.equal(s.state, 'running');
        assert.equal(s.templateId, 'base');
        assert.equal(s.metadata.suite, suite);
        assert.ok(s.startedAt instanceof Date && s.endAt > s.startedAt);
      }

      const one = (await pages(Sandbox.list({ query: { metadata: { suite, idx: '2' } } }))).flat();
      assert.deepEqual(one.map((s) => s.sandboxId), [ids[2]]);

      const trickyHit = (await pages(Sandbox.list({ query: { metadata: { suite, 'we ird&k=y': tricky } } }))).flat();
      assert.deepEqual(trickyHit.map((s) => s.sandboxId), [ids[1]]);

      // A value that differs only after decoding must not match.
      const near = (await pages(Sandbox.list({ query: { metadata: { suite, 'we ird&k=y': 'a b&c=d /é+ü' } } }))).flat();
      assert.deepEqual(near, []);

      const none = (await pages(Sandbox.list({ query: { metadata: { suite, idx: '9' } } }))).flat();
      assert.deepEqual(none, []);

      const paged = await pages(Sandbox.list({ query: { metadata: { suite } }, limit: 2 }));
      assert.deepEqual(paged.map((p) => p.length), [2, 1]);
      assert.deepEqual(paged.flat().map((s) => s.sandboxId), [...ids].reverse());

      const ascending = await pages(Sandbox.list({ query: { metadata: { suite } }, limit: 1, order: 'asc' }));
      assert.deepEqual(ascending.flat().map((s) => s.sandboxId), ids);

      // Nothing is ever paused here.
      const paused = (await pages(Sandbox.list({ query: { metadata: { suite }, state: ['paused'] } }))).flat();
      assert.deepEqual(paused, []);
      const running = (await pages(Sandbox.list({ query: { metadata: { suite }, state: ['running'] } }))).flat();
      assert.equal(running.length, 3);

      // A killed sandbox leaves the list.
      await within(10_000, Sandbox.kill(ids[0]));
      const after = (await pages(Sandbox.list({ query: { metadata: { suite } } }))).flat();
      assert.deepEqual(after.map((s) => s.sandboxId), [ids[2], ids[1]]);
    } finally {
      for (const s of made) await within(10_000, Sandbox.kill(s.sandboxId)).catch(() => {});
    }
  });
});

describe('connect, timeout, kill', () => {
  it('connect returns the same sandbox and only ever extends the timeout', async () => {
    await withSandbox({ timeoutMs: 60_000 }, async (sbx) => {
      const shorter = await within(10_000, Sandbox.connect(sbx.sandboxId, { timeoutMs: 10_000 }));
      assert.equal(shorter.sandboxId, sbx.sandboxId);
      let info = await within(10_000, sbx.getInfo());
      assert.ok(info.endAt - Date.now() > 50_000, 'connect must not shorten the TTL');

      await within(10_000, Sandbox.connect(sbx.sandboxId, { timeoutMs: 600_000 }));
      info = await within(10_000, sbx.getInfo());
      assert.ok(Math.abs(info.endAt - Date.now() - 600_000) < 5_000, `endAt in ${info.endAt - Date.now()} ms`);
    });
  });

  it('a connected instance carries the access token, so its envd calls are authorised', async () => {
    await withSandbox({}, async (sbx) => {
      const connected = await within(10_000, Sandbox.connect(sbx.sandboxId));
      await within(10_000, connected.files.write('/tmp/connected.txt', 'via connect'));
      assert.equal(await within(10_000, sbx.files.read('/tmp/connected.txt')), 'via connect');
    });
  });

  it('connect to an unknown sandbox throws SandboxNotFoundError', async () => {
    await assert.rejects(within(10_000, Sandbox.connect('nosuchsandbox0000000')), SandboxNotFoundError);
  });

  it('setTimeout can shorten the TTL, and the sandbox dies when it passes', async () => {
    await withSandbox({ timeoutMs: 300_000 }, async (sbx) => {
      await within(10_000, sbx.setTimeout(2_000));
      const info = await within(10_000, sbx.getInfo());
      assert.ok(info.endAt - Date.now() < 3_000, `endAt in ${info.endAt - Date.now()} ms`);
      const deadline = Date.now() + 15_000;
      for (;;) {
        try {
          await within(10_000, Sandbox.getInfo(sbx.sandboxId));
        } catch (err) {
          assert.ok(err instanceof SandboxNotFoundError, String(err));
          break;
        }
        assert.ok(Date.now() < deadline, 'sandbox outlived its timeout');
        await sleep(250);
      }
      assert.equal(await within(10_000, Sandbox.kill(sbx.sandboxId)), false);
    });
  });

  it('setTimeout on an unknown sandbox throws SandboxNotFoundError', async () => {
    await assert.rejects(within(10_000, Sandbox.setTimeout('nosuchsandbox0000000', 10_000)), SandboxNotFoundError);
  });

  it('kill returns true once, then false; the sandbox is gone everywhere', async () => {
    const sbx = await within(30_000, Sandbox.create());
    assert.equal(await within(10_000, sbx.isRunning()), true);
    assert.equal(await within(10_000, sbx.kill()), true);
    assert.equal(await within(10_000, Sandbox.kill(sbx.sandboxId)), false);
    assert.equal(await within(10_000, Sandbox.kill('nosuchsandbox0000000')), false);
    await assert.rejects(within(10_000, Sandbox.getInfo(sbx.sandboxId)), SandboxNotFoundError);
    assert.equal(await within(10_000, sbx.isRunning()), false);
  });
});

describe('metrics and pause', () => {
  it('getMetrics reports the cgroup memory and the disk quota', async () => {
    await withSandbox({}, async (sbx) => {
      // Hold ~64 MiB of the tmpfs disk, which is charged to the sandbox's memory cgroup.
      assert.equal((await nativeExec(sbx.sandboxId, 'head -c 67108864 /dev/zero > /tmp/fill')).exitCode, 0);
      const [m] = await within(10_000, sbx.getMetrics());
      assert.ok(m.timestamp instanceof Date && Math.abs(m.timestamp - Date.now()) < 10_000);
      assert.equal(m.cpuCount, 1);
      assert.equal(m.memTotal, 512 * 1024 * 1024);
      assert.ok(m.memUsed >= 64 * 1024 * 1024 && m.memUsed < m.memTotal, `memUsed = ${m.memUsed}`);
      assert.ok(m.diskTotal > 1000 * 1024 * 1024 && m.diskTotal <= 1024 * 1024 * 1024, `diskTotal = ${m.diskTotal}`);
      assert.ok(m.diskUsed >= 64 * 1024 * 1024, `diskUsed = ${m.diskUsed}`);
    });
    await assert.rejects(within(10_000, Sandbox.getMetrics('nosuchsandbox0000000')), SandboxNotFoundError);
  });

  it('pause is refused with 409 (pause() → false) and the sandbox keeps running', async () => {
    await withSandbox({}, async (sbx) => {
      assert.equal(await within(10_000, sbx.pause()), false);
      const info = await within(10_000, sbx.getInfo());
      assert.equal(info.state, 'running');
    });
    await assert.rejects(within(10_000, Sandbox.pause('nosuchsandbox0000000')), SandboxNotFoundError);
  });
});

describe('v1 create and connect (e2b 2.50.0, the Python SDK\'s paths)', () => {
  it('creates through POST /sandboxes and connects through POST /sandboxes/{id}/connect', async () => {
    const suite = tag();
    const sbx = await within(30_000, SandboxV250.create({ metadata: { suite }, timeoutMs: 90_000 }));
    try {
      assert.match(sbx.sandboxId, /^[a-z0-9]{20}$/);
      const info = await within(10_000, Sandbox.getInfo(sbx.sandboxId));
      assert.deepEqual(info.metadata, { suite });
      assert.ok(Math.abs(info.endAt - info.startedAt - 90_000) < 1_000);

      const again = await within(10_000, SandboxV250.connect(sbx.sandboxId, { timeoutMs: 200_000 }));
      assert.equal(again.sandboxId, sbx.sandboxId);
      const extended = await within(10_000, Sandbox.getInfo(sbx.sandboxId));
      assert.ok(extended.endAt - Date.now() > 190_000);

      const listed = await within(10_000, SandboxV250.list({ query: { metadata: { suite } } }).nextItems());
      assert.deepEqual(listed.map((s) => s.sandboxId), [sbx.sandboxId]);
    } finally {
      assert.equal(await within(10_000, SandboxV250.kill(sbx.sandboxId)), true);
    }
  });
});
