import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { startTestApp, type TestApp } from './support/test-app';

const ROOT = join(__dirname, '..');

/** The README's Socket.IO snippet, exactly as a reader copies it, pointed at the test server. */
function socketIoSnippet(url: string): string {
  const readme = readFileSync(join(ROOT, 'README.md'), 'utf8');
  const snippet = /```js\n(import \{ io \} from 'socket\.io-client';[\s\S]*?)```/.exec(readme)?.[1];
  if (!snippet) {
    throw new Error('no Socket.IO snippet in README.md');
  }
  return snippet.replace('http://localhost:3000', url.replace('127.0.0.1', 'localhost'));
}

describe('the README', () => {
  let testApp: TestApp;
  let child: ChildProcess | undefined;
  beforeAll(async () => {
    testApp = await startTestApp();
  });
  afterAll(async () => {
    // A snippet that never exits fails the test by its timeout; it must not outlive the suite.
    if (child?.exitCode === null) child.kill('SIGKILL');
    await testApp.close();
  });

  it('has a Socket.IO snippet that streams an answer and then exits by itself', async () => {
    const snippet = spawn(process.execPath, ['--input-type=module', '-e', socketIoSnippet(testApp.url)], {
      cwd: ROOT,
      stdio: 'pipe',
    });
    child = snippet;
    let output = '';
    snippet.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
    snippet.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()));
    const [code] = (await once(snippet, 'exit')) as [number | null];

    expect({ code, acked: output.includes('ok: true'), done: output.includes("type: 'done'") }).toEqual({
      code: 0,
      acked: true,
      done: true,
    });
  }, 20_000);
});
