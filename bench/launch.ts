// `npm run bench -- launch [--only slurm|pbspro]`: the batch launchers on real schedulers, the loopback Slurm of
// .ci/setup-slurm.sh and the OpenPBS 23.06 (PBS Pro) of .ci/setup-openpbs.sh.
//   submit_to_hello_s          qsub (Slurm's torque wrapper) to each agent's hello, median over an array of 4
//   submit_to_hello_slurm_s    the same through sbatch
//   replace_s                  scancel of an agent's task to its replacement's hello (the launcher's part of recovery;
//                              the bench calls pollSoon() as the coordinator does when it loses the agent)
//   poll_cpu_share             this process's CPU (share of one core) spent polling squeue for 64 tasks, in the
//                              steady state: 1 s polls backed off to pollMaxIntervalS while the queue stands still
//   poll_cpu_ms                this process's CPU for one poll of those 64 tasks (mean of forced polls)
//   poll_ms                    wall time of one batched squeue for those 64 tasks, median
//   submit_to_hello_pbspro_s   qsub -J on OpenPBS to each agent's hello, median over an array of 4
//   replace_pbspro_s           qdel of one subjob to its replacement's hello
//   poll_cpu_share_pbspro      as poll_cpu_share, `qstat -f -t -x` for 64 subjobs
//   poll_cpu_ms_pbspro         as poll_cpu_ms, for one qstat
//   poll_ms_pbspro             wall time of one batched qstat for those 64 subjobs, median
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join, resolve } from 'node:path';
import { loadClusterProfile } from '../coordinator/cluster-profile.ts';
import type { ClusterProfile } from '../coordinator/cluster-profile.ts';
import { createPbsLauncher } from '../coordinator/launchers/pbs.ts';
import { execCommand } from '../coordinator/launchers/scheduler-command.ts';
import type { RunCommand } from '../coordinator/launchers/scheduler-command.ts';
import type { SchedulerLauncher } from '../coordinator/launchers/scheduler-launcher.ts';
import { createSlurmLauncher } from '../coordinator/launchers/slurm.ts';
import { newRunId } from '../protocol/ids.ts';
import { bindServer } from '../protocol/zmq-transport.ts';
import { distIsCurrent } from '../src/build-stamp.mjs';
import { median, round3 } from './stats.ts';

const root = resolve(import.meta.dirname, '..');
const fakeWorkload = join(root, 'test', 'node-agent', 'fixtures', 'fake-workload.ts');

/** Ends one agent's task from outside, as an admin or preemption would, given the id its hello carried. */
type EndTask = (launcher: SchedulerLauncher, victim: string) => void;

/** scancel, through the array form (12_3) of a task Slurm's torque wrapper names by its own number. */
const scancel: EndTask = (launcher, victim) => {
  const arrayForm =
    launcher.name === 'slurm'
      ? victim
      : (execFileSync('squeue', ['-h', '-r', '-t', 'all', '-o', '%A %i'], { encoding: 'utf8' })
          .split('\n')
          .find((l) => l.startsWith(`${victim} `))
          ?.split(' ')[1] ?? victim);
  execFileSync('scancel', [arrayForm]);
};

const OPENPBS_BIN = '/opt/pbs/bin';
/** qdel of one subjob (12[3].localhost) on OpenPBS. */
const qdel: EndTask = (_launcher, victim) => void execFileSync(join(OPENPBS_BIN, 'qdel'), [victim]);

/** The time (epoch ms) of the first line of each agent log in `dir`. */
function agentLogStarts(dir: string): number[] {
  if (!existsSync(dir)) return [];
  return readdirSync(dir)
    .filter((f) => f.endsWith('.log'))
    .flatMap((f) => {
      const first = readFileSync(join(dir, f), 'utf8').split('\n')[0] ?? '';
      try {
        const time = (JSON.parse(first) as { time?: unknown }).time;
        return typeof time === 'number' ? [time] : [];
      } catch {
        return [];
      }
    });
}

