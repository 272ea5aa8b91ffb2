// `npm run bench -- parallel --only elastic`: a real run (coordinator, local agents, the wasm backend) of one
// data-parallel job on 3 ranks (minRanks 2). At step ~60, kill -9 of rank 1; once the survivors train again, a new
// agent is started by hand and joins. From the job's metrics and the journal:
//   recover_s       the kill -> the first step of the survivors' new generation
//   steps_lost      steps missing from the job's metrics (target 0)
//   steps_repeated  steps that appear twice (target 0)
//   grow_s          the new agent's hello (agent_joined) -> the first step of the generation it joined, in two parts:
//   grow_join_s     hello -> the grown generation formed (the newcomer loads the job, the gang stops at a step)
//   grow_sync_s     formed -> its first step (communicator, step exchange, state broadcast, one step)
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { round3 } from './stats.ts';

const ROOT = join(import.meta.dirname, '..');
const CLI = join(ROOT, 'src', 'bin.mjs');
const JOB = 'rope-addition-s1';
const STEPS = 400;

interface Entry {
  t: number;
  type: string;
  [k: string]: unknown;
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

async function until<T>(what: string, timeoutMs: number, probe: () => T | undefined): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = probe();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`bench elastic: timed out waiting for ${what}`);
    await sleep(50);
  }
}

export interface ElasticFigures {
  recover_s: number;
  steps_lost: number;
  steps_repeated: number;
  grow_s: number;
  grow_join_s: number;
  grow_sync_s: number;
  /** The newcomer process started -> its hello; and its hello -> its spare worker loaded (TensorFlow.js, backend). */
  newcomer_spawn_to_hello_s: number;
  newcomer_hello_to_spare_ready_s: number | null;
  generations: number;
}

