// envd's filesystem.Filesystem service (spec §3.3) through the unmodified JS SDK: files.list,
// exists, getInfo, makeDir, rename, remove, watchDir; and on the wire the parts the JS SDK does
// not use (the polling watcher trio of the Python sync SDK, snake_case input, int64 as strings).
// Files are set up with commands.run so this suite does not depend on the /files endpoints.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { Sandbox, NotFoundError, InvalidArgumentError, FileType } from 'e2b';
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

const sh = (cmd, opts) => within(20_000, sbx.commands.run(cmd, opts));

/** A fresh directory under the user's home. */
async function freshDir() {
  const dir = `/home/user/t-${randomBytes(4).toString('hex')}`;
  await sh(`mkdir -p ${dir}`);
  return dir;
}

async function until(pred, ms = 10_000) {
  const deadline = Date.now() + ms;
  while (!pred()) {
    if (Date.now() > deadline) return false;
    await sleep(50);
  }
  return true;
}

describe('files (filesystem RPCs)', () => {
  it('list: entries with type, size, permissions, owner, symlink target; depth goes deeper', async () => {
    const dir = await freshDir();
    await sh(`cd ${dir} && printf hello > a.txt && chmod 640 a.txt && mkdir -p sub/deeper && printf x > sub/b.txt && ln -s a.txt link`);
    const entries = await within(10_000, sbx.files.list(dir));
    const byName = Object.fromEntries(entries.map((e) => [e.name, e]));
    assert.deepEqual(Object.keys(byName).sort(), ['a.txt', 'link', 'sub']);
    const a = byName['a.txt'];
    assert.equal(a.type, FileType.FILE);
    assert.equal(a.path, `${dir}/a.txt`);
    assert.equal(a.size, 5);
    assert.equal(a.mode, 0o640);
    assert.equal(a.permissions, '-rw-r-----');
    assert.equal(a.owner, 'user');
    assert.equal(a.group, 'user');
    assert.ok(a.modifiedTime instanceof Date && Math.abs(a.modifiedTime - Date.now()) < 120_000, `${a.modifiedTime}`);
    assert.equal(byName.sub.type, FileType.DIR);
    assert.ok(['a.txt', `${dir}/a.txt`].includes(byName.link.symlinkTarget), `symlinkTarget ${byName.link.symlinkTarget}`);

    const deep = (await within(10_000, sbx.files.list(dir, { depth: 3 }))).map((e) => e.path).sort();
    assert.ok(deep.includes(`${dir}/sub/b.txt`), deep.join(','));
    assert.ok(deep.includes(`${dir}/sub/deeper`), deep.join(','));
  });

  it('list of a missing directory is NotFoundError; of a file is InvalidArgumentError', async () => {
    const dir = await freshDir();
    await sh(`printf x > ${dir}/f`);
    await assert.rejects(within(10_000, sbx.files.list(`${dir}/missing`)), NotFoundError);
    await assert.rejects(within(10_000, sbx.files.list(`${dir}/f`)), InvalidArgumentError);
  });

  it('exists and getInfo; relative paths resolve against the home directory', async () => {
    const dir = await freshDir();
    await sh(`printf 12345678 > ${dir}/n.bin`);
    assert.equal(await within(10_000, sbx.files.exists(`${dir}/n.bin`)), true);
    assert.equal(await within(10_000, sbx.files.exists(`${dir}/nope`)), false);
    const info = await within(10_000, sbx.files.getInfo(`${dir.replace('/home/user/', '')}/n.bin`));
    assert.equal(info.path, `${dir}/n.bin`);
    assert.equal(info.size, 8);
    await assert.rejects(within(10_000, sbx.files.getInfo(`${dir}/nope`)), NotFoundError);
  });

  it('makeDir creates parents owned by the user, then reports false for an existing directory', async () => {
    const dir = await freshDir();
    assert.equal(await within(10_000, sbx.files.makeDir(`${dir}/x/y/z`)), true);
    assert.equal((await sh(`stat -c %U ${dir}/x/y/z ${dir}/x`)).stdout, 'user\nuser\n');
    assert.equal(await within(10_000, sbx.files.makeDir(`${dir}/x/y/z`)), false);
    await sh(`printf x > ${dir}/file`);
    await assert.rejects(within(10_000, sbx.files.makeDir(`${dir}/file`)));
    assert.equal((await sh(`test -f ${dir}/file && echo still-a-file`)).stdout, 'still-a-file\n');
  });

  it('makeDir as root makes root-owned directories', async () => {
    assert.equal(await within(10_000, sbx.files.makeDir(`/opt/rootmade-${Date.now()}`, { user: 'root' })), true);
    const out = (await sh('stat -c %U /opt/rootmade-*')).stdout;
    assert.match(out, /^root\n/);
  });

  it('rename moves the entry and answers its new info; a missing source is NotFoundError', async () => {
    const dir = await freshDir();
    await sh(`printf moved > ${dir}/from.txt`);
    const info = await within(10_000, sbx.files.rename(`${dir}/from.txt`, `${dir}/to.txt`));
    assert.equal(info.path, `${dir}/to.txt`);
    assert.equal(info.name, 'to.txt');
    assert.equal((await sh(`cat ${dir}/to.txt; echo; test -e ${dir}/from.txt || echo gone`)).stdout, 'moved\ngone\n');
    await assert.rejects(within(10_000, sbx.files.rename(`${dir}/from.txt`, `${dir}/again.txt`)), NotFoundError);
  });

  it('remove deletes a whole tree, and a missing path is not an error', async () => {
    const dir = await freshDir();
    await sh(`mkdir -p ${dir}/t/u && printf x > ${dir}/t/u/f`);
    await within(10_000, sbx.files.remove(`${dir}/t`));
    assert.equal(await sbx.files.exists(`${dir}/t`), false);
    await within(10_000, sbx.files.remove(`${dir}/never-existed`));
  });

  it('watchDir reports create/write/remove with names relative to the watched dir, recursively when asked', async () => {
    const dir = await freshDir();
    await sh(`mkdir -p ${dir}/sub`);
    const events = [];
    const handle = await within(10_000, sbx.files.watchDir(dir, (e) => events.push(e), { recursive: true }));
    try {
      await sh(`printf a > ${dir}/new.txt; printf b > ${dir}/sub/inner.txt; rm ${dir}/new.txt`);
      const ok = await until(() =>
        events.some((e) => e.name === 'new.txt' && e.type === 'create') &&
        events.some((e) => e.name === 'sub/inner.txt' && e.type === 'create') &&
        events.some((e) => e.name === 'new.txt' && e.type === 'remove'));
      assert.ok(ok, JSON.stringify(events));
      assert.ok(events.some((e) => e.name === 'new.txt' && e.type === 'write'), JSON.stringify(events));
    } finally {
      await handle.stop();
    }
  });

  it('watchDir of a missing directory fails with NotFoundError', async () => {
    await assert.rejects(within(10_000, sbx.files.watchDir('/home/user/no-such-dir', () => {})), NotFoundError);
  });
});

