// End-to-end helpers: spawn the real CLI, poll the run directory (journal) with bounded waits, clean up processes.
import { spawn } from 'node:child_process';
import type { TestContext } from 'node:test';
import type { ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { StampedEntry } from '../../coordinator/journal.ts';
import { withDeadline } from '../../protocol/deadline.ts';

export const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
export const cliPath = join(repoRoot, 'src', 'cli.ts');
/** A light workload (no TensorFlow.js) whose jobs take task.params.perStepMs per step. */
export const fakeWorkload = join(repoRoot, 'test', 'e2e', 'fixtures', 'slow-workload.ts');

export interface Spawned {
  child: ChildProcess;
  output: () => string;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

const spawned = new Set<ChildProcess>();

export function spawnCli(args: string[], options: { cwd?: string; env?: Record<string, string> } = {}): Spawned {
  const child = spawn(process.execPath, ['--import', 'tsx', cliPath, ...args], {
    cwd: options.cwd ?? repoRoot,
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, FORCE_COLOR: '0', ...options.env },
  });
  spawned.add(child);
  let out = '';
  child.stdout?.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr?.on('data', (d: Buffer) => (out += d.toString()));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((r) =>
    child.on('exit', (code, signal) => {
      spawned.delete(child);
      r({ code, signal });
    }),
  );
  return { child, output: () => out, exited };
}

/** Kill everything these tests started (the local launcher's children die with their coordinator). */
export async function killAll(): Promise<void> {
  const all = [...spawned];
  for (const c of all) c.kill('SIGKILL');
  await Promise.all(
    all.map(
      (c) => new Promise<void>((r) => (c.exitCode !== null || c.signalCode !== null ? r() : c.once('exit', () => r()))),
    ),
  );
}

export function killPid(pid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(pid, signal);
  } catch {
    // Already gone.
  }
}

