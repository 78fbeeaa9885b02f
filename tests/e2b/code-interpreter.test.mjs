// The code interpreter (spec §4, §5.4) through the unmodified @e2b/code-interpreter 2.8.0: the
// SDK creates `code-interpreter-v1` and talks NDJSON to /execute on port 49999, which Airlock
// serves with one interpreter process per context. Raw HTTP checks cover what the SDK hides
// (the token on /execute, the line types, 404s).
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { Sandbox } from '@e2b/code-interpreter';
import { NotFoundError } from 'e2b';
import { startServer, within } from './harness.mjs';

let server;
let sbx;
before(async () => {
  server = await startServer({ templates: ['base', 'code-interpreter-v1'] });
  sbx = await within(60_000, Sandbox.create());
});
after(async () => {
  await sbx?.kill().catch(() => {});
  await server?.stop();
});

/** POST /execute by hand; returns the status and the parsed NDJSON lines. */
async function rawExecute(body, { token = sbx.envdAccessToken } = {}) {
  const headers = { 'content-type': 'application/json', 'E2b-Sandbox-Id': sbx.sandboxId, 'E2b-Sandbox-Port': '49999' };
  if (token) headers['X-Access-Token'] = token;
  const res = await within(30_000, fetch(`${server.url}/execute`, { method: 'POST', headers, body: JSON.stringify(body) }));
  const text = await within(30_000, res.text());
  return { status: res.status, text, lines: res.ok ? text.split('\n').filter(Boolean).map((l) => JSON.parse(l)) : [] };
}

