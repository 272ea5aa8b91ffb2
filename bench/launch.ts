// `npm run bench -- launch`: the batch launchers on the loopback Slurm of .ci/setup-slurm.sh.
//   submit_to_hello_s        qsub (Slurm's torque wrapper) to each agent's hello, median over an array of 4
//   submit_to_hello_slurm_s  the same through sbatch
//   replace_s                scancel of an agent's task to its replacement's hello (the launcher's part of recovery)
//   poll_cpu_share           this process's CPU (share of one core) spent polling squeue every second for 64 tasks
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { loadClusterProfile } from '../coordinator/cluster-profile.ts';
import { createPbsLauncher } from '../coordinator/launchers/pbs.ts';
import { execCommand } from '../coordinator/launchers/scheduler-command.ts';
import type { RunCommand } from '../coordinator/launchers/scheduler-command.ts';
import type { SchedulerLauncher } from '../coordinator/launchers/scheduler-launcher.ts';
import { createSlurmLauncher } from '../coordinator/launchers/slurm.ts';
import { newRunId } from '../protocol/ids.ts';
import { bindServer } from '../protocol/zmq-transport.ts';

const root = resolve(import.meta.dirname, '..');
const fakeWorkload = join(root, 'test', 'node-agent', 'fixtures', 'fake-workload.ts');
const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length === 0
    ? NaN
    : s.length % 2 === 1
      ? s[(s.length - 1) / 2]!
      : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
};
const round = (x: number): number => Math.round(x * 1000) / 1000;

async function helloTimes(
  make: () => SchedulerLauncher,
  count: number,
  replace: boolean,
): Promise<{ hello: number[]; replace?: number }> {
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
    await launcher.start({
      coordinator: server.address,
      count,
      runDir,
      agentArgs: ['--workload-module', fakeWorkload, '--death-timeout-ms', '30000'],
    });
    await until(() => seen.size >= count, 60_000);
    const hello = [...seen.values()].map((t) => (t - t0) / 1000);
    if (!replace) return { hello };
    const victim = [...seen.keys()][0]!;
    const arrayForm =
      launcher.name === 'slurm'
        ? victim
        : (execFileSync('squeue', ['-h', '-r', '-t', 'all', '-o', '%A %i'], { encoding: 'utf8' })
            .split('\n')
            .find((l) => l.startsWith(`${victim} `))
            ?.split(' ')[1] ?? victim);
    const t1 = performance.now();
    execFileSync('scancel', [arrayForm]);
    await until(() => seen.size >= count + 1, 60_000);
    const last = Math.max(...seen.values());
    return { hello, replace: (last - t1) / 1000 };
  } finally {
    await launcher.stop(3_000);
    await server.close().catch(() => undefined);
    await reader.catch(() => undefined);
    rmSync(join(runDir, '..'), { recursive: true, force: true });
  }
}

async function pollShare(tasks: number, seconds: number): Promise<number> {
  const runDir = join(mkdtempSync(join(tmpdir(), 'pe-arena-bench-')), newRunId());
  const sleeper = join(runDir, '..', 'sleep.sh');
  writeFileSync(sleeper, '#!/bin/bash\nsleep 300\n', { mode: 0o755 });
  // Real sbatch/squeue/scancel, but the array runs `sleep` instead of agents: 64 agents would not fit on 2 cores.
  const run: RunCommand = (command, args, options) =>
    execCommand(command, command === 'sbatch' ? [...args.slice(0, -1), sleeper] : args, options);
  const profile = await loadClusterProfile(join(root, 'configs', 'clusters', 'test-slurm.json'));
  const launcher = createSlurmLauncher(profile, { run, pollIntervalMs: 1_000 });
  try {
    await launcher.start({ coordinator: 'tcp://127.0.0.1:1', count: tasks, runDir, agentArgs: [] });
    await launcher.pollNow();
    const cpu0 = process.cpuUsage();
    const t0 = performance.now();
    await new Promise((r) => setTimeout(r, seconds * 1000));
    const cpu = process.cpuUsage(cpu0);
    const wall = (performance.now() - t0) * 1000;
    return (cpu.user + cpu.system) / wall;
  } finally {
    await launcher.stop(2_000);
    rmSync(join(runDir, '..'), { recursive: true, force: true });
  }
}

export async function run(_args: string[]): Promise<Record<string, unknown>> {
  try {
    execFileSync('sinfo', ['-h'], { stdio: 'ignore', timeout: 5_000 });
  } catch {
    throw new Error('no Slurm answers: run .ci/setup-slurm.sh first (as root)');
  }
  const pbsProfile = await loadClusterProfile(join(root, 'configs', 'clusters', 'test-pbs-wrapper.json'));
  const slurmProfile = await loadClusterProfile(join(root, 'configs', 'clusters', 'test-slurm.json'));
  const pbs = await helloTimes(() => createPbsLauncher(pbsProfile, { pollIntervalMs: 1_000 }), 4, false);
  const slurm = await helloTimes(() => createSlurmLauncher(slurmProfile, { pollIntervalMs: 1_000 }), 4, true);
  const share = await pollShare(64, 20);
  return {
    submit_to_hello_s: round(median(pbs.hello)),
    submit_to_hello_slurm_s: round(median(slurm.hello)),
    replace_s: round(slurm.replace ?? NaN),
    poll_cpu_share: round(share),
    notes: {
      cluster: 'loopback Slurm 22.05 (4 fake nodes, 2 cores), poll every 1 s',
      submit_to_hello: 'agents run the fake workload; most of the time is node+tsx start-up of 4 agents on 2 cores',
      replace: "scancel to the replacement agent's hello, with 1 s polling; the coordinator then reassigns at once",
      poll_cpu_share: '64 array tasks (16 running sleep, 48 pending), one squeue per second; this process only',
      submit_to_hello_all_pbs: pbs.hello.map(round),
      submit_to_hello_all_slurm: slurm.hello.map(round),
    },
  };
}
