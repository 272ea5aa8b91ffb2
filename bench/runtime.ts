// `npm run bench -- runtime [detect] [scale] [overhead] [--agents N] [--window-s S] [--rounds R]`: the runtime's numbers.
//   detect_s / recover_s        kill -9 of a busy agent (heartbeats only, default 1 s / 5 s settings, real tiny
//                               model): to the job declared lost, and to that job training again on another agent
//   detect_launcher_s           the same with the local launcher, whose word that the process is gone comes first
//   scale_*                     N simulated lightweight agents (DEALER sockets in a few processes; heartbeat 1 Hz,
//                               metrics 10 Hz) against one coordinator process: its CPU (share of one core), the
//                               heartbeat round-trip p99, and agents declared dead that were not (must be 0)
//   agent_overhead_ratio        tokens/s of a job under an agent vs the same job under `pe-arena train`
// This file is also the simulated-agent process (`--sim-agents`), so the bench stays one file.
import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { PROTOCOL_VERSION } from '../protocol/messages.ts';
import type { AgentId, CoordinatorToAgent, JobId } from '../protocol/messages.ts';
import { metricsMessage } from '../protocol/metric-columns.ts';
import { connectClient } from '../protocol/zmq-transport.ts';
import type { StampedEntry } from '../coordinator/journal.ts';
import { waitFor } from '../test/e2e/helpers.ts';
import { numberFlag, round3 } from './stats.ts';

const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const cli = join(repoRoot, 'src', 'cli.ts');
const fakeWorkload = join(repoRoot, 'test', 'node-agent', 'fixtures', 'fake-workload.ts');
const children = new Set<ChildProcess>();

function start(args: string[], stdout: 'ignore' | 'pipe' = 'ignore'): ChildProcess & { text: () => string } {
  const child = spawn(process.execPath, ['--import', 'tsx', ...args], {
    cwd: repoRoot,
    stdio: ['ignore', stdout, 'pipe'],
  });
  children.add(child);
  let text = '';
  child.stdout?.on('data', (d: Buffer) => (text += d.toString()));
  child.stderr?.on('data', (d: Buffer) => (text += d.toString()));
  child.on('exit', () => children.delete(child));
  return Object.assign(child, { text: () => text });
}

function stopAll(): void {
  for (const c of children) c.kill('SIGKILL');
}

async function exited(child: ChildProcess, timeoutMs: number): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([
    new Promise<void>((r) => child.once('exit', () => r())),
    new Promise<void>((r) => (timer = setTimeout(r, timeoutMs))),
  ]);
  clearTimeout(timer);
  child.kill('SIGKILL');
}

/** Polls check() every pollMs until it returns a value (not undefined/false), as the e2e tests wait. */
function until<T>(what: string, timeoutMs: number, check: () => T | undefined | false, pollMs = 50): Promise<T> {
  return waitFor(`bench: ${what}`, timeoutMs, check, () => '', pollMs);
}

/** A `pe-arena coordinator` of the experiment file `exp` with no launcher on a free port, its run under runsDir. */
function startCoordinator(exp: string, runsDir: string): ChildProcess & { text: () => string } {
  return start([
    cli,
    'coordinator',
    exp,
    '--launcher',
    'none',
    '--bind',
    'tcp://127.0.0.1:0',
    '--runs-dir',
    runsDir,
    '--view',
    'off',
  ]);
}

/** The coordinator's run directory and the address it bound, once its journal says so. */
async function coordinatorReady(runsDir: string): Promise<{ runDir: string; address: string }> {
  const runDir = await until('the run directory', 30_000, () => theRunDir(runsDir));
  const address = await until('the address', 30_000, () => only(runDir, 'coordinator_started')[0]?.address);
  return { runDir, address };
}

function journalOf(runDir: string): StampedEntry[] {
  const f = join(runDir, 'journal.jsonl');
  if (!existsSync(f)) return [];
  return readFileSync(f, 'utf8')
    .split('\n')
    .flatMap((l) => {
      try {
        return l.trim() === '' ? [] : [JSON.parse(l) as StampedEntry];
      } catch {
        return [];
      }
    });
}

function only<T extends StampedEntry['type']>(runDir: string, type: T): Extract<StampedEntry, { type: T }>[] {
  return journalOf(runDir).filter((e): e is Extract<StampedEntry, { type: T }> => e.type === type);
}

function theRunDir(runsDir: string): string | undefined {
  if (!existsSync(runsDir)) return undefined;
  const d = readdirSync(runsDir).find((x) => existsSync(join(runsDir, x, 'journal.jsonl')));
  return d === undefined ? undefined : join(runsDir, d);
}