async function helloTimes(
  make: () => SchedulerLauncher,
  count: number,
  endTask: EndTask | undefined,
): Promise<{ hello: number[]; started: number[]; replace?: number }> {
  const runDir = join(mkdtempSync(join(tmpdir(), 'pe-arena-bench-')), newRunId());
  const server = await bindServer({ address: 'tcp://127.0.0.1:0' });
  const launcher = make();
  const seen = new Map<string, number>();
  const waiters: (() => void)[] = [];
  const reader = (async () => {
    for await (const item of server.inbound()) {
      if (
        item.kind === 'message' &&
        item.message.type === 'hello' &&
        item.message.launcherId !== undefined &&
        !seen.has(item.message.launcherId)
      ) {
        seen.set(item.message.launcherId, performance.now());
        for (const w of waiters.splice(0)) w();
      }
    }
  })();
  const until = async (cond: () => boolean, ms: number): Promise<void> => {
    const end = Date.now() + ms;
    while (!cond()) {
      if (Date.now() > end) throw new Error('timed out');
      await new Promise<void>((r) => {
        waiters.push(r);
        setTimeout(r, 200);
      });
    }
  };
  try {
    const t0 = performance.now();
    const wall0 = Date.now();
    await launcher.start({
      coordinator: server.address,
      count,
      runDir,
      agentArgs: ['--workload-module', fakeWorkload, '--death-timeout-ms', '30000'],
    });
    await until(() => seen.size >= count, 60_000);
    const hello = [...seen.values()].map((t) => (t - t0) / 1000);
    // Each agent's first log line: the scheduler has dispatched it and node has loaded the CLI (the rest, to hello,
    // is connecting and saying hello).
    const started = agentLogStarts(join(runDir, 'logs', 'agents')).map((t) => (t - wall0) / 1000);
    if (endTask === undefined) return { hello, started };
    const victim = [...seen.keys()][0]!;
    const t1 = performance.now();
    endTask(launcher, victim);
    // As the coordinator does when it loses (or hears bye from) an agent: look at the queue now.
    launcher.pollSoon();
    await until(() => seen.size >= count + 1, 60_000);
    const last = Math.max(...seen.values());
    return { hello, started, replace: (last - t1) / 1000 };
  } finally {
    await launcher.stop(3_000);
    await server.close().catch(() => undefined);
    await reader.catch(() => undefined);
    rmSync(join(runDir, '..'), { recursive: true, force: true });
  }
}

/**
 * The launcher's own CPU while it polls `tasks` array tasks in the steady state (once its polls have backed off to
 * the profile's pollMaxIntervalS), over `periods` of that longest wait; and one poll's CPU (mean) and wall time
 * (median) over forced polls.
 */
async function pollCost(
  profileFile: string,
  make: (profile: ClusterProfile, run: RunCommand) => SchedulerLauncher,
  tasks: number,
  periods: number,
): Promise<{ share: number; pollCpuMs: number; pollMs: number; polls: number; warmS: number }> {
  const runDir = join(mkdtempSync(join(tmpdir(), 'pe-arena-bench-')), newRunId());
  const sleeper = join(runDir, '..', 'sleep.sh');
  writeFileSync(sleeper, '#!/bin/bash\nsleep 300\n', { mode: 0o755 });
  // Real submit/poll/cancel commands, but the array runs `sleep` instead of agents: 64 agents would not fit on 2 cores.
  let polls = 0;
  const run: RunCommand = (command, args, options) => {
    if (['squeue', 'qstat'].includes(basename(command))) polls++;
    return execCommand(
      command,
      ['sbatch', 'qsub'].includes(basename(command)) ? [...args.slice(0, -1), sleeper] : args,
      options,
    );
  };
  const profile = await loadClusterProfile(join(root, 'configs', 'clusters', profileFile));
  const launcher = make(profile, run);
  const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
  const cpuMs = (u: NodeJS.CpuUsage): number => (u.user + u.system) / 1000;
  try {
    const started = performance.now();
    await launcher.start({ coordinator: 'tcp://127.0.0.1:1', count: tasks, runDir, agentArgs: [] });
    // Steady state: the queue has settled and the wait has doubled up to its cap (bounded: a queue that keeps
    // changing is measured as it is).
    const maxMs = profile.pollMaxIntervalS * 1000;
    while (launcher.pollWaitMs < maxMs && performance.now() - started < 120_000) await sleep(100);
    const warmS = (performance.now() - started) / 1000;
    const polls0 = polls;
    const cpu0 = process.cpuUsage();
    const t0 = performance.now();
    await sleep(periods * maxMs);
    const cpu = process.cpuUsage(cpu0);
    const wall = (performance.now() - t0) * 1000;
    const windowPolls = polls - polls0;
    const forced = 5;
    const wallMs: number[] = [];
    const cpu1 = process.cpuUsage();
    for (let i = 0; i < forced; i++) {
      const p0 = performance.now();
      await launcher.pollNow();
      wallMs.push(performance.now() - p0);
    }
    return {
      share: (cpu.user + cpu.system) / wall,
      pollCpuMs: cpuMs(process.cpuUsage(cpu1)) / forced,
      pollMs: median(wallMs),
      polls: windowPolls,
      warmS,
    };
  } finally {
    await launcher.stop(2_000);
    rmSync(join(runDir, '..'), { recursive: true, force: true });
  }
}