describe('runCode', () => {
  it('sends prints to logs.stdout and stderr to logs.stderr, and the last expression as the main result', async () => {
    const execution = await within(30_000, sbx.runCode('import sys\nprint("hello")\nprint("oops", file=sys.stderr)\n6 * 7'));
    assert.equal(execution.error, undefined);
    assert.equal(execution.logs.stdout.join(''), 'hello\n');
    assert.equal(execution.logs.stderr.join(''), 'oops\n');
    assert.equal(execution.results.length, 1);
    assert.equal(execution.results[0].text, '42');
    assert.equal(execution.results[0].isMainResult, true);
    assert.equal(execution.text, '42');
  });

  it('keeps state between executions of the default context', async () => {
    await within(30_000, sbx.runCode('x = 1'));
    const execution = await within(30_000, sbx.runCode('x + 1'));
    assert.equal(execution.text, '2');
    assert.ok(execution.executionCount >= 2, `executionCount ${execution.executionCount}`);
  });

  it('reports an exception as execution.error with name, value and traceback, and the context survives', async () => {
    const execution = await within(30_000, sbx.runCode('def f():\n    raise ValueError("bad thing")\nf()'));
    assert.equal(execution.error.name, 'ValueError');
    assert.equal(execution.error.value, 'bad thing');
    assert.match(execution.error.traceback, /raise ValueError\("bad thing"\)/);
    assert.match(execution.error.traceback, /line 3/);
    assert.equal(execution.results.length, 0);
    // E2B strips the quotes of a string's repr, and only those.
    const after = await within(30_000, sbx.runCode('"still alive"'));
    assert.equal(after.text, 'still alive');
    assert.equal((await within(30_000, sbx.runCode('["q"]'))).text, "['q']");
  });

  it('reports syntax errors and names that do not exist', async () => {
    const syntax = await within(30_000, sbx.runCode('def f(:'));
    assert.equal(syntax.error.name, 'SyntaxError');
    const missing = await within(30_000, sbx.runCode('never_defined_name'));
    assert.equal(missing.error.name, 'NameError');
    assert.match(missing.error.value, /never_defined_name/);
  });

  it('returns a matplotlib figure as a PNG result', async () => {
    const execution = await within(60_000, sbx.runCode(
      'import matplotlib.pyplot as plt\nplt.plot([1, 2, 3], [4, 1, 9])\nplt.title("t")\nplt.show()\nprint("drawn")'));
    assert.equal(execution.error, undefined, execution.error?.traceback);
    const png = execution.results.find((r) => r.png);
    assert.ok(png, `no png result in ${JSON.stringify(execution.results.map((r) => r.formats()))}`);
    const bytes = Buffer.from(png.png, 'base64');
    assert.deepEqual([...bytes.subarray(0, 8)], [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);
    assert.ok(bytes.length > 1000);
    assert.equal(execution.logs.stdout.join(''), 'drawn\n');
  });

  it('returns a DataFrame with text and html', async () => {
    const execution = await within(60_000, sbx.runCode('import pandas as pd\npd.DataFrame({"a": [1, 2], "b": [3, 4]})'));
    assert.equal(execution.error, undefined, execution.error?.traceback);
    assert.match(execution.results[0].html, /<table/);
    assert.match(execution.results[0].text, /a\s+b/);
  });

  it('streams stdout to onStdout while the cell runs, not only at its end', async () => {
    const seen = [];
    const started = Date.now();
    const execution = await within(30_000, sbx.runCode(
      'import time\nprint("first", flush=True)\ntime.sleep(1.5)\nprint("second")',
      { onStdout: (m) => seen.push({ line: m.line, at: Date.now() - started }) }));
    assert.equal(seen.map((s) => s.line).join(''), 'first\nsecond\n');
    const first = seen.find((s) => s.line.includes('first'));
    const second = seen.find((s) => s.line.includes('second'));
    assert.ok(second.at - first.at >= 1000, `first at ${first.at} ms, second at ${second.at} ms`);
    assert.equal(execution.logs.stdout.join(''), 'first\nsecond\n');
  });

  it('keeps subprocess output and input() from breaking the protocol', async () => {
    const execution = await within(30_000, sbx.runCode(
      'import os, subprocess\nos.system("echo from-shell")\nsubprocess.run(["cat"])\nprint("\\x1enot-a-frame")\ninput()'));
    assert.equal(execution.logs.stdout.join(''), 'from-shell\n\x1enot-a-frame\n');
    assert.equal(execution.error.name, 'EOFError');
    const next = await within(30_000, sbx.runCode('1 + 1'));
    assert.equal(next.text, '2');
  });

  it('applies envs to one execution only', async () => {
    const withEnv = await within(30_000, sbx.runCode('import os\nos.environ.get("CI_ONLY")', { envs: { CI_ONLY: 'yes' } }));
    assert.equal(withEnv.text, 'yes');
    const without = await within(30_000, sbx.runCode('import os\nos.environ.get("CI_ONLY")'));
    assert.equal(without.results.length, 0);
  });

  it('interrupts a cell when the client times out, and the context stays usable', async () => {
    await within(30_000, sbx.runCode('y = 5'));
    await assert.rejects(within(30_000, sbx.runCode('import time\ntime.sleep(30)', { timeoutMs: 1000 })), /timed out/i);
    const started = Date.now();
    const next = await within(20_000, sbx.runCode('y'));
    assert.equal(next.text, '5');
    assert.ok(Date.now() - started < 10_000, 'the interrupted cell held the context');
  });
});

describe('contexts', () => {
  it('creates, lists, isolates, restarts and removes contexts', async () => {
    const a = await within(30_000, sbx.createCodeContext({ cwd: '/tmp' }));
    const b = await within(30_000, sbx.createCodeContext({ language: 'python' }));
    assert.equal(a.language, 'python');
    assert.equal(a.cwd, '/tmp');
    assert.notEqual(a.id, b.id);

    const ids = (await within(10_000, sbx.listCodeContexts())).map((c) => c.id);
    assert.ok(ids.includes(a.id) && ids.includes(b.id), JSON.stringify(ids));

    assert.equal((await within(30_000, sbx.runCode('import os\nos.getcwd()', { context: a }))).text, '/tmp');
    await within(30_000, sbx.runCode('z = "in a"', { context: a }));
    assert.equal((await within(30_000, sbx.runCode('z', { context: a }))).text, 'in a');
    assert.equal((await within(30_000, sbx.runCode('z', { context: b }))).error?.name, 'NameError');

    await within(30_000, sbx.restartCodeContext(a));
    assert.equal((await within(30_000, sbx.runCode('z', { context: a }))).error?.name, 'NameError');

    await within(10_000, sbx.removeCodeContext(a));
    const left = (await within(10_000, sbx.listCodeContexts())).map((c) => c.id);
    assert.ok(!left.includes(a.id) && left.includes(b.id));
    await assert.rejects(within(10_000, sbx.runCode('1', { context: a })), NotFoundError);
    await assert.rejects(within(10_000, sbx.removeCodeContext(a)), NotFoundError);
    await assert.rejects(within(10_000, sbx.restartCodeContext('no-such-context')), NotFoundError);
  });

  it('refuses context and language together (the SDK) and an unsupported language (the server)', async () => {
    const ctx = await within(30_000, sbx.createCodeContext());
    await assert.rejects(() => sbx.runCode('1', { context: ctx, language: 'python' }), /context or language/);
    const raw = await rawExecute({ code: '1', language: 'cobol' });
    assert.equal(raw.status, 400);
  });

  it('a context whose interpreter dies reports it and starts fresh on the next execution', async () => {
    const ctx = await within(30_000, sbx.createCodeContext());
    await within(30_000, sbx.runCode('w = 1', { context: ctx }));
    const raw = await rawExecute({ code: 'import os\nos._exit(3)', context_id: ctx.id });
    assert.equal(raw.status, 200);
    assert.deepEqual(raw.lines.slice(-2).map((l) => l.type), ['error', 'unexpected_end_of_execution']);
    const next = await within(30_000, sbx.runCode('w', { context: ctx }));
    assert.equal(next.error?.name, 'NameError');
  });
});

describe('wire', () => {
  it('streams NDJSON lines with timestamps and ends with end_of_execution', async () => {
    const { status, lines } = await rawExecute({ code: 'print("a")\n3' });
    assert.equal(status, 200);
    const types = lines.map((l) => l.type);
    assert.equal(types.at(-1), 'end_of_execution');
    assert.ok(types.includes('number_of_executions'));
    const stdout = lines.find((l) => l.type === 'stdout');
    assert.equal(stdout.text, 'a\n');
    assert.ok(!Number.isNaN(Date.parse(stdout.timestamp)), stdout.timestamp);
    assert.deepEqual(lines.find((l) => l.type === 'result'), { type: 'result', is_main_result: true, text: '3' });
  });

  it('refuses /execute without the sandbox access token', async () => {
    assert.equal((await rawExecute({ code: '1' }, { token: null })).status, 401);
    assert.equal((await rawExecute({ code: '1' }, { token: 'wrong' })).status, 401);
  });

  it('answers 502 for a sandbox that does not exist', async () => {
    const res = await within(10_000, fetch(`${server.url}/contexts`, { headers: { 'E2b-Sandbox-Id': 'nosuchsandbox', 'E2b-Sandbox-Port': '49999' } }));
    assert.equal(res.status, 502);
  });
});
