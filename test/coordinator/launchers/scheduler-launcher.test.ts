// The batch launcher on a SimulatedClock, against an in-memory Slurm (sbatch/squeue/scancel answered by a RunCommand):
// polls come only from the clock, a continuation goes in exactly when a task's walltime is within the lead time,
// and stop() waits for the queue on the same clock, cancelling by force once its grace has passed. No real time.
import { test } from 'node:test';
import type { TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { SimulatedClock } from '../../../protocol/clock.ts';
import { compileClusterProfile } from '../../../coordinator/cluster-profile.ts';
import type { LauncherEvent } from '../../../coordinator/launchers/launcher-events.ts';
import type { CommandResult } from '../../../coordinator/launchers/scheduler-command.ts';
import { createSlurmLauncher } from '../../../coordinator/launchers/slurm.ts';
import { tempRunDir } from './harness.ts';

/** An in-memory Slurm: sbatch queues tasks (PENDING), squeue lists them, scancel ends them (or only with KILL). */
class FakeSlurm {
  readonly calls: string[][] = [];
  /** When set, a plain scancel is ignored (a scheduler slow to let go); only --signal=KILL ends tasks. */
  ignorePlainCancel = false;
  private readonly tasks = new Map<string, { submission: string; state: string }>();
  private next = 100;

  readonly run = (command: string, args: string[]): Promise<CommandResult> => {
    this.calls.push([command, ...args]);
    if (command === 'sbatch') {
      const id = String(this.next++);
      const array = /^--array=0-(\d+)$/.exec(args.find((a) => a.startsWith('--array=')) ?? '');
      if (array === null) this.tasks.set(id, { submission: id, state: 'PENDING' });
      else
        for (let i = 0; i <= Number(array[1]); i++) this.tasks.set(`${id}_${i}`, { submission: id, state: 'PENDING' });
      return Promise.resolve({ stdout: `${id}\n`, stderr: '', code: 0 });
    }
    if (command === 'squeue') {
      const lines = [...this.tasks].map(
        ([id, t]) => `${id}|${t.submission}|${t.state}|${t.state === 'CANCELLED' ? 15 : 0}|N/A|N/A|node1|None|`,
      );
      return Promise.resolve({ stdout: lines.join('\n') + '\n', stderr: '', code: 0 });
    }
    if (command === 'scancel') {
      const force = args.includes('--signal=KILL');
      if (force || !this.ignorePlainCancel)
        for (const [, t] of this.tasks) if (args.includes(t.submission)) t.state = 'CANCELLED';
      return Promise.resolve({ stdout: '', stderr: '', code: 0 });
    }
    return Promise.reject(new Error(`unexpected command ${command}`));
  };

  set(state: string, ...ids: string[]): void {
    for (const id of ids) this.tasks.get(id)!.state = state;
  }

  count(command: string): number {
    return this.calls.filter((c) => c[0] === command).length;
  }
}

const POLL_MS = 30_000;

function setUp(t: TestContext): {
  clock: SimulatedClock;
  slurm: FakeSlurm;
  launcher: ReturnType<typeof createSlurmLauncher>;
  events: LauncherEvent[];
  runDir: string;
} {
  // Ten minutes of walltime, a continuation one minute before the end.
  const profile = compileClusterProfile(
    {
      name: 'simulated',
      scheduler: 'slurm',
      queue: 'debug',
      walltime: '00:10:00',
      resources: { cpus: 1 },
      workdir: '/tmp',
      continuationLeadS: 60,
      pollIntervalS: POLL_MS / 1000,
      maxReplacements: 1,
    },
    'simulated.json',
  );
  const clock = new SimulatedClock(Date.UTC(2026, 10, 23, 12, 0, 0));
  const slurm = new FakeSlurm();
  const launcher = createSlurmLauncher(profile, { clock, run: slurm.run });
  const events: LauncherEvent[] = [];
  launcher.onEvent((e) => events.push(e));
  const { runDir, remove } = tempRunDir('pe-arena-sim-launcher-');
  t.after(async () => {
    // A failed test still cancels what it submitted and drops the exit hook; the clock moves the wait along.
    const stopped = launcher.stop(0);
    for (let i = 0; i < 10; i++) await clock.advance(500);
    await stopped;
    remove();
  });
  return { clock, slurm, launcher, events, runDir };
}

void test('simulated clock: polls come from the clock, continuations go in at walltime minus the lead', async (t) => {
  const { clock, slurm, launcher, events, runDir } = setUp(t);
  await launcher.start({ coordinator: 'tcp://127.0.0.1:5555', count: 2, runDir, agentArgs: [] });
  assert.equal(slurm.count('sbatch'), 1);
  assert.equal(slurm.count('squeue'), 0, 'no poll before the clock moves');

  await clock.advance(POLL_MS - 1);
  assert.equal(slurm.count('squeue'), 0, 'no poll before its interval');
  await clock.advance(1);
  assert.equal(slurm.count('squeue'), 1, 'one poll per interval');
  assert.deepEqual(
    events.filter((e) => e.kind === 'queued').map((e) => e.launcherId),
    ['100_0', '100_1'],
  );

  // Both start now (the squeue here has no StartTime, so the poll that sees them running dates them).
  slurm.set('RUNNING', '100_0', '100_1');
  await clock.advance(POLL_MS);
  const startedAt = clock.now();
  assert.equal(events.filter((e) => e.kind === 'running').length, 2);

  // Walltime ends at startedAt + 10 min; the lead is 1 min: nothing at 8.5 min, both continued at 9 min.
  await clock.advance(9 * 60_000 - POLL_MS);
  assert.equal(clock.now() - startedAt, 8.5 * 60_000);
  assert.equal(slurm.count('sbatch'), 1, 'no continuation before the lead time');
  await clock.advance(POLL_MS);
  const continued = events.filter((e) => e.kind === 'continuation');
  assert.deepEqual(continued.map((e) => e.launcherId).sort(), ['100_0', '100_1']);
  assert.equal(slurm.count('sbatch'), 3, 'one continuation per agent');
  assert.deepEqual(launcher.submissionIds(), ['100', '101', '102']);
  assert.ok(
    events.every((e) => Date.parse(e.at) <= clock.now()),
    'events are stamped with simulated time',
  );

  // Later polls do not continue a task twice.
  await clock.advance(2 * POLL_MS);
  assert.equal(slurm.count('sbatch'), 3);
});

void test('simulated clock: stop() waits on the injected clock and forces the cancel after the grace', async (t) => {
  const { clock, slurm, launcher, runDir } = setUp(t);
  await launcher.start({ coordinator: 'tcp://127.0.0.1:5555', count: 2, runDir, agentArgs: [] });
  slurm.set('RUNNING', '100_0', '100_1');
  await clock.advance(POLL_MS);
  assert.equal(launcher.alive(), 2);

  // The scheduler ignores the plain scancel: stop() polls every 500 ms of clock time, then cancels with KILL at 2 s.
  slurm.ignorePlainCancel = true;
  let done = false;
  const stopped = launcher.stop(2_000).then(() => (done = true));
  await clock.advance(0);
  assert.deepEqual(
    slurm.calls.filter((c) => c[0] === 'scancel'),
    [['scancel', '100']],
  );
  await clock.advance(1_500);
  assert.equal(done, false, 'still waiting for the queue within the grace');
  assert.ok(!slurm.calls.some((c) => c.includes('--signal=KILL')), 'no forced cancel within the grace');
  await clock.advance(500);
  assert.ok(
    slurm.calls.some((c) => c[0] === 'scancel' && c.includes('--signal=KILL')),
    'a forced cancel at the grace',
  );
  await clock.advance(500);
  await stopped;
  assert.equal(launcher.alive(), 0);
  assert.equal(clock.pending, 0, 'no timer is left behind (the poll interval is cleared)');
});
