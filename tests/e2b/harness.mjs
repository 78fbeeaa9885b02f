// Starts a real Airlock server (the built binary) on a free loopback port with its own data dir,
// and points the unmodified E2B SDKs at it with the three documented environment variables.
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, existsSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const ADMIN_KEY = 'e2b_' + 'a1'.repeat(20);
/**
 * The key the SDKs and the tests use: the bootstrap admin key, or with AIRLOCK_E2B_AS_TEAM=1 a key
 * of a fresh team made by startServer (every scope but the instance admin's), so the suite also
 * proves the SDKs work for an ordinary team. A live binding: importers see the key in use.
 */
export let API_KEY = ADMIN_KEY;

function serverDll() {
  const candidates = ['Debug', 'Release']
    .map((c) => path.join(repo, 'src/Airlock.Server/bin', c, 'net10.0/airlock-server.dll'))
    .filter(existsSync)
    .sort((a, b) => statSync(b).mtimeMs - statSync(a).mtimeMs);
  if (candidates.length === 0) throw new Error('build the server first (dotnet build)');
  return candidates[0];
}

/**
 * Starts a server; resolves once it listens and the templates are ready (`base` unless told
 * otherwise, e.g. `templates: ['base', 'code-interpreter-v1']` for the code interpreter).
 */
export async function startServer({ env = {}, templates = ['base'] } = {}) {
  const data = mkdtempSync(path.join(tmpdir(), 'al-e2b-'));
  const child = spawn('dotnet', [serverDll()], {
    env: {
      ...process.env,
      AIRLOCK_URLS: 'http://127.0.0.1:0',
      AIRLOCK_DATA: data,
      AIRLOCK_TEMPLATES: process.env.AIRLOCK_TEMPLATES ?? path.join(repo, 'data/templates'),
      AIRLOCK_BOOTSTRAP_API_KEY: ADMIN_KEY,
      ...env,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const log = [];
  const url = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('server did not start:\n' + log.join(''))), 60_000);
    const onData = (chunk) => {
      log.push(chunk.toString());
      const m = /Now listening on: (http:\/\/\S+)/.exec(chunk.toString());
      if (m) { clearTimeout(timer); resolve(m[1]); }
    };
    child.stdout.on('data', onData);
    child.stderr.on('data', (c) => log.push(c.toString()));
    child.on('exit', (code) => reject(new Error(`server exited with ${code}:\n` + log.join(''))));
  });
  child.stdout.on('data', (c) => log.push(c.toString()));

  const deadline = Date.now() + 600_000;
  for (;;) {
    const health = await (await fetch(url + '/health')).json();
    const states = templates.map((name) => [name, health.templates?.find((t) => t.name === name)]);
    const failed = states.find(([, t]) => t?.status === 'failed');
    if (failed) throw new Error(`${failed[0]} template failed: ` + failed[1].error);
    if (states.every(([, t]) => t?.status === 'ready')) break;
    if (Date.now() > deadline) throw new Error(`templates not ready: ${templates.join(', ')}`);
    await new Promise((r) => setTimeout(r, 500));
  }

  API_KEY = ADMIN_KEY;
  if (process.env.AIRLOCK_E2B_AS_TEAM === '1') {
    const admin = { Authorization: `Bearer ${ADMIN_KEY}`, 'content-type': 'application/json' };
    const team = await (await fetch(url + '/v1/teams', { method: 'POST', headers: admin, body: JSON.stringify({ name: 'e2b-suite' }) })).json();
    // Generous limits, so the suite's own pace and sandbox count are not what it measures.
    await fetch(`${url}/v1/teams/${team.id}/quota`, { method: 'PUT', headers: admin, body: JSON.stringify({ plan: 'enterprise' }) });
    const scopes = ['sandboxes:read', 'sandboxes:write', 'templates:read', 'usage:read'];
    const key = await (await fetch(`${url}/v1/teams/${team.id}/api-keys`, { method: 'POST', headers: admin, body: JSON.stringify({ name: 'e2b-suite', scopes }) })).json();
    API_KEY = key.key;
  }

  // The three variables of docs/e2b.md.
  process.env.E2B_API_KEY = API_KEY;
  process.env.E2B_API_URL = url;
  process.env.E2B_SANDBOX_URL = url;
  delete process.env.E2B_DEBUG;

  return {
    url,
    log: () => log.join(''),
    async stop() {
      // Sandboxes outlive a server by design: kill them first.
      try {
        const res = await fetch(url + '/v1/sandboxes', { headers: { Authorization: `Bearer ${API_KEY}` } });
        for (const s of await res.json()) {
          await fetch(`${url}/v1/sandboxes/${s.id}`, { method: 'DELETE', headers: { Authorization: `Bearer ${API_KEY}` } });
        }
      } catch { /* best effort */ }
      child.kill('SIGTERM');
      await new Promise((r) => { child.once('exit', r); setTimeout(r, 5000); });
      rmSync(data, { recursive: true, force: true });
    },
  };
}

/** Bounds an await, so a hang fails its test with a clear message instead of the runner's 120 s. */
export function within(ms, promise) {
  let timer;
  const limit = new Promise((_, reject) => { timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms`)), ms); });
  return Promise.race([promise, limit]).finally(() => clearTimeout(timer));
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
