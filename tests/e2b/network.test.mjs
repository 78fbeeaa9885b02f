// Port exposure and network updates through the unmodified E2B SDK (docs/networking.md).
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import { Sandbox } from 'e2b';
import { startServer, within, sleep, API_KEY } from './harness.mjs';

let server;
before(async () => { server = await startServer(); });
after(async () => { await server?.stop(); });

/** GET through the server with an explicit Host header (node's fetch cannot set Host). */
function get(host, path = '/', headers = {}) {
  const url = new URL(server.url);
  return new Promise((resolve, reject) => {
    const req = http.request({ host: url.hostname, port: url.port, path, headers: { Host: host, ...headers } }, (res) => {
      let body = '';
      res.on('data', (c) => { body += c; });
      res.on('end', () => resolve({ status: res.statusCode, body }));
    });
    req.on('error', reject);
    req.end();
  });
}

/** The sandbox's network as the native API reports it. */
async function nativeNetwork(id) {
  const res = await within(10_000, fetch(`${server.url}/v1/sandboxes/${id}`, { headers: { Authorization: `Bearer ${API_KEY}` } }));
  assert.equal(res.status, 200);
  return (await res.json()).network;
}

async function waitForPort(sbx, port) {
  for (let i = 0; i < 50; i++) {
    const r = await within(10_000, sbx.commands.run(`python3 -c "import socket; socket.create_connection(('127.0.0.1', ${port}), 1)" && echo up || true`));
    if (r.stdout.includes('up')) return;
    await sleep(100);
  }
  throw new Error(`port ${port} never opened`);
}

describe('port exposure', () => {
  it('serves a dev server inside the sandbox at getHost(port)', async () => {
    const sbx = await within(30_000, Sandbox.create());
    try {
      await within(10_000, sbx.commands.run('mkdir -p /tmp/site && echo hello-e2b > /tmp/site/index.html'));
      await within(10_000, sbx.commands.run('cd /tmp/site && python3 -m http.server 3000', { background: true }));
      await waitForPort(sbx, 3000);
      const host = sbx.getHost(3000);
      assert.match(host, new RegExp(`^3000-${sbx.sandboxId}\\.`));
      const ok = await within(10_000, get(host, '/index.html'));
      assert.equal(ok.status, 200);
      assert.equal(ok.body, 'hello-e2b\n');
      const closed = await within(10_000, get(sbx.getHost(3001)));
      assert.equal(closed.status, 502);
      assert.equal(JSON.parse(closed.body).message, 'The sandbox is running but port is not open');
    } finally {
      await within(30_000, Sandbox.kill(sbx.sandboxId)).catch(() => {});
    }
  });

  it('requires the traffic access token when public traffic is off', async () => {
    const sbx = await within(30_000, Sandbox.create({ network: { allowPublicTraffic: false } }));
    try {
      assert.ok(sbx.trafficAccessToken, 'create returns a trafficAccessToken');
      await within(10_000, sbx.commands.run('cd /tmp && python3 -m http.server 3000', { background: true }));
      await waitForPort(sbx, 3000);
      assert.equal((await within(10_000, get(sbx.getHost(3000)))).status, 403);
      // Some token, but not this sandbox's.
      const wrong = sbx.trafficAccessToken.slice(0, -1) + (sbx.trafficAccessToken.endsWith('0') ? '1' : '0');
      const denied = await within(10_000, get(sbx.getHost(3000), '/', { 'e2b-traffic-access-token': wrong }));
      assert.equal(denied.status, 403);
      assert.equal(JSON.parse(denied.body).code, 'traffic_access_token_invalid');
      const ok = await within(10_000, get(sbx.getHost(3000), '/', { 'e2b-traffic-access-token': sbx.trafficAccessToken }));
      assert.equal(ok.status, 200);
    } finally {
      await within(30_000, Sandbox.kill(sbx.sandboxId)).catch(() => {});
    }
  });
});

describe('network', () => {
  it('updateNetwork switches internet on and off', async () => {
    const sbx = await within(30_000, Sandbox.create());
    try {
      const links = async () => (await within(10_000, sbx.commands.run("ip -o link show | awk -F': ' '{print $2}'"))).stdout.trim();
      assert.equal(await links(), 'lo');
      await within(30_000, sbx.updateNetwork({ allowInternetAccess: true, denyOut: ['0.0.0.0/0'], allowOut: ['198.51.100.0/24'] }));
      assert.match(await links(), /eth0/);
      // The rules arrived as given (not only the mode).
      const on = await nativeNetwork(sbx.sandboxId);
      assert.equal(on.mode, 'internet');
      assert.deepEqual(on.allow, ['198.51.100.0/24']);
      assert.deepEqual(on.deny, ['0.0.0.0/0']);
      await within(30_000, sbx.updateNetwork({ allowInternetAccess: false }));
      assert.equal(await links(), 'lo');
      assert.equal((await nativeNetwork(sbx.sandboxId)).mode, 'none');
    } finally {
      await within(30_000, Sandbox.kill(sbx.sandboxId)).catch(() => {});
    }
  });
});