function cpuTicks(pid: number): number {
  // /proc/<pid>/stat: fields 14 and 15 (utime, stime) in clock ticks; the command name may hold spaces.
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return Number(fields[11]) + Number(fields[12]);
}

// ---------------------------------------------------------------------------------------------
// detect_s, recover_s: heartbeats only (agents started by hand), default cluster settings, real tiny model.

async function benchDetect(dir: string): Promise<Record<string, number | string>> {
  const exp = join(dir, 'detect.json');
  writeFileSync(
    exp,
    JSON.stringify({
      name: 'bench-detect',
      encodings: ['rope'],
      tasks: [{ name: 'addition', params: { minDigits: 1, maxDigits: 3, reverse: true } }],
      seeds: [1],
      preset: 'tiny',
      training: { steps: 400, batchSize: 16, learningRate: 0.003 },
      evaluation: { samples: 10 },
      cluster: { checkpointEvery: 10 },
    }),
  );
  const runsDir = join(dir, 'runs-detect');
  const coord = startCoordinator(exp, runsDir);
  try {
    const { runDir, address } = await coordinatorReady(runsDir);
    const agents = new Map<string, ChildProcess>();
    for (const id of ['bench-a', 'bench-b'])
      agents.set(
        id,
        start([cli, 'agent', '--coordinator', address, '--agent-id', id, '--log-file', join(dir, `${id}.log`)]),
      );
    const assigned = await until('the job to be assigned', 60_000, () => only(runDir, 'job_assigned')[0]);
    await until('a checkpoint', 120_000, () => only(runDir, 'checkpoint_acked').find((e) => e.checkpoint.step > 0));
    const victim = agents.get(assigned.agentId);
    if (!victim?.pid) throw new Error('bench: no victim');
    const t0 = Date.now();
    victim.kill('SIGKILL');
    const lost = await until('the loss', 30_000, () => only(runDir, 'agent_lost')[0], 20);
    const metricsFile = join(runDir, 'jobs', assigned.jobId, 'metrics.jsonl');
    const resumed = await until(
      'training elsewhere',
      60_000,
      () =>
        readFileSync(metricsFile, 'utf8')
          .split('\n')
          .filter((l) => l.includes('"epoch":2'))
          .map((l) => JSON.parse(l) as { step: number; time: number })[0],
      20,
    );
    const resumeStep = only(runDir, 'job_assigned')[1]?.resumeStep ?? 0;
    return {
      detect_s: round3((lost.t - t0) / 1000),
      recover_s: round3((resumed.time - t0) / 1000),
      recover_resumed_from_step: resumeStep,
      recover_first_step: resumed.step,
    };
  } finally {
    coord.kill('SIGTERM');
    await exited(coord, 15_000);
    stopAll();
  }
}

/** The local launcher reports a child's exit at once: detection without waiting for heartbeats. */
async function benchDetectLauncher(dir: string): Promise<Record<string, number>> {
  const exp = join(dir, 'detect-local.json');
  writeFileSync(
    exp,
    JSON.stringify({
      name: 'bench-detect-local',
      encodings: ['rope'],
      tasks: [{ name: 'addition', params: { stepDelayMs: 100 } }],
      seeds: [1],
      training: { steps: 100000 },
      cluster: { checkpointEvery: 20 },
    }),
  );
  const runsDir = join(dir, 'runs-local');
  const run = start([
    cli,
    'run',
    exp,
    '--agents',
    '2',
    '--runs-dir',
    runsDir,
    '--view',
    'off',
    '--workload-module',
    fakeWorkload,
  ]);
  try {
    const runDir = await until('the run directory', 30_000, () => theRunDir(runsDir));
    const assigned = await until('the job to be assigned', 30_000, () => only(runDir, 'job_assigned')[0]);
    await until('a checkpoint', 30_000, () => only(runDir, 'checkpoint_acked')[0]);
    const pid = only(runDir, 'agent_joined').find((e) => e.agentId === assigned.agentId)?.pid;
    if (pid === undefined) throw new Error('bench: no pid');
    const t0 = Date.now();
    process.kill(pid, 'SIGKILL');
    const lost = await until('the loss', 30_000, () => only(runDir, 'agent_lost')[0], 10);
    const again = await until('the reassignment', 30_000, () => only(runDir, 'job_assigned')[1], 10);
    return { detect_launcher_s: round3((lost.t - t0) / 1000), reassign_launcher_s: round3((again.t - t0) / 1000) };
  } finally {
    run.kill('SIGTERM');
    await exited(run, 15_000);
    stopAll();
  }
}

// ---------------------------------------------------------------------------------------------
// Scale: N simulated agents vs one coordinator process.

