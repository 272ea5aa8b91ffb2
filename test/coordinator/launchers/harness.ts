// Shared by the launcher tests that talk to a real scheduler: the loopback Slurm of .ci/setup-slurm.sh (sbatch, or
// qsub through slurm-wlm-torque) and the OpenPBS of .ci/setup-openpbs.sh: why they skip, what the queue still
// holds, a descriptor per real scheduler (slurm, openpbs) so one scenario runs on each, and a harness that binds a
// coordinator socket, collects what agents and the launcher say, and cleans up after the test (t.after) whatever
// happened.
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import type { TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { newRunId } from '../../../protocol/ids.ts';
import { PROTOCOL_VERSION } from '../../../protocol/messages.ts';
import type { Bye, Hello, RunId } from '../../../protocol/messages.ts';
import { bindServer } from '../../../protocol/zmq-transport.ts';
import { compileClusterProfile } from '../../../coordinator/cluster-profile.ts';
import type { ClusterProfile } from '../../../coordinator/cluster-profile.ts';
import type { LauncherEvent } from '../../../coordinator/launchers/launcher-events.ts';
import { createPbsLauncher, parseQstatText } from '../../../coordinator/launchers/pbs.ts';
import type { SchedulerLauncher, SchedulerLauncherOptions } from '../../../coordinator/launchers/scheduler-launcher.ts';
import { createSlurmLauncher } from '../../../coordinator/launchers/slurm.ts';
import type { AgentExit, LaunchRequest } from '../../../coordinator/launchers/types.ts';

export const repoRoot = resolve(import.meta.dirname, '..', '..', '..');
export const fakeWorkload = join(repoRoot, 'test', 'node-agent', 'fixtures', 'fake-workload.ts');

/**
 * A two-job experiment (rope and nope on short additions, one seed, the tiny preset) whose cluster settings notice a
 * lost agent within seconds; `params` go to the task (the workload's pace), `maxAttempts` to the cluster.
 */
export function quickExperiment(
  name: string,
  options: { steps: number; params: Record<string, number>; maxAttempts: number; checkpointEvery?: number },
): Record<string, unknown> {
  return {
    name,
    encodings: ['rope', 'nope'],
    tasks: [{ name: 'addition', params: { minDigits: 1, maxDigits: 2, ...options.params } }],
    seeds: [1],
    preset: 'tiny',
    training: { steps: options.steps },
    evaluation: { samples: 4 },
    cluster: {
      heartbeatIntervalMs: 250,
      failureTimeoutMs: 4000,
      suspectAfterMs: 1500,
      watchdogMs: 0,
      checkpointEvery: options.checkpointEvery ?? 10,
      maxAttempts: options.maxAttempts,
    },
  };
}

/** Why the real-Slurm tests must skip (said in the test output), or undefined when sbatch and slurmctld answer. */
export function slurmSkipReason(): string | undefined {
  try {
    execFileSync('sbatch', ['--version'], { stdio: 'ignore', timeout: 5_000 });
  } catch {
    return 'sbatch is not on PATH: run .ci/setup-slurm.sh (as root) to start the loopback Slurm these tests need';
  }
  try {
    const out = execFileSync('sinfo', ['-h', '-o', '%T'], { encoding: 'utf8', timeout: 5_000 });
    if (!/idle|mixed|allocated/.test(out))
      return `the Slurm cluster has no usable node (sinfo: ${out.trim()}); run .ci/setup-slurm.sh`;
  } catch (error) {
    return `slurmctld does not answer (${(error as Error).message.split('\n')[0]}); run .ci/setup-slurm.sh`;
  }
  return undefined;
}

/** Why the PBS-on-Slurm tests must skip: Slurm's torque wrapper (qsub) or Slurm itself missing. */
export function torqueWrapperSkipReason(): string | undefined {
  try {
    execFileSync('qsub', ['--help'], { stdio: 'ignore', timeout: 5_000 });
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT')
      return 'qsub is not on PATH: run .ci/setup-slurm.sh (slurm-wlm-torque)';
  }
  try {
    execFileSync('sinfo', ['-h', '-o', '%T'], { stdio: 'ignore', timeout: 5_000 });
  } catch {
    return 'Slurm does not answer: run .ci/setup-slurm.sh';
  }
  return undefined;
}

/** Where the real OpenPBS of .ci/setup-openpbs.sh keeps its commands (off PATH: Slurm's wrapper has a qsub too). */
export const OPENPBS_BIN = '/opt/pbs/bin';

/** Why the real-OpenPBS tests must skip (said in the test output), or undefined when its qstat answers. */
export function openPbsSkipReason(): string | undefined {
  const qstat = join(OPENPBS_BIN, 'qstat');
  if (!existsSync(qstat)) return `${qstat} is missing: run .ci/setup-openpbs.sh (as root) to start the real OpenPBS`;
  try {
    execFileSync(qstat, ['-B'], { stdio: 'ignore', timeout: 10_000 });
  } catch (error) {
    return `the OpenPBS server does not answer qstat -B (${(error as Error).message.split('\n')[0]}); run .ci/setup-openpbs.sh`;
  }
  return undefined;
}

/**
 * One OpenPBS command (qstat, qdel, ...) from its own directory, with its output. The buffer is the launcher's own
 * (64 MiB): `qstat -f -t -x` lists the server's whole job history, which benches with 64-task arrays fill.
 */
export function openPbs(command: string, args: string[]): string {
  return execFileSync(join(OPENPBS_BIN, command), args, {
    encoding: 'utf8',
    timeout: 15_000,
    maxBuffer: 64 * 1024 * 1024,
  });
}

/**
 * What OpenPBS still holds of the run queued, running or exiting, as "<id> <state>" lines: the run's jobs by name
 * (qselect -x, history included), array parents and subjobs; finished (F) and ended subjobs (X) left out. Only the
 * run's own jobs are listed: the server's whole history grows with every run this host has seen.
 */
export function qstatRun(jobName: string): string[] {
  const ids = openPbs('qselect', ['-x', '-N', jobName])
    .split('\n')
    .map((line) => line.trim())
    .filter((line) => line !== '');
  if (ids.length === 0) return [];
  return parseQstatText(openPbs('qstat', ['-f', '-t', '-x', ...ids]))
    .filter((job) => job.attrs['Job_Name'] === jobName && !['F', 'X'].includes(job.attrs['job_state'] ?? ''))
    .map((job) => `${job.id} ${job.attrs['job_state'] ?? '?'}`);
}

/** The run's array tasks still in the queue, as "<id> <state>" lines. */
export function squeueRun(jobName: string): string[] {
  return execFileSync('squeue', ['--noheader', '--array', `--name=${jobName}`, '-o', '%i %T'], {
    encoding: 'utf8',
    timeout: 10_000,
  })
    .split('\n')
    .filter((l) => l.trim() !== '');
}

/** A real scheduler of this host, as the tests that run one scenario on each of them need it. */
export interface RealScheduler {
  /** How test names and messages call it. */
  readonly name: 'slurm' | 'openpbs';
  /** The CLI's `--launcher`. */
  readonly launcher: 'slurm' | 'pbs';
  /** The command that submits (as the CLI reports it). */
  readonly submit: 'sbatch' | 'qsub';
  /** The id of an array submission, as the submit command answers it. */
  readonly arrayId: RegExp;
  /** Its test profile, relative to the repository root. */
  readonly profile: string;
  /** The profile fields that name the scheduler, for profiles a test compiles itself. */
  readonly siteFields: Record<string, unknown>;
  /** Why its tests must skip, or undefined when it answers. */
  skipReason(): string | undefined;
  createLauncher(profile: ClusterProfile, options?: Omit<SchedulerLauncherOptions, 'profile'>): SchedulerLauncher;
  /** The scheduler's id of task `index` of an array submission. */
  taskId(submissionId: string, index: number): string;
  /** What it still holds of the run queued or running, as "<id> <state>" lines. */
  leftovers(jobName: string): string[];
  /** Ends tasks from outside, as an admin or preemption would (scancel, qdel). */
  cancel(ids: string[]): void;
  /** Cleanup after a test: ends whatever of the run is still held. */
  cancelRun(jobName: string): void;
}

export const slurm: RealScheduler = {
  name: 'slurm',
  launcher: 'slurm',
  submit: 'sbatch',
  arrayId: /^\d+$/,
  profile: join('configs', 'clusters', 'test-slurm.json'),
  siteFields: { scheduler: 'slurm', queue: 'debug' },
  skipReason: slurmSkipReason,
  createLauncher: createSlurmLauncher,
  taskId: (submissionId, index) => `${submissionId}_${index}`,
  leftovers: squeueRun,
  cancel: (ids) => execFileSync('scancel', ids, { timeout: 10_000 }),
  cancelRun: (jobName) => {
    if (squeueRun(jobName).length > 0)
      execFileSync('scancel', [`--name=${jobName}`], { stdio: 'ignore', timeout: 10_000 });
  },
};

export const openpbs: RealScheduler = {
  name: 'openpbs',
  launcher: 'pbs',
  submit: 'qsub',
  arrayId: /^\d+\[\]\.localhost$/,
  profile: join('configs', 'clusters', 'test-openpbs.json'),
  siteFields: { scheduler: 'pbs', dialect: 'pbspro', queue: 'workq', commandsDir: OPENPBS_BIN },
  skipReason: openPbsSkipReason,
  createLauncher: createPbsLauncher,
  taskId: (submissionId, index) => submissionId.replace('[]', `[${index}]`),
  leftovers: qstatRun,
  cancel: (ids) => void openPbs('qdel', ids),
  cancelRun: (jobName) => {
    const left = qstatRun(jobName).map((line) => line.split(' ')[0]!);
    if (left.length === 0) return;
    try {
      openPbs('qdel', ['-W', 'force', ...left]);
    } catch {
      // already gone between the two calls
    }
  },
};

/** A site profile compiled from `fields`, with one CPU and /tmp as the workdir unless they say otherwise. */
export function siteProfile(fields: Record<string, unknown> & { name: string }): ClusterProfile {
  return compileClusterProfile({ resources: { cpus: 1 }, workdir: '/tmp', ...fields }, `${fields.name}.json`);
}

export function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** launch/events.jsonl of the run, parsed. */
export function eventsOnDisk(runDir: string): { kind: string; text: string; launcherId?: string }[] {
  return readFileSync(join(runDir, 'launch', 'events.jsonl'), 'utf8')
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l) as { kind: string; text: string; launcherId?: string });
}

