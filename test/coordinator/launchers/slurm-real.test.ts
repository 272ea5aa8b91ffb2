// The slurm launcher against a REAL Slurm on 127.0.0.1 (.ci/setup-slurm.sh) and a real coordinator socket:
// an array of agents says hello with its scheduler ids, a scancel'd task comes back through onExit, and stop()
// leaves nothing of the run in squeue. Skips, saying why, where sbatch is not on PATH.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { bindServer } from '../../../protocol/zmq-transport.ts';
import { PROTOCOL_VERSION } from '../../../protocol/messages.ts';
import type { Bye, Hello, RunId } from '../../../protocol/messages.ts';
import { newRunId } from '../../../protocol/ids.ts';
import { compileClusterProfile, loadClusterProfile } from '../../../coordinator/cluster-profile.ts';
import { createSlurmLauncher } from '../../../coordinator/launchers/slurm.ts';
import type { AgentExit } from '../../../coordinator/launchers/types.ts';
import { slurmSkipReason, squeueRun, waitFor } from './harness.ts';

const repoRoot = resolve(import.meta.dirname, '..', '..', '..');
const fakeWorkload = join(repoRoot, 'test', 'node-agent', 'fixtures', 'fake-workload.ts');

const skip = slurmSkipReason();

void test(
  'slurm launcher: array of agents hello, scancel is reported through onExit, stop leaves squeue empty',
  { skip: skip ?? false, timeout: 90_000 },
  async () => {
    const runDir = join(mkdtempSync(join(tmpdir(), 'pe-arena-slurm-')), newRunId());
    const server = await bindServer({ address: 'tcp://127.0.0.1:0' });
    const profile = await loadClusterProfile(join(repoRoot, 'configs', 'clusters', 'test-slurm.json'));
    const launcher = createSlurmLauncher(profile, { pollIntervalMs: 1_000 });
    const exits: AgentExit[] = [];
    launcher.onExit((e) => exits.push(e));
    let left: string[] = [];
    const hellos = new Map<string, Hello>();
    const reader = (async () => {
      for await (const item of server.inbound())
        if (item.kind === 'message' && item.message.type === 'hello') hellos.set(item.message.agentId, item.message);
    })();
    try {
      await launcher.start({
        coordinator: server.address,
        count: 3,
        runDir,
        agentArgs: ['--workload-module', fakeWorkload, '--death-timeout-ms', '30000'],
      });
      const ids = launcher.submissionIds();
      assert.equal(ids.length, 1, 'one submission (one job array) for three agents');
      const script = readFileSync(join(runDir, 'launch', `${launcher.scheduledJobName}-s1.sh`), 'utf8');
      assert.match(script, /#SBATCH --array=0-2/);

      // Every agent says hello with its own Slurm task id (array form, e.g. 12_0).
      await waitFor('3 hellos', 45_000, () =>
        new Set([...hellos.values()].map((h) => h.launcherId)).size >= 3 ? true : undefined,
      );
      const launcherIds = [...hellos.values()].map((h) => h.launcherId ?? '').sort();
      assert.deepEqual(launcherIds, [0, 1, 2].map((i) => `${ids[0]}_${i}`).sort());

      // End one task from outside, as an admin or preemption would: the launcher reports it.
      const victim = `${ids[0]}_1`;
      execFileSync('scancel', [victim], { timeout: 10_000 });
      const exit = await waitFor('the exit report', 20_000, () => exits.find((e) => e.launcherId === victim));
      assert.equal(exit.code, null, 'a cancelled task has no exit code');
      assert.ok(exit.signal !== null, 'a cancelled task names how it ended');
      // A replacement was submitted for it (the profile allows 2).
      await waitFor('a replacement submission', 10_000, () =>
        launcher.submissionIds().length >= 2 ? true : undefined,
      );
      assert.ok(
        exits.every((e) => e.launcherId === victim),
        `only the cancelled task was reported, got ${JSON.stringify(exits)}`,
      );
      const events = readFileSync(join(runDir, 'launch', 'events.jsonl'), 'utf8')
        .trim()
        .split('\n')
        .map((l) => JSON.parse(l) as { kind: string; launcherId?: string });
      for (const kind of ['submitted', 'running', 'ended', 'replacement'])
        assert.ok(
          events.some((e) => e.kind === kind),
          `events.jsonl has a ${kind} event`,
        );
    } finally {
      await launcher.stop(3_000);
      left = squeueRun(launcher.scheduledJobName);
      await server.close().catch(() => undefined);
      await reader.catch(() => undefined);
      rmSync(join(runDir, '..'), { recursive: true, force: true });
    }
    assert.deepEqual(left, [], 'stop() leaves no job of the run in squeue');
    // No agent process outlives its task (each hello carried its pid; all fake nodes are this host).
    await waitFor('agent processes to exit', 10_000, () =>
      [...hellos.values()].every((h) => !processAlive(h.pid)) ? true : undefined,
    );
  },
);

function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

void test(
  'slurm launcher: an agent drains at its walltime margin and a continuation takes over',
  { skip: skip ?? false, timeout: 90_000 },
  async () => {
    const runDir = join(mkdtempSync(join(tmpdir(), 'pe-arena-slurm-')), newRunId());
    const server = await bindServer({ address: 'tcp://127.0.0.1:0' });
    // One-minute walltime: the agent leaves 45 s before the end (at ~15 s); the continuation goes in 55 s before it.
    const profile = compileClusterProfile(
      {
        name: 'walltime-test',
        scheduler: 'slurm',
        queue: 'debug',
        walltime: '00:01:00',
        resources: { cpus: 1 },
        workdir: '/tmp',
        agentArgs: ['--backend', 'cpu'],
        walltimeMarginS: 45,
        continuationLeadS: 55,
        pollIntervalS: 1,
        maxReplacements: 2,
      },
      'walltime-test.json',
    );
    const launcher = createSlurmLauncher(profile, { pollIntervalMs: 1_000 });
    const exits: AgentExit[] = [];
    launcher.onExit((e) => exits.push(e));
    let left: string[] = [];
    const hellos: Hello[] = [];
    const byes: Bye[] = [];
    const reader = (async () => {
      for await (const item of server.inbound()) {
        if (item.kind !== 'message') continue;
        const m = item.message;
        if (m.type === 'hello') {
          hellos.push(m);
          await server.send(item.from, {
            type: 'welcome',
            version: PROTOCOL_VERSION,
            agentId: m.agentId,
            runId: 'walltime-test' as RunId,
            heartbeatIntervalMs: 1_000,
          });
        }
        if (m.type === 'bye') byes.push(m);
      }
    })();
    try {
      await launcher.start({
        coordinator: server.address,
        count: 1,
        runDir,
        agentArgs: ['--workload-module', fakeWorkload, '--death-timeout-ms', '30000'],
      });
      const first = launcher.submissionIds()[0]!;
      await waitFor('the first hello', 30_000, () => hellos.find((h) => h.launcherId === first));
      // The continuation is submitted while the first agent still runs.
      await waitFor('a continuation submission', 20_000, () =>
        launcher.submissionIds().length >= 2 ? true : undefined,
      );
      const second = launcher.submissionIds()[1]!;
      await waitFor('the continuation hello', 30_000, () => hellos.find((h) => h.launcherId === second));
      // The first agent leaves at its margin, saying why, and its task ends cleanly (exit 0): no replacement.
      const bye = await waitFor('the walltime bye', 30_000, () =>
        byes.find((b) => b.agentId === hellos.find((h) => h.launcherId === first)?.agentId),
      );
      assert.equal(bye.reason, 'walltime');
      const exit = await waitFor('the first task to end', 15_000, () => exits.find((e) => e.launcherId === first));
      assert.equal(exit.code, 0);
      // (Later submissions are continuations of the continuation, whose one-minute walltime is also short.)
      const events = readFileSync(join(runDir, 'launch', 'events.jsonl'), 'utf8')
        .trim()
        .split('\n')
        .map((l) => JSON.parse(l) as { kind: string; text: string });
      assert.ok(!events.some((e) => e.kind === 'replacement'), 'a clean walltime exit is not replaced');
      assert.ok(
        events.some((e) => e.kind === 'continuation' && e.text.includes(first)),
        'the continuation names the agent it continues',
      );
    } finally {
      await launcher.stop(3_000);
      left = squeueRun(launcher.scheduledJobName);
      await server.close().catch(() => undefined);
      await reader.catch(() => undefined);
      rmSync(join(runDir, '..'), { recursive: true, force: true });
    }
    assert.deepEqual(left, [], 'stop() leaves no job of the run in squeue');
  },
);