async function benchScale(dir: string, agents: number, windowS: number): Promise<Record<string, number>> {
  const seeds = Math.ceil(agents / 6);
  const exp = join(dir, 'scale.json');
  writeFileSync(
    exp,
    JSON.stringify({
      name: 'bench-scale',
      tasks: [{ name: 'addition', params: {} }],
      seeds,
      training: { steps: 1_000_000_000 },
      cluster: { heartbeatIntervalMs: 1000, failureTimeoutMs: 5000, checkpointEvery: 1_000_000_000, watchdogMs: 0 },
    }),
  );
  const runsDir = join(dir, 'runs-scale');
  const coord = startCoordinator(exp, runsDir);
  const procs = Math.max(1, Math.min(4, Math.ceil(agents / 250)));
  const sims: (ChildProcess & { text: () => string })[] = [];
  try {
    const { runDir, address } = await coordinatorReady(runsDir);
    // Absolute window, shared with the simulators: they time round trips in it, this process the coordinator's CPU.
    const warmupS = 10 + Math.ceil(agents / 100);
    const windowStart = Date.now() + warmupS * 1000;
    const windowEnd = windowStart + windowS * 1000;
    for (let p = 0; p < procs; p++) {
      const n = Math.floor(agents / procs) + (p < agents % procs ? 1 : 0);
      sims.push(
        start(
          [
            fileURLToPath(import.meta.url),
            '--sim-agents',
            String(n),
            '--prefix',
            `sim${p}`,
            '--coordinator',
            address,
            '--from',
            String(windowStart),
            '--to',
            String(windowEnd),
          ],
          'pipe',
        ),
      );
    }
    await until(`${agents} agents to join`, warmupS * 1000, () => only(runDir, 'agent_joined').length >= agents, 500);
    await new Promise((r) => setTimeout(r, Math.max(0, windowStart - Date.now())));
    const pid = coord.pid!;
    const c0 = cpuTicks(pid);
    const t0 = Date.now();
    await new Promise((r) => setTimeout(r, Math.max(0, windowEnd - Date.now())));
    const c1 = cpuTicks(pid);
    const t1 = Date.now();
    // Deaths up to the window's end are false: every simulated agent was alive until then.
    const falseDeaths = only(runDir, 'agent_lost').filter((e) => e.t <= windowEnd).length;
    await Promise.all(sims.map((s) => exited(s, 30_000)));
    const rtts: number[] = [];
    let heartbeats = 0;
    let metrics = 0;
    for (const s of sims) {
      const line = s
        .text()
        .split('\n')
        .find((l) => l.startsWith('SIM '));
      if (!line) throw new Error(`bench: a simulator reported nothing:\n${s.text().slice(-2000)}`);
      const r = JSON.parse(line.slice(4)) as { rtts: number[]; heartbeats: number; metrics: number };
      rtts.push(...r.rtts);
      heartbeats += r.heartbeats;
      metrics += r.metrics;
    }
    rtts.sort((a, b) => a - b);
    const pct = (q: number): number => rtts[Math.min(rtts.length - 1, Math.floor(q * rtts.length))] ?? Number.NaN;
    return {
      scale_agents: agents,
      scale_window_s: windowS,
      scale_coordinator_cpu: round3((c1 - c0) / 100 / ((t1 - t0) / 1000)),
      scale_heartbeat_p50_ms: round3(pct(0.5)),
      scale_heartbeat_p99_ms: round3(pct(0.99)),
      scale_heartbeats_measured: rtts.length,
      scale_msgs_per_s: Math.round((heartbeats + metrics) / ((t1 - t0) / 1000)),
      scale_false_deaths: falseDeaths,
    };
  } finally {
    coord.kill('SIGTERM');
    await exited(coord, 20_000);
    stopAll();
  }
}

