// files.read / files.write / writeFiles / uploadUrl / downloadUrl / isRunning with the unmodified
// e2b SDK against envd's plain HTTP endpoints. Content and ownership are checked through the
// native /v1 API, so a wrong answer here can't be hidden by the same adapter reading it back.
import { before, after, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import { Sandbox, FileNotFoundError } from 'e2b';
import { startServer, API_KEY } from './harness.mjs';

let server;
let sbx;

before(async () => {
  server = await startServer();
  sbx = await Sandbox.create({ timeoutMs: 300_000 });
});

after(async () => {
  await sbx?.kill().catch(() => {});
  await server?.stop();
});

const sha = (buf) => createHash('sha256').update(buf).digest('hex');

/** Raw bytes of a sandbox file through the native API. */
async function nativeRead(path) {
  const res = await fetch(`${server.url}/v1/sandboxes/${sbx.sandboxId}/files?path=${encodeURIComponent(path)}&user=root`,
    { headers: { Authorization: `Bearer ${API_KEY}` }, signal: AbortSignal.timeout(60_000) });
  assert.equal(res.status, 200, `native read of ${path}: ${res.status}`);
  return Buffer.from(await res.arrayBuffer());
}

async function nativeStat(path) {
  const res = await fetch(`${server.url}/v1/sandboxes/${sbx.sandboxId}/files/stat?path=${encodeURIComponent(path)}&user=root`,
    { headers: { Authorization: `Bearer ${API_KEY}` }, signal: AbortSignal.timeout(10_000) });
  assert.equal(res.status, 200, `native stat of ${path}: ${res.status}`);
  return res.json();
}

describe('files.write', () => {
  it('writes a string, creates parents, returns the entry, owned by the default user', async () => {
    const info = await sbx.files.write('/home/user/w/deep/str.txt', 'hello ü\n');
    assert.equal(info.path, '/home/user/w/deep/str.txt');
    assert.equal(info.name, 'str.txt');
    assert.equal(info.type, 'file');
    assert.equal((await nativeRead('/home/user/w/deep/str.txt')).toString('utf8'), 'hello ü\n');
    assert.equal((await nativeStat('/home/user/w/deep/str.txt')).owner, 'user');
    assert.equal((await nativeStat('/home/user/w/deep')).owner, 'user');
  });

  it('writes ArrayBuffer and Blob bytes exactly, and overwrites', async () => {
    const bytes = new Uint8Array(256 * 4);
    for (let i = 0; i < bytes.length; i++) bytes[i] = i % 256;
    await sbx.files.write('/tmp/ab.bin', 'a much longer previous content that must be truncated away');
    await sbx.files.write('/tmp/ab.bin', bytes.buffer);
    assert.deepEqual(new Uint8Array(await nativeRead('/tmp/ab.bin')), bytes);

    await sbx.files.write('/tmp/blob.bin', new Blob([bytes, 'tail']));
    assert.equal(sha(await nativeRead('/tmp/blob.bin')), sha(Buffer.concat([Buffer.from(bytes), Buffer.from('tail')])));
  });

  it('writes a stream (octet-stream upload)', async () => {
    const chunks = [randomBytes(100_000), randomBytes(3), randomBytes(500_000)];
    const stream = Readable.toWeb(Readable.from(chunks));
    const info = await sbx.files.write('/tmp/stream.bin', stream);
    assert.equal(info.path, '/tmp/stream.bin');
    assert.equal(sha(await nativeRead('/tmp/stream.bin')), sha(Buffer.concat(chunks)));
  });

  it('gzip upload is decompressed', async () => {
    const text = 'zip me\n'.repeat(10_000);
    await sbx.files.write('/tmp/gz.txt', text, { gzip: true });
    assert.equal((await nativeRead('/tmp/gz.txt')).toString(), text);
  });

  it('writeFiles writes every file at its own path (multipart, several parts)', async () => {
    const infos = await sbx.files.writeFiles([
      { path: '/tmp/multi/a.txt', data: 'A' },
      { path: 'multi/b.txt', data: new Uint8Array([0, 1, 2, 255]).buffer },
      { path: '/tmp/multi/c/d.txt', data: new Blob(['D']) },
    ]);
    assert.deepEqual(infos.map((i) => i.path), ['/tmp/multi/a.txt', '/home/user/multi/b.txt', '/tmp/multi/c/d.txt']);
    assert.equal((await nativeRead('/tmp/multi/a.txt')).toString(), 'A');
    assert.deepEqual([...await nativeRead('/home/user/multi/b.txt')], [0, 1, 2, 255]);
    assert.equal((await nativeRead('/tmp/multi/c/d.txt')).toString(), 'D');
  });

  it("relative paths resolve against the user's home; user 'root' owns and resolves to /root", async () => {
    const mine = await sbx.files.write('rel/x.txt', 'x');
    assert.equal(mine.path, '/home/user/rel/x.txt');
    const roots = await sbx.files.write('rel/y.txt', 'y', { user: 'root' });
    assert.equal(roots.path, '/root/rel/y.txt');
    const stat = await nativeStat('/root/rel/y.txt');
    assert.equal(stat.owner, 'root');
    assert.equal((await nativeStat('/root/rel')).owner, 'root');
    await sbx.files.write('/tmp/rootfile', 'r', { user: 'root' });
    assert.equal((await nativeStat('/tmp/rootfile')).owner, 'root');
  });
});

describe('files.read', () => {
  it('reads text, bytes, blob and stream', async () => {
    const bin = randomBytes(300_000);
    await sbx.files.write('/tmp/r.bin', bin);
    await sbx.files.write('/tmp/r.txt', 'line 1\nlíne 2\n');

    assert.equal(await sbx.files.read('/tmp/r.txt'), 'line 1\nlíne 2\n');
    assert.equal(await sbx.files.read('/tmp/r.txt', { format: 'text' }), 'line 1\nlíne 2\n');
    const bytes = await sbx.files.read('/tmp/r.bin', { format: 'bytes' });
    assert.ok(bytes instanceof Uint8Array);
    assert.equal(sha(bytes), sha(bin));
    const blob = await sbx.files.read('/tmp/r.bin', { format: 'blob' });
    assert.equal(sha(Buffer.from(await blob.arrayBuffer())), sha(bin));
    const stream = await sbx.files.read('/tmp/r.bin', { format: 'stream' });
    const parts = [];
    for await (const c of stream) parts.push(Buffer.from(c));
    assert.equal(sha(Buffer.concat(parts)), sha(bin));
    // With gzip on the wire too.
    assert.equal(sha(await sbx.files.read('/tmp/r.bin', { format: 'bytes', gzip: true })), sha(bin));
  });

  it('reads an empty file as empty in every format', async () => {
    await sbx.files.write('/tmp/empty', '');
    assert.equal(await sbx.files.read('/tmp/empty'), '');
    assert.equal((await sbx.files.read('/tmp/empty', { format: 'bytes' })).length, 0);
    assert.equal((await sbx.files.read('/tmp/empty', { format: 'blob' })).size, 0);
  });

  it('a missing file throws FileNotFoundError', async () => {
    await assert.rejects(sbx.files.read('/tmp/does/not/exist.txt'), (err) => err instanceof FileNotFoundError);
  });

  it('relative paths and the root user', async () => {
    await sbx.files.write('/root/secret.txt', 'root only', { user: 'root' });
    assert.equal(await sbx.files.read('secret.txt', { user: 'root' }), 'root only');
    await sbx.files.write('/home/user/mine.txt', 'mine');
    assert.equal(await sbx.files.read('mine.txt'), 'mine');
  });

  it('20 MB binary round trip', async () => {
    const big = randomBytes(20 * 1024 * 1024);
    const info = await sbx.files.write('/tmp/big.bin', big);
    assert.equal(info.path, '/tmp/big.bin');
    assert.equal(sha(await sbx.files.read('/tmp/big.bin', { format: 'bytes' })), sha(big));
    assert.equal(sha(await nativeRead('/tmp/big.bin')), sha(big));
  });
});

describe('signed URLs', () => {
  it('uploadUrl / downloadUrl work with plain fetch (no headers, no sandbox id)', async () => {
    const up = await sbx.uploadUrl('/tmp/signed/up.txt');
    assert.match(up, /signature=v1_/);
    const form = new FormData();
    form.append('file', new Blob(['signed upload']), '/tmp/signed/up.txt');
    const res = await fetch(up, { method: 'POST', body: form, signal: AbortSignal.timeout(30_000) });
    assert.equal(res.status, 200, await res.clone().text());
    assert.equal((await res.json())[0].path, '/tmp/signed/up.txt');
    assert.equal((await nativeRead('/tmp/signed/up.txt')).toString(), 'signed upload');

    const down = await sbx.downloadUrl('/tmp/signed/up.txt');
    const got = await fetch(down, { signal: AbortSignal.timeout(30_000) });
    assert.equal(got.status, 200);
    assert.equal(await got.text(), 'signed upload');

    // The signature is bound to the path: reusing it for another file is refused.
    const other = new URL(down);
    other.searchParams.set('path', '/etc/shadow');
    assert.equal((await fetch(other, { signal: AbortSignal.timeout(30_000) })).status, 401);
    // And to the operation: a download URL can't upload.
    assert.equal((await fetch(down, { method: 'POST', body: form, signal: AbortSignal.timeout(30_000) })).status, 401);
  });

  it('expiring signatures, with a user', async () => {
    await sbx.files.write('/root/r.txt', 'for root', { user: 'root' });
    const down = await sbx.downloadUrl('r.txt', { user: 'root', useSignatureExpiration: 60 });
    assert.match(down, /signature_expiration=\d+/);
    const res = await fetch(down, { signal: AbortSignal.timeout(30_000) });
    assert.equal(res.status, 200);
    assert.equal(await res.text(), 'for root');

    // Pushing the expiry out breaks the signature.
    const tampered = new URL(down);
    tampered.searchParams.set('signature_expiration', String(Number(tampered.searchParams.get('signature_expiration')) + 3600));
    assert.equal((await fetch(tampered, { signal: AbortSignal.timeout(30_000) })).status, 401);
  });
});

describe('isRunning', () => {
  it('true while running, false after kill', async () => {
    const other = await Sandbox.create();
    try {
      assert.equal(await other.isRunning(), true);
      await other.files.write('/tmp/x', 'x');
      const down = await other.downloadUrl('/tmp/x');
      await other.kill();
      assert.equal(await other.isRunning(), false);
      // Its files answer as a gone sandbox; its signed URLs stop working.
      await assert.rejects(other.files.read('/tmp/x'));
      assert.equal((await fetch(down, { signal: AbortSignal.timeout(30_000) })).status, 401);
    } finally {
      await other.kill().catch(() => {});
    }
  });
});