async function slurmFigures(): Promise<Record<string, unknown>> {
  try {
    execFileSync('sinfo', ['-h'], { stdio: 'ignore', timeout: 5_000 });
  } catch {
    throw new Error('no Slurm answers: run .ci/setup-slurm.sh first (as root)');
  }
  const pbsProfile = await loadClusterProfile(join(root, 'configs', 'clusters', 'test-pbs-wrapper.json'));
  const slurmProfile = await loadClusterProfile(join(root, 'configs', 'clusters', 'test-slurm.json'));
  const pbs = await helloTimes(() => createPbsLauncher(pbsProfile, { pollIntervalMs: 1_000 }), 4, undefined);
  const slurm = await helloTimes(() => createSlurmLauncher(slurmProfile, { pollIntervalMs: 1_000 }), 4, scancel);
  const poll = await pollCost(
    'test-slurm.json',
    (profile, run) => createSlurmLauncher(profile, { run, pollIntervalMs: 1_000 }),
    64,
    4,
  );
  return {
    submit_to_hello_s: round3(median(pbs.hello)),
    submit_to_hello_slurm_s: round3(median(slurm.hello)),
    replace_s: round3(slurm.replace ?? NaN),
    poll_cpu_share: round3(poll.share),
    poll_cpu_ms: round3(poll.pollCpuMs),
    poll_ms: round3(poll.pollMs),
    polls_in_window: poll.polls,
    poll_warm_up_s: round3(poll.warmS),
    submit_to_hello_all_pbs: pbs.hello.map(round3),
    submit_to_hello_all_slurm: slurm.hello.map(round3),
    submit_to_agent_log_pbs_s: round3(median(pbs.started)),
    submit_to_agent_log_slurm_s: round3(median(slurm.started)),
  };
}

async function pbsProFigures(): Promise<Record<string, unknown>> {
  try {
    execFileSync(join(OPENPBS_BIN, 'qstat'), ['-B'], { stdio: 'ignore', timeout: 10_000 });
  } catch {
    throw new Error(`no OpenPBS answers ${join(OPENPBS_BIN, 'qstat')} -B: run .ci/setup-openpbs.sh first (as root)`);
  }
  const profile = await loadClusterProfile(join(root, 'configs', 'clusters', 'test-openpbs.json'));
  const pro = await helloTimes(() => createPbsLauncher(profile, { pollIntervalMs: 1_000 }), 4, qdel);
  const poll = await pollCost(
    'test-openpbs.json',
    (p, run) => createPbsLauncher(p, { run, pollIntervalMs: 1_000 }),
    64,
    4,
  );
  return {
    submit_to_hello_pbspro_s: round3(median(pro.hello)),
    replace_pbspro_s: round3(pro.replace ?? NaN),
    poll_cpu_share_pbspro: round3(poll.share),
    poll_cpu_ms_pbspro: round3(poll.pollCpuMs),
    poll_ms_pbspro: round3(poll.pollMs),
    polls_in_window_pbspro: poll.polls,
    poll_warm_up_pbspro_s: round3(poll.warmS),
    submit_to_hello_all_pbspro: pro.hello.map(round3),
    submit_to_agent_log_pbspro_s: round3(median(pro.started)),
  };
}

export async function run(args: string[]): Promise<Record<string, unknown>> {
  const only = args.includes('--only') ? args[args.indexOf('--only') + 1] : undefined;
  if (only !== undefined && only !== 'slurm' && only !== 'pbspro')
    throw new Error(`--only takes slurm or pbspro, got ${JSON.stringify(only)}`);
  const slurm = only === 'pbspro' ? {} : await slurmFigures();
  const pro =
    only === 'slurm' || (only === undefined && !existsSync(join(OPENPBS_BIN, 'qstat'))) ? {} : await pbsProFigures();
  const flat = { ...slurm, ...pro };
  const numbers = Object.fromEntries(Object.entries(flat).filter(([, v]) => typeof v === 'number'));
  const lists = Object.fromEntries(Object.entries(flat).filter(([, v]) => typeof v !== 'number'));
  return {
    ...numbers,
    notes: {
      cluster:
        "loopback Slurm 22.05 (4 fake nodes) and OpenPBS 23.06 (one node, 4 cpus), both on this 2-core host; polls every 1 s, backing off to 8 s (the test profiles' pollMaxIntervalS) while nothing changes",
      submit_to_hello: `agents run the fake workload; job scripts start them through src/bin.mjs, ${distIsCurrent(root) ? 'compiled (dist/ current)' : 'through tsx (dist/ not built from these sources)'}; 4 agents on 2 cores`,
      replace:
        "scancel (Slurm) or qdel of one subjob (OpenPBS) to the replacement agent's hello; the bench then calls pollSoon() as the coordinator does on losing an agent, which polls at once; the coordinator then reassigns at once",
      poll_cpu_share:
        '64 array tasks running sleep (the rest pending), polled with squeue or qstat -f -t -x; measured over 4 x pollMaxIntervalS once the polls have backed off (after poll_warm_up_s); this process only',
      poll_cpu_ms: "this process's CPU per poll (spawning the command, parsing, tasks.json), mean of 5 forced polls",
      polls_in_window: 'polls during the poll_cpu_share window',
      poll_ms: "one batched poll's wall time (the scheduler command's run included), median of 5",
      ...lists,
    },
  };
}