/**
 * Polls state that announces nothing (the scheduler's queue, processes, the coordinator's tables) until fn returns
 * a value, at most ms of wall time. What a listener hears is awaited with Watch.until instead.
 */
export async function waitFor<T>(
  what: string,
  ms: number,
  fn: () => T | undefined | Promise<T | undefined>,
): Promise<T> {
  const until = Date.now() + ms;
  for (;;) {
    const v = await fn();
    if (v !== undefined) return v;
    if (Date.now() > until) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

/** Everything a listener has heard so far, and a wait for the first item that matches. */
export class Watch<T> {
  readonly items: T[] = [];
  private readonly waiters: { match: (item: T) => boolean; resolve: (item: T) => void }[] = [];

  constructor(private readonly t: TestContext) {}

  push(item: T): void {
    this.items.push(item);
    for (const w of [...this.waiters])
      if (w.match(item)) {
        this.waiters.splice(this.waiters.indexOf(w), 1);
        w.resolve(item);
      }
  }

  /** The first item (heard already or later) that matches; bounded by the test's own timeout. */
  until(what: string, match: (item: T) => boolean): Promise<T> {
    const found = this.items.find(match);
    if (found !== undefined) return Promise.resolve(found);
    this.t.diagnostic(`waiting for ${what}`);
    return new Promise((resolve) => this.waiters.push({ match, resolve }));
  }
}

/** A run directory named by runId inside a new temp directory; remove() deletes both. */
export function tempRunDir(prefix: string, runId: string = newRunId()): { runDir: string; remove(): void } {
  const top = mkdtempSync(join(tmpdir(), prefix));
  return { runDir: join(top, runId), remove: () => rmSync(top, { recursive: true, force: true }) };
}

export interface LauncherHarnessOptions {
  /** Temp directory prefix; the run directory inside it is named by a fresh run id. */
  prefix: string;
  /** Answer each hello with a welcome (agents that are welcomed heartbeat and drain with a bye). */
  welcome?: boolean;
  /** What the scheduler still holds of the run, by job name (default: squeueRun, the loopback Slurm). */
  queue?: (jobName: string) => string[];
}

/** A coordinator socket, a run directory and the launcher under test, with what they heard. */
export interface LauncherHarness {
  readonly runDir: string;
  readonly hellos: Watch<Hello>;
  readonly byes: Watch<Bye>;
  readonly exits: Watch<AgentExit>;
  readonly events: Watch<LauncherEvent>;
  /** The launcher's start() for `count` agents of the fake workload, dialling this harness's socket. */
  start(count: number): Promise<void>;
  /** stop() the launcher (3 s grace) and say what the scheduler still holds of the run (options.queue). */
  stopAndList(): Promise<string[]>;
}

/**
 * Binds a coordinator socket on 127.0.0.1, wires the launcher's listeners, and registers the cleanup with t.after,
 * in this order: stop the launcher (it cancels the run's jobs), close the socket, remove the run directory.
 */
export async function launcherHarness(
  t: TestContext,
  launcher: SchedulerLauncher,
  options: LauncherHarnessOptions,
): Promise<LauncherHarness> {
  const { runDir, remove } = tempRunDir(options.prefix);
  const server = await bindServer({ address: 'tcp://127.0.0.1:0' });
  const hellos = new Watch<Hello>(t);
  const byes = new Watch<Bye>(t);
  const exits = new Watch<AgentExit>(t);
  const events = new Watch<LauncherEvent>(t);
  launcher.onExit((e) => exits.push(e));
  launcher.onEvent((e) => events.push(e));
  const reader = (async () => {
    for await (const item of server.inbound()) {
      if (item.kind !== 'message') continue;
      const m = item.message;
      if (m.type === 'hello') {
        hellos.push(m);
        if (options.welcome === true)
          await server.send(item.from, {
            type: 'welcome',
            version: PROTOCOL_VERSION,
            agentId: m.agentId,
            runId: 'launcher-test' as RunId,
            heartbeatIntervalMs: 1_000,
          });
      }
      if (m.type === 'bye') byes.push(m);
    }
  })();
  let stopped: Promise<void> | undefined;
  const stop = (): Promise<void> => (stopped ??= launcher.stop(3_000));
  t.after(async () => {
    await stop();
    await server.close().catch(() => undefined);
    await reader.catch(() => undefined);
    remove();
  });
  return {
    runDir,
    hellos,
    byes,
    exits,
    events,
    start: (count) => {
      const request: LaunchRequest = {
        coordinator: server.address,
        count,
        runDir,
        agentArgs: ['--workload-module', fakeWorkload, '--death-timeout-ms', '30000'],
      };
      return launcher.start(request);
    },
    stopAndList: async () => {
      await stop();
      return (options.queue ?? squeueRun)(launcher.scheduledJobName);
    },
  };
}

/**
 * One agent on a one-minute walltime: it leaves 45 s before the end (at ~15 s), a continuation goes in 55 s before
 * it and says hello while the first still runs; the first says bye (walltime) and ends cleanly, so nothing replaces
 * it; stop() leaves nothing of the run queued or running.
 */
export async function walltimeScenario(t: TestContext, scheduler: RealScheduler): Promise<void> {
  const profile = siteProfile({
    name: `${scheduler.name}-walltime-test`,
    ...scheduler.siteFields,
    walltime: '00:01:00',
    agentArgs: ['--backend', 'cpu'],
    walltimeMarginS: 45,
    continuationLeadS: 55,
    pollIntervalS: 1,
    maxReplacements: 2,
  });
  const launcher = scheduler.createLauncher(profile, { pollIntervalMs: 1_000 });
  const h = await launcherHarness(t, launcher, {
    prefix: `pe-arena-${scheduler.name}-`,
    welcome: true,
    queue: scheduler.leftovers,
  });
  await h.start(1);
  const first = launcher.submissionIds()[0]!;
  const firstHello = await h.hellos.until('the first hello', (hello) => hello.launcherId === first);
  // The continuation is submitted while the first agent still runs.
  const continuation = await h.events.until(
    'a continuation submission',
    (e) => e.kind === 'continuation' && e.launcherId === first,
  );
  const second = continuation.submissionId!;
  await h.hellos.until('the continuation hello', (hello) => hello.launcherId === second);
  // The first agent leaves at its margin, saying why, and its task ends cleanly (exit 0): no replacement.
  const bye = await h.byes.until('the walltime bye', (b) => b.agentId === firstHello.agentId);
  assert.equal(bye.reason, 'walltime');
  const exit = await h.exits.until('the first task to end', (e) => e.launcherId === first);
  assert.deepEqual([exit.code, exit.signal], [0, null]);
  // (Later submissions are continuations of the continuation, whose one-minute walltime is also short.)
  const events = eventsOnDisk(h.runDir);
  assert.ok(!events.some((e) => e.kind === 'replacement'), 'a clean walltime exit is not replaced');
  assert.ok(
    events.some((e) => e.kind === 'continuation' && e.text.includes(first)),
    'the continuation names the agent it continues',
  );
  assert.deepEqual(await h.stopAndList(), [], 'stop() leaves nothing of the run queued or running');
}

/** Asserts that launch/events.jsonl holds an event of each kind. */
export function assertEventKinds(runDir: string, kinds: string[]): void {
  const events = eventsOnDisk(runDir);
  for (const kind of kinds)
    assert.ok(
      events.some((e) => e.kind === kind),
      `events.jsonl has a ${kind} event`,
    );
}

/** Waits until no agent that said hello has a live process (all fake nodes are this host). */
export function agentProcessesExited(hellos: Watch<Hello>, ms: number): Promise<true> {
  return waitFor('agent processes to exit', ms, () =>
    hellos.items.every((hello) => !processAlive(hello.pid)) ? true : undefined,
  );
}