/** The simulator: n DEALER agents; heartbeat 1 Hz, one metric point at 10 Hz once assigned. Prints one SIM line. */
async function simulate(argv: string[]): Promise<void> {
  const arg = (name: string): string => {
    const i = argv.indexOf(name);
    const v = i < 0 ? undefined : argv[i + 1];
    if (v === undefined) throw new Error(`sim: missing ${name}`);
    return v;
  };
  const n = Number(arg('--sim-agents'));
  const prefix = arg('--prefix');
  const address = arg('--coordinator');
  const measureFrom = Number(arg('--from'));
  const measureTo = Number(arg('--to'));
  const rtts: number[] = [];
  let heartbeats = 0;
  let metrics = 0;
  interface Sim {
    id: AgentId;
    client: Awaited<ReturnType<typeof connectClient>>;
    seq: number;
    sent: Map<number, number>;
    job?: { jobId: JobId; epoch: number; step: number };
    welcomed: boolean;
  }
  const sims: Sim[] = [];
  // Ticking from the start: an agent heartbeats as soon as it is welcomed, as a real one does.
  let tick = 0;
  const timer = setInterval(() => {
    tick++;
    const inWindow = Date.now() >= measureFrom && Date.now() <= measureTo;
    for (let i = 0; i < sims.length; i++) {
      const s = sims[i]!;
      if (!s.welcomed) continue;
      if (s.job) {
        s.job.step++;
        void s.client
          .send(
            metricsMessage(s.job.jobId, s.job.epoch, [
              { step: s.job.step, loss: 1, learningRate: 1e-3, gradNorm: 1, tokensPerSecond: 1000, time: Date.now() },
            ]),
          )
          .catch(() => undefined);
        if (inWindow) metrics++;
      }
      // Heartbeats spread over the second: agent i beats on ticks where tick % 10 == i % 10.
      if (tick % 10 === i % 10) {
        const seq = ++s.seq;
        s.sent.set(seq, performance.now());
        if (s.sent.size > 20) s.sent.delete(s.sent.keys().next().value as number);
        const hb = s.job
          ? {
              type: 'heartbeat' as const,
              agentId: s.id,
              seq,
              time: Date.now(),
              state: 'busy' as const,
              jobId: s.job.jobId,
              epoch: s.job.epoch,
              step: s.job.step,
            }
          : { type: 'heartbeat' as const, agentId: s.id, seq, time: Date.now(), state: 'idle' as const };
        void s.client.send(hb).catch(() => undefined);
        if (inWindow) heartbeats++;
      }
    }
  }, 100);
  for (let i = 0; i < n; i++) {
    const id = `${prefix}-${i}` as AgentId;
    const client = await connectClient({ address, routingId: id });
    const sim: Sim = { id, client, seq: 0, sent: new Map(), welcomed: false };
    sims.push(sim);
    void (async () => {
      for await (const m of client.inbound()) {
        if (m.kind !== 'message') continue;
        const msg: CoordinatorToAgent = m.message;
        if (msg.type === 'welcome') sim.welcomed = true;
        else if (msg.type === 'assign')
          sim.job = { jobId: msg.job.jobId, epoch: msg.epoch, step: msg.resumeFrom?.step ?? 0 };
        else if (msg.type === 'heartbeat_ack') {
          const at = sim.sent.get(msg.seq);
          sim.sent.delete(msg.seq);
          const now = performance.now();
          if (at !== undefined && Date.now() >= measureFrom && Date.now() <= measureTo) rtts.push(now - at);
        }
      }
    })();
    await client.send({
      type: 'hello',
      version: PROTOCOL_VERSION,
      agentId: id,
      host: 'sim',
      pid: process.pid,
      backend: 'sim',
      devices: [],
    });
  }
  await new Promise((r) => setTimeout(r, Math.max(0, measureTo - Date.now()) + 500));
  clearInterval(timer);
  process.stdout.write(`SIM ${JSON.stringify({ rtts, heartbeats, metrics })}\n`);
  await Promise.all(sims.map((s) => s.client.close()));
  process.exit(0);
}

// ---------------------------------------------------------------------------------------------
// agent_overhead_ratio: the same job under `pe-arena train` and under an agent.

