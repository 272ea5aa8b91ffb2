// The batch launcher on a SimulatedClock, against an in-memory Slurm (sbatch/squeue/scancel answered by a RunCommand):
// polls come only from the clock, a continuation goes in exactly when a task's walltime is within the lead time,
// and stop() waits for the queue on the same clock, cancelling by force once its grace has passed. Polls back off
// while nothing changes (twice the wait per quiet poll, up to the cap) and come back to the base pace on a change,
// a submission or pollSoon(). No real time.
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
  /** The clock time of each call, in the order of `calls`. */
  readonly times: number[] = [];
  /** When set, a plain scancel is ignored (a scheduler slow to let go); only --signal=KILL ends tasks. */
  ignorePlainCancel = false;
  private readonly tasks = new Map<string, { submission: string; state: string }>();
  private next = 100;

  constructor(private readonly clock: SimulatedClock) {}

  readonly run = (command: string, args: string[]): Promise<CommandResult> => {
    this.calls.push([command, ...args]);
    this.times.push(this.clock.now());
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

  /** When each call of `command` came, in seconds after `from`. */
  secondsOf(command: string, from: number): number[] {
    return this.calls.flatMap((c, i) => (c[0] === command ? [(this.times[i]! - from) / 1000] : []));
  }
}

const POLL_MS = 30_000;

function setUp(
  t: TestContext,
  site: Record<string, unknown> = {},
  options: { demand?: () => number } = {},
): {
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
      ...site,
    },
    'simulated.json',
  );
  const clock = new SimulatedClock(Date.UTC(2026, 10, 23, 12, 0, 0));
  const slurm = new FakeSlurm(clock);
  const launcher = createSlurmLauncher(profile, { clock, run: slurm.run, ...options });
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
  assert.equal(slurm.count('squeue'), 1, 'the first poll one interval after the submission');
  assert.deepEqual(
    events.filter((e) => e.kind === 'queued').map((e) => e.launcherId),
    ['100_0', '100_1'],
  );

  // Both start now (the squeue here has no StartTime, so the poll that sees them running dates them).
  slurm.set('RUNNING', '100_0', '100_1');
  await clock.advance(POLL_MS);
  const startedAt = clock.now();
  assert.equal(events.filter((e) => e.kind === 'running').length, 2);

  // Walltime ends at startedAt + 10 min; the lead is 1 min: nothing at 8.5 min, both continued at 9 min (the
  // polls back off meanwhile, but never past the time a continuation falls due).
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
  assert.equal(clock.pending, 0, 'no timer is left behind (the next poll is cleared)');
  assert.equal(launcher.pollWaitMs, POLL_MS, 'the pace is back at the base');
  // A departure after stop (agents saying bye to a closing coordinator) polls nothing.
  const polls = slurm.count('squeue');
  launcher.pollSoon();
  await clock.advance(10 * POLL_MS);
  assert.equal(slurm.count('squeue'), polls);
  assert.equal(clock.pending, 0);
});

/** Two hours of walltime: no continuation falls due within these tests, so only the back-off paces the polls. */
const LONG = { walltime: '02:00:00' };
const request = (runDir: string): Parameters<ReturnType<typeof createSlurmLauncher>['start']>[0] => ({
  coordinator: 'tcp://127.0.0.1:5555',
  count: 2,
  runDir,
  agentArgs: [],
});

void test('back-off: each quiet poll doubles the wait up to the cap (8 x the base); a change brings the base back', async (t) => {
  const { clock, slurm, launcher, runDir } = setUp(t, LONG);
  const t0 = clock.now();
  await launcher.start(request(runDir));
  await clock.advance(1_000_000);
  // 30: the tasks appear (a change); then quiet polls 30, 60, 120 and 240 s apart, and 240 (the cap) from then on.
  assert.deepEqual(slurm.secondsOf('squeue', t0), [30, 60, 120, 240, 480, 720, 960]);
  assert.equal(launcher.pollWaitMs, 240_000);

  // A task starts: the poll at 1200 sees it, and the waits start again from the base.
  slurm.set('RUNNING', '100_0');
  await clock.advance(300_000);
  assert.deepEqual(slurm.secondsOf('squeue', t0).slice(7), [1200, 1230, 1290]);
  assert.equal(launcher.pollWaitMs, 120_000);
  assert.equal(slurm.count('sbatch'), 1, 'quiet polls submit nothing');
});

void test('back-off: a submission brings the base pace back at once', async (t) => {
  const { clock, slurm, launcher, runDir } = setUp(t, LONG, { demand: () => 3 });
  const t0 = clock.now();
  await launcher.start(request(runDir));
  await clock.advance(500_000);
  assert.deepEqual(slurm.secondsOf('squeue', t0), [30, 60, 120, 240, 480], 'backed off: the next poll is due at 720');

  // An extra agent at 500 s: polled for 30 s later, not at 720; it appears (a change), so the base holds once more.
  await launcher.submit('replacement', 1);
  await clock.advance(130_000);
  assert.deepEqual(slurm.secondsOf('squeue', t0).slice(5), [530, 560, 620]);
});

void test('pollSoon: polls at once and goes back to the base; a burst of calls polls at most once a second', async (t) => {
  const { clock, slurm, launcher, runDir } = setUp(t, LONG);
  const t0 = clock.now();
  await launcher.start(request(runDir));
  await clock.advance(500_000);
  assert.equal(launcher.pollWaitMs, 240_000);

  launcher.pollSoon();
  await clock.advance(0);
  assert.deepEqual(slurm.secondsOf('squeue', t0).slice(5), [500], 'polled at once');
  // That poll saw nothing new, yet the pace is back at the base: the next one 30 s later.
  await clock.advance(31_000);
  assert.deepEqual(slurm.secondsOf('squeue', t0).slice(5), [500, 530]);

  // (590: a quiet poll, 60 s on.) Three departures at 600 s: one poll at once and, as it was in flight when the
  // others came, one more a second later (its answer may predate them); then the waits grow again from the base.
  await clock.advance(69_000);
  launcher.pollSoon();
  launcher.pollSoon();
  launcher.pollSoon();
  await clock.advance(70_000);
  assert.deepEqual(slurm.secondsOf('squeue', t0).slice(5), [500, 530, 590, 600, 601, 661]);
});

void test('pollSoon on a lost agent: its replacement is submitted at once, not after the backed-off wait', async (t) => {
  const { clock, slurm, launcher, events, runDir } = setUp(t, LONG);
  const t0 = clock.now();
  await launcher.start(request(runDir));
  slurm.set('RUNNING', '100_0', '100_1');
  await clock.advance(1_000_000);
  assert.deepEqual(slurm.secondsOf('squeue', t0), [30, 60, 120, 240, 480, 720, 960]);
  assert.equal(launcher.pollWaitMs, 240_000, 'the next timed poll would come at 1200');

  // 100_0 is cancelled (exit 15) and the coordinator, which lost its agent, asks for a poll.
  slurm.set('CANCELLED', '100_0');
  launcher.pollSoon();
  await clock.advance(0);
  assert.deepEqual(slurm.secondsOf('sbatch', t0), [0, 1000], 'the replacement goes in at 1000 s');
  assert.deepEqual(
    events.filter((e) => e.kind === 'replacement').map((e) => [e.launcherId, e.submissionId]),
    [['100_0', '101']],
  );
  assert.equal(launcher.pollWaitMs, 30_000, 'the change and the submission bring the base pace back');
});