describe('filesystem wire', () => {
  const rpc = (method, body) => within(10_000, fetch(`${server.url}/filesystem.Filesystem/${method}`, {
    method: 'POST',
    headers: {
      'E2b-Sandbox-Id': sbx.sandboxId,
      'X-Access-Token': sbx.envdAccessToken,
      'Content-Type': 'application/json',
      'Connect-Protocol-Version': '1',
    },
    body: JSON.stringify(body),
  }));

  it('Stat answers proto3 JSON: int64 size as a string, enum names, RFC 3339 time, no defaults', async () => {
    const dir = await freshDir();
    await sh(`printf hello > ${dir}/s.txt`);
    const res = await rpc('Stat', { path: `${dir}/s.txt`, unknownField: true });
    assert.equal(res.status, 200);
    const { entry } = await res.json();
    assert.equal(entry.size, '5');
    assert.equal(entry.type, 'FILE_TYPE_FILE');
    assert.match(entry.modifiedTime, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$/);
    assert.equal('symlinkTarget' in entry, false);
    const empty = await (await rpc('Stat', { path: dir })).json();
    assert.equal(empty.entry.type, 'FILE_TYPE_DIRECTORY');
  });

  it('MakeDir on an existing directory is 409 already_exists; Stat of a missing path is 404 not_found', async () => {
    const dir = await freshDir();
    const res = await rpc('MakeDir', { path: dir });
    assert.equal(res.status, 409);
    assert.equal((await res.json()).code, 'already_exists');
    const missing = await rpc('Stat', { path: `${dir}/missing` });
    assert.equal(missing.status, 404);
    assert.equal((await missing.json()).code, 'not_found');
  });

  it('polling watchers: CreateWatcher (snake_case in), GetWatcherEvents drains, RemoveWatcher forgets', async () => {
    const dir = await freshDir();
    const created = await rpc('CreateWatcher', { path: dir, include_entry: true });
    assert.equal(created.status, 200);
    const { watcherId } = await created.json();
    assert.ok(watcherId);
    await sh(`printf abc > ${dir}/polled.txt`);
    let events = [];
    for (let i = 0; i < 40 && !events.some((e) => e.type === 'EVENT_TYPE_CREATE'); i++) {
      const res = await rpc('GetWatcherEvents', { watcher_id: watcherId });
      assert.equal(res.status, 200);
      events = events.concat((await res.json()).events ?? []);
      await sleep(100);
    }
    const create = events.find((e) => e.name === 'polled.txt' && e.type === 'EVENT_TYPE_CREATE');
    assert.ok(create, JSON.stringify(events));
    assert.equal(create.entry?.path, `${dir}/polled.txt`);
    // Drained: nothing new since the last poll.
    await sleep(200);
    const again = await (await rpc('GetWatcherEvents', { watcherId })).json();
    assert.deepEqual(again.events ?? [], []);

    assert.equal((await rpc('RemoveWatcher', { watcherId })).status, 200);
    const gone = await rpc('GetWatcherEvents', { watcherId });
    assert.equal(gone.status, 404);
    assert.equal((await gone.json()).code, 'not_found');
  });

  it('a watcher id is not usable from another sandbox', async () => {
    const dir = await freshDir();
    const { watcherId } = await (await rpc('CreateWatcher', { path: dir })).json();
    const other = await within(30_000, Sandbox.create({ timeoutMs: 60_000 }));
    try {
      const res = await within(10_000, fetch(`${server.url}/filesystem.Filesystem/GetWatcherEvents`, {
        method: 'POST',
        headers: { 'E2b-Sandbox-Id': other.sandboxId, 'X-Access-Token': other.envdAccessToken, 'Content-Type': 'application/json' },
        body: JSON.stringify({ watcherId }),
      }));
      assert.equal(res.status, 404);
    } finally {
      await other.kill();
      await rpc('RemoveWatcher', { watcherId });
    }
  });
});
