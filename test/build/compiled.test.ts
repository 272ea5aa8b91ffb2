// The compiled JavaScript under dist/ (npm run build; npm ci builds it through prepare) runs what users and
// schedulers run, and src/bin.mjs runs it only when it was built from the sources as they are: otherwise tsx.
import { test } from 'node:test';
import type { TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, unlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { distIsCurrent, takeStamp, writeStamp } from '../../src/build-stamp.mjs';

const ROOT = join(import.meta.dirname, '..', '..');

function node(
  args: string[],
  options: { cwd?: string; env?: NodeJS.ProcessEnv } = {},
): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      args,
      { cwd: options.cwd ?? ROOT, env: options.env ?? process.env, timeout: 60_000 },
      (error, stdout, stderr) => {
        const code = error === null ? 0 : typeof error.code === 'number' ? error.code : 1;
        resolve({ code, stdout, stderr });
      },
    );
  });
}

function tempDir(t: TestContext, prefix: string): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

const NOT_BUILT = 'dist/ is not built from these sources (npm run build; npm ci does it)';

void test('the compiled CLI runs: help, agent help, and a one-job run whose local agent and worker are compiled', async (t) => {
  if (!distIsCurrent(ROOT)) return t.skip(NOT_BUILT);
  const help = await node([join(ROOT, 'src', 'bin.mjs'), '--help']);
  assert.equal(help.code, 0, help.stderr);
  assert.match(help.stdout, /Usage: pe-arena/);
  const agentHelp = await node([join(ROOT, 'dist', 'src', 'cli.js'), 'agent', '--help']);
  assert.equal(agentHelp.code, 0, agentHelp.stderr);
  assert.match(agentHelp.stdout, /--coordinator <address>/);

  // Real training on the cpu backend: the presets file, the local launcher's agent command and the training
  // worker's bootstrap all resolve from dist/.
  const dir = tempDir(t, 'pe-arena-compiled-');
  const experiment = join(dir, 'compiled.json');
  writeFileSync(
    experiment,
    JSON.stringify({
      name: 'compiled',
      encodings: ['rope'],
      tasks: [{ name: 'addition', params: { minDigits: 1, maxDigits: 2 } }],
      seeds: [1],
      preset: 'tiny',
      model: { layers: 1, dModel: 32, heads: 2, ffnDim: 64, maxLen: 32 },
      training: { steps: 4, batchSize: 8, learningRate: 0.003 },
      evaluation: { samples: 8 },
      cluster: { heartbeatIntervalMs: 250, failureTimeoutMs: 4000, checkpointEvery: 2, maxAttempts: 1 },
    }),
  );
  const args = ['run', experiment, '--runs-dir', join(dir, 'runs'), '--agents', '1', '--backend', 'cpu'];
  const run = await node([join(ROOT, 'src', 'bin.mjs'), ...args, '--view', 'plain', '--no-report']);
  assert.equal(run.code, 0, `${run.stdout}\n${run.stderr}`);
  assert.match(run.stdout, /1 done, 0 failed/);
});

void test('compiled, agents and training workers are started from dist/ without tsx', async (t) => {
  if (!distIsCurrent(ROOT)) return t.skip(NOT_BUILT);
  const script = `
    const p = await import(${JSON.stringify(join(ROOT, 'dist', 'protocol', 'code-paths.js'))});
    console.log(JSON.stringify({
      compiled: p.COMPILED,
      root: p.PACKAGE_ROOT,
      agent: p.nodeArgsFor('src/cli.ts'),
      worker: p.workerBootstrap(p.codeUrl('node-agent/training-worker.ts')),
      tsWorkload: p.workerBootstrap(p.codeUrl('node-agent/training-worker.ts'), true),
    }));`;
  const out = await node(['--input-type=module', '-e', script]);
  assert.equal(out.code, 0, out.stderr);
  const paths = JSON.parse(out.stdout) as Record<string, unknown>;
  assert.equal(paths['compiled'], true);
  assert.equal(paths['root'], ROOT);
  assert.deepEqual(paths['agent'], [join(ROOT, 'dist', 'src', 'cli.js')]);
  assert.doesNotMatch(String(paths['worker']), /tsx/);
  assert.match(String(paths['worker']), /dist\/node-agent\/training-worker\.js/);
  // A .ts workload module (the tests' fake one) still loads: tsx is registered for it.
  assert.match(String(paths['tsWorkload']), /tsx/);
});

/** A project with bin.mjs and build-stamp.mjs, sources that say which copy ran, and a dist/ that says "dist". */
function fakeProject(t: TestContext): string {
  const dir = tempDir(t, 'pe-arena-stamp-');
  const write = (file: string, text: string): void => {
    mkdirSync(dirname(join(dir, file)), { recursive: true });
    writeFileSync(join(dir, file), text);
  };
  for (const file of ['src/bin.mjs', 'src/build-stamp.mjs']) write(file, readFileSync(join(ROOT, file), 'utf8'));
  symlinkSync(join(ROOT, 'node_modules'), join(dir, 'node_modules'));
  write('package.json', '{ "type": "module" }\n');
  write('tsconfig.json', '{}\n');
  write('tsconfig.build.json', '{}\n');
  // Type annotations: only tsx can run these, plain node cannot.
  write('src/cli.ts', "const ran: string = 'sources';\nconsole.log(ran);\n");
  write('node-agent/walltime.ts', "const armed: string = 'walltime sources';\nconsole.log(armed);\n");
  write('protocol/ids.ts', 'export const id: number = 1;\n');
  mkdirSync(join(dir, 'coordinator'));
  write('dist/src/cli.js', "console.log('dist');\n");
  write('dist/node-agent/walltime.js', "console.log('walltime dist');\n");
  writeStamp(dir, takeStamp(dir));
  return dir;
}

void test('bin.mjs runs dist/ while its stamp matches the sources, else the sources through tsx', async (t) => {
  const dir = fakeProject(t);
  const bin = async (env: NodeJS.ProcessEnv = {}): Promise<string> => {
    const out = await node([join(dir, 'src', 'bin.mjs')], { cwd: dir, env: { ...process.env, ...env } });
    assert.equal(out.code, 0, out.stderr);
    return out.stdout.trim();
  };
  assert.equal(await bin(), 'dist');
  // Job scripts ask for the walltime drain first, from the same copy as the CLI.
  assert.equal(await bin({ PE_ARENA_WALLTIME_PRELOAD: '1' }), 'walltime dist\ndist');

  const cli = join(dir, 'src', 'cli.ts');
  const original = readFileSync(cli, 'utf8');
  writeFileSync(cli, `${original}// edited\n`);
  assert.equal(await bin(), 'sources', 'an edited source is never run as its stale compiled copy');
  assert.equal(await bin({ PE_ARENA_WALLTIME_PRELOAD: '1' }), 'walltime sources\nsources');
  writeFileSync(cli, original);
  assert.equal(await bin(), 'dist', 'the same bytes again: the build is current again');

  unlinkSync(join(dir, 'protocol', 'ids.ts'));
  assert.equal(await bin(), 'sources', 'a source removed since the build');
  writeFileSync(join(dir, 'protocol', 'ids.ts'), 'export const id: number = 1;\n');
  writeFileSync(join(dir, 'tsconfig.build.json'), '{ "compilerOptions": {} }\n');
  assert.equal(await bin(), 'sources', 'compiler options changed since the build');

  rmSync(join(dir, 'dist'), { recursive: true });
  assert.equal(await bin(), 'sources', 'no dist/ at all');
});