export async function elastic(): Promise<ElasticFigures> {
  const dir = mkdtempSync(join(tmpdir(), 'pe-arena-elastic-'));
  const children: ChildProcess[] = [];
  try {
    const experiment = {
      name: 'bench-elastic',
      encodings: ['rope'],
      tasks: [{ name: 'addition', params: { minDigits: 1, maxDigits: 3 } }],
      seeds: [1],
      preset: 'tiny',
      training: { steps: STEPS, batchSize: 48, learningRate: 0.003, dataParallel: { ranks: 3, minRanks: 2 } },
      evaluation: { samples: 8 },
      cluster: { heartbeatIntervalMs: 500, failureTimeoutMs: 5000, suspectAfterMs: 2000, checkpointEvery: 100 },
    };
    const file = join(dir, 'experiment.json');
    writeFileSync(file, JSON.stringify(experiment));
    const runsDir = join(dir, 'runs');
    const run = spawn(
      process.execPath,
      [CLI, 'run', file, '--agents', '3', '--backend', 'wasm', '--view', 'off', '--no-report', '--runs-dir', runsDir],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    children.push(run);
    let output = '';
    run.stdout?.on('data', (b: Buffer) => (output += b.toString()));
    run.stderr?.on('data', (b: Buffer) => (output += b.toString()));
    const exited = new Promise<number>((resolve) => run.once('exit', (code) => resolve(code ?? 1)));
    const runDir = await until('the run directory', 30_000, () => {
      const d = existsSync(runsDir) ? readdirSync(runsDir)[0] : undefined;
      return d === undefined ? undefined : join(runsDir, d);
    });
    const address = await until(
      'the coordinator address',
      30_000,
      () => /coordinator at (tcp:\/\/\S+)/.exec(output)?.[1],
    );
    const journal = (): Entry[] =>
      existsSync(join(runDir, 'journal.jsonl'))
        ? readFileSync(join(runDir, 'journal.jsonl'), 'utf8')
            .split('\n')
            .filter((l) => l.trim() !== '')
            .map((l) => JSON.parse(l) as Entry)
        : [];
    const points = (): { step: number; time: number }[] => {
      const f = join(runDir, 'jobs', JOB, 'metrics.jsonl');
      return existsSync(f)
        ? readFileSync(f, 'utf8')
            .split('\n')
            .filter((l) => l.trim() !== '')
            .map((l) => JSON.parse(l) as { step: number; time: number })
        : [];
    };
    const full = await until('3 ranks training past step 60', 240_000, () => {
      const g = journal().find((e) => e.type === 'gang_formed' && (e['members'] as string[]).length === 3);
      return g !== undefined && points().some((p) => p.step > 60) ? g : undefined;
    });
    const victim = (full['members'] as string[])[1] as string;
    const joined = journal().find((e) => e.type === 'agent_joined' && e['agentId'] === victim);
    const pid = joined?.['pid'] as number;
    const killedAt = Date.now();
    process.kill(pid, 'SIGKILL');
    // The survivors' first step is the first of the generation formed after the kill (a step applied just after the
    // kill may still have been summed with the victim's gradients).
    const reformed = await until('the survivors in a new generation', 60_000, () =>
      journal().find((e) => e.type === 'gang_formed' && e['t'] > killedAt),
    );
    const firstAfter = await until('a step of the survivors', 60_000, () => points().find((p) => p.time > reformed.t));
    const recover = (firstAfter.time - killedAt) / 1000;

    // A new agent, started by hand as a replacement would be.
    const newcomerLog = join(dir, 'newcomer.log');
    const spawnedAt = Date.now();
    const agent = spawn(
      process.execPath,
      [CLI, 'agent', '--coordinator', address, '--backend', 'wasm', '--log-file', newcomerLog],
      { stdio: 'ignore' },
    );
    children.push(agent);
    const grown = await until('the new agent in a generation', 120_000, () =>
      journal().find((e) => e.type === 'gang_formed' && e['t'] > killedAt && (e['members'] as string[]).length === 3),
    );
    const newcomer = (grown['members'] as string[]).find((m) => !(full['members'] as string[]).includes(m));
    const hello = journal().find((e) => e.type === 'agent_joined' && e['agentId'] === newcomer);
    const firstInGang = await until('a step of the grown gang', 60_000, () => points().find((p) => p.time > grown.t));
    // The newcomer's own timeline, from its log: when its spare worker had TensorFlow.js loaded.
    const logged = (pattern: RegExp): number | undefined => {
      const line = readFileSync(newcomerLog, 'utf8')
        .split('\n')
        .find((l) => pattern.test(l));
      return line === undefined ? undefined : (JSON.parse(line) as { time: number }).time;
    };
    const spareReady = logged(/spare worker ready in/);
    const code = await Promise.race([exited, sleep(300_000).then(() => -1)]);
    if (code !== 0) throw new Error(`bench elastic: the run exited ${code}\n${output.slice(-2000)}`);
    const steps = points().map((p) => p.step);
    const seen = new Map<number, number>();
    for (const s of steps) seen.set(s, (seen.get(s) ?? 0) + 1);
    let lost = 0;
    for (let s = 1; s <= STEPS; s++) if (!seen.has(s)) lost++;
    const repeated = [...seen.values()].filter((n) => n > 1).length;
    return {
      recover_s: round3(recover),
      steps_lost: lost,
      steps_repeated: repeated,
      grow_s: round3((firstInGang.time - (hello?.t ?? grown.t)) / 1000),
      grow_join_s: round3((grown.t - (hello?.t ?? grown.t)) / 1000),
      grow_sync_s: round3((firstInGang.time - grown.t) / 1000),
      newcomer_spawn_to_hello_s: round3(((hello?.t ?? spawnedAt) - spawnedAt) / 1000),
      newcomer_hello_to_spare_ready_s: spareReady === undefined ? null : round3((spareReady - (hello?.t ?? 0)) / 1000),
      generations: journal().filter((e) => e.type === 'gang_formed').length,
    };
  } finally {
    for (const c of children) c.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  }
}