/** Poll until check() returns a value (not undefined/false), at most timeoutMs; fails naming what it waited for. */
export async function waitFor<T>(
  what: string,
  timeoutMs: number,
  check: () => T | undefined | false,
  context: () => string = () => '',
  pollMs = 150,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    let v: T | undefined | false;
    try {
      v = check();
    } catch {
      v = undefined;
    }
    if (v !== undefined && v !== false) return v;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}\n${context()}`);
    await new Promise((r) => setTimeout(r, pollMs));
  }
}

export function tempRunsDir(): { dir: string; cleanup: () => void } {
  const dir = mkdtempSync(join(tmpdir(), 'pe-arena-e2e-'));
  // E2E_KEEP=1 keeps the run directories for a post-mortem.
  return {
    dir,
    cleanup: () =>
      process.env['E2E_KEEP'] ? console.error(`kept ${dir}`) : rmSync(dir, { recursive: true, force: true }),
  };
}

export function writeExperiment(dir: string, experiment: Record<string, unknown>): string {
  const file = join(dir, `${String(experiment['name'])}.json`);
  writeFileSync(file, JSON.stringify(experiment, null, 2));
  return file;
}

/** The one run directory under runsDir, once it exists. */
export function runDirOf(runsDir: string): string | undefined {
  if (!existsSync(runsDir)) return undefined;
  const dirs = readdirSync(runsDir).filter((d) => existsSync(join(runsDir, d, 'journal.jsonl')));
  return dirs.length === 1 ? join(runsDir, dirs[0]!) : undefined;
}

/** The journal as it is now (a torn last line is skipped). */
export function journal(runDir: string): StampedEntry[] {
  const file = join(runDir, 'journal.jsonl');
  if (!existsSync(file)) return [];
  const out: StampedEntry[] = [];
  for (const line of readFileSync(file, 'utf8').split('\n')) {
    if (line.trim() === '') continue;
    try {
      out.push(JSON.parse(line) as StampedEntry);
    } catch {
      // torn last line
    }
  }
  return out;
}

export function entries<T extends StampedEntry['type']>(runDir: string, type: T): Extract<StampedEntry, { type: T }>[] {
  return journal(runDir).filter((e): e is Extract<StampedEntry, { type: T }> => e.type === type);
}

/** pid of an agent from its agent_joined entry. */
export function pidOf(runDir: string, agentId: string): number | undefined {
  return entries(runDir, 'agent_joined').find((e) => e.agentId === agentId)?.pid;
}

export function tail(text: string, n = 40): string {
  return text.split('\n').slice(-n).join('\n');
}

export function logTail(runDir: string | undefined, n = 30): string {
  if (runDir === undefined) return '(no run dir)';
  const f = join(runDir, 'logs', 'coordinator.log');
  return existsSync(f) ? tail(readFileSync(f, 'utf8'), n) : '(no coordinator.log)';
}

/** `pe-arena run` arguments for `n` local agents training for real on the cpu backend, with a plain view. */
export function realAgents(n: number): string[] {
  return ['--agents', String(n), '--view', 'plain', '--plain-every', '5', '--backend', 'cpu'];
}

export const TWO_REAL_AGENTS: readonly string[] = realAgents(2);

/** A tiny real-training experiment: small enough to finish in seconds per job on a laptop CPU. */
export function tinyRealExperiment(
  name: string,
  overrides: Record<string, unknown> = {},
  cluster: Record<string, unknown> = {},
): Record<string, unknown> {
  return {
    name,
    encodings: ['rope', 'nope'],
    tasks: [{ name: 'addition', params: { minDigits: 1, maxDigits: 2 } }],
    seeds: [1, 2],
    preset: 'tiny',
    model: { layers: 1, dModel: 32, heads: 2, ffnDim: 64, maxLen: 32 },
    training: { steps: 12, batchSize: 8, learningRate: 0.003 },
    evaluation: { samples: 8 },
    cluster: {
      heartbeatIntervalMs: 250,
      failureTimeoutMs: 4000,
      suspectAfterMs: 1500,
      watchdogMs: 60000,
      checkpointEvery: 4,
      maxAttempts: 4,
      ...cluster,
    },
    ...overrides,
  };
}

/** Wait for a process to exit, at most timeoutMs (the timer is cleared, so it never holds the test process). */
export async function exitWithin(
  p: Spawned,
  timeoutMs: number,
  context: () => string = () => '',
): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
  return withDeadline(
    p.exited,
    timeoutMs,
    () => new Error(`process did not exit within ${timeoutMs} ms\n${tail(p.output())}\n${context()}`),
  );
}

/** A temporary directory for a test's runs; after the test every process it started is killed and it is removed. */
export function runsFixture(t: TestContext): string {
  const { dir, cleanup } = tempRunsDir();
  t.after(async () => {
    await killAll();
    cleanup();
  });
  return dir;
}

export interface StartedRun {
  run: Spawned;
  runDir: string;
  /** The CLI's output and the coordinator log's tail, for failure messages. */
  ctx: () => string;
}

/** `pe-arena run <file> --runs-dir <dir>/runs <args>`, once its run directory exists. */
export async function startRun(
  dir: string,
  file: string,
  args: readonly string[],
  options: { env?: Record<string, string> } = {},
): Promise<StartedRun> {
  const runsDir = join(dir, 'runs');
  const run = spawnCli(['run', file, '--runs-dir', runsDir, ...args], options);
  const runDir = await waitFor(
    'the run directory',
    30_000,
    () => runDirOf(runsDir),
    () => tail(run.output()),
  );
  return { run, runDir, ctx: () => `${tail(run.output())}\n${logTail(runDir)}` };
}

/** An experiment on the fake workload (test/e2e/fixtures/slow-workload.ts): jobs take perStepMs per step. */
export function fakeWorkloadExperiment(
  name: string,
  overrides: Record<string, unknown>,
  cluster: Record<string, unknown> = {},
): Record<string, unknown> {
  return {
    name,
    seeds: [1],
    evaluation: { samples: 4 },
    ...overrides,
    cluster: {
      heartbeatIntervalMs: 200,
      failureTimeoutMs: 3000,
      suspectAfterMs: 1000,
      watchdogMs: 0,
      checkpointEvery: 20,
      ...cluster,
    },
  };
}