async function benchOverhead(dir: string, rounds: number): Promise<Record<string, number | string | number[]>> {
  const steps = 60;
  // Per-step throughput, median over the steps after warm-up: robust to a slow first step and one-off stalls.
  const median = (file: string): number => {
    const tps = readFileSync(file, 'utf8')
      .split('\n')
      .filter((l) => l.trim() !== '')
      .map((l) => JSON.parse(l) as { step: number; tokensPerSecond: number })
      .filter((p) => p.step > 5 && Number.isFinite(p.tokensPerSecond))
      .map((p) => p.tokensPerSecond)
      .sort((a, b) => a - b);
    return tps[Math.floor(tps.length / 2)] ?? Number.NaN;
  };
  const training = { steps, batchSize: 32, learningRate: 0.003, warmupSteps: 6, weightDecay: 0.01, clipNorm: 1 };
  const experiment = (name: string, extra: Record<string, unknown>): string => {
    const file = join(dir, `${name}.json`);
    writeFileSync(
      file,
      JSON.stringify({
        name,
        encodings: ['rope'],
        tasks: [{ name: 'addition', params: { minDigits: 1, maxDigits: 3, reverse: true } }],
        seeds: [1],
        preset: 'tiny',
        training: { ...training, ...extra },
        evaluation: { samples: 20 },
        cluster: { checkpointEvery: 20 },
      }),
    );
    return file;
  };
  const exp = experiment('bench-overhead', {});
  // The same job as a one-rank data-parallel gang: the gang path (communicator, reducer, worker hand-offs) on one agent.
  const gangExp = experiment('bench-overhead-gang', { dataParallel: { ranks: 1 } });
  const trainRates: number[] = [];
  const agentRates: number[] = [];
  const gangRates: number[] = [];
  const agentRate = async (file: string, name: string): Promise<{ rate: number; backend: string }> => {
    const runsDir = join(dir, name);
    const run = start([cli, 'run', file, '--agents', '1', '--runs-dir', runsDir, '--view', 'off']);
    await exited(run, 240_000);
    const runDir = theRunDir(runsDir);
    if (runDir === undefined) throw new Error('bench: no overhead run dir');
    const jobDir = join(runDir, 'jobs', 'rope-addition-s1');
    const evaluation = JSON.parse(readFileSync(join(jobDir, 'evaluation.json'), 'utf8')) as { backend: string };
    return { rate: median(join(jobDir, 'metrics.jsonl')), backend: evaluation.backend };
  };
  let backends = '';
  // Alternating rounds, best of each: on a shared machine contention only ever slows a run down.
  for (let r = 0; r < rounds; r++) {
    const out = join(dir, `train-out-${r}`);
    const train = start([
      cli,
      'train',
      '--pe',
      'rope',
      '--task',
      'addition',
      '--digits',
      '1-3',
      '--reverse',
      '--preset',
      'tiny',
      '--steps',
      String(steps),
      '--batch',
      '32',
      '--lr',
      '0.003',
      '--warmup',
      '6',
      '--weight-decay',
      '0.01',
      '--clip',
      '1',
      '--seed',
      '1',
      '--checkpoint-every',
      '20',
      '--eval-samples',
      '20',
      '--progress',
      'plain',
      '--out',
      out,
    ]);
    await exited(train, 240_000);
    trainRates.push(median(join(out, 'metrics.jsonl')));
    const trained = JSON.parse(readFileSync(join(out, 'evaluation.json'), 'utf8')) as { backend: string };
    const agent = await agentRate(exp, `runs-overhead-${r}`);
    agentRates.push(agent.rate);
    gangRates.push((await agentRate(gangExp, `runs-overhead-gang-${r}`)).rate);
    backends = `${trained.backend} / ${agent.backend}`;
  }
  const bestTrain = Math.max(...trainRates);
  const bestAgent = Math.max(...agentRates);
  return {
    overhead_train_tokens_per_s: Math.round(bestTrain),
    overhead_agent_tokens_per_s: Math.round(bestAgent),
    agent_overhead_ratio: round3(bestAgent / bestTrain),
    // Each round's ratio, from its own runs side by side: "in every run", not only the best.
    agent_overhead_ratio_rounds: agentRates.map((a, i) => round3(a / (trainRates[i] as number))),
    agent_overhead_ratio_gang1: round3(Math.max(...gangRates) / bestTrain),
    agent_overhead_ratio_gang1_rounds: gangRates.map((g, i) => round3(g / (trainRates[i] as number))),
    overhead_rounds: rounds,
    overhead_backend: backends,
  };
}

export async function run(args: string[]): Promise<Record<string, unknown>> {
  const flag = (name: string, fallback: number): number => numberFlag(args, name, fallback);
  const parts = args.filter((a) => ['detect', 'scale', 'overhead'].includes(a));
  const want = (p: string): boolean => parts.length === 0 || parts.includes(p);
  const dir = mkdtempSync(join(tmpdir(), 'pe-arena-bench-runtime-'));
  const results: Record<string, unknown> = {};
  process.on('exit', stopAll);
  try {
    if (want('detect')) {
      Object.assign(results, await benchDetect(dir));
      Object.assign(results, await benchDetectLauncher(dir));
    }
    if (want('scale')) Object.assign(results, await benchScale(dir, flag('--agents', 1000), flag('--window-s', 15)));
    if (want('overhead')) Object.assign(results, await benchOverhead(dir, flag('--rounds', 2)));
  } finally {
    stopAll();
    if (process.env['BENCH_KEEP'] === undefined) rmSync(dir, { recursive: true, force: true });
    else process.stderr.write(`bench: kept ${dir}\n`);
  }
  return results;
}

if (
  process.argv[1] !== undefined &&
  import.meta.url === pathToFileURL(resolve(process.argv[1])).href &&
  process.argv.includes('--sim-agents')
) {
  await simulate(process.argv.slice(2));
}
