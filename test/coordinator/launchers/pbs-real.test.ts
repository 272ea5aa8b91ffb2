// The PBS launcher against a REAL PBS Pro: the OpenPBS 23.06 of .ci/setup-openpbs.sh on this host (queue workq,
// commands in /opt/pbs/bin, named by the profile's commandsDir) and a real coordinator socket. One `qsub -J` array
// says hello with its subjob ids (PBS_JOBID, 12[0].localhost); every poll is one `qstat -f -t -x` for all of the
// run's submissions; `qdel` of ONE subjob is reported and replaced even though the agent exits 0 on the SIGTERM;
// an agent drains at its walltime margin while a continuation takes over; stop() leaves nothing of the run queued
// or running (qstat -x); a refused qsub carries PBS's own words. Skips, saying why, where /opt/pbs/bin/qstat is
// missing or its server does not answer.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { compileClusterProfile, loadClusterProfile } from '../../../coordinator/cluster-profile.ts';
import { SchedulerCommandError } from '../../../coordinator/launchers/errors.ts';
import { execCommand } from '../../../coordinator/launchers/scheduler-command.ts';
import type { RunCommand } from '../../../coordinator/launchers/scheduler-command.ts';
import {
  agentProcessesExited,
  assertEventKinds,
  launcherHarness,
  openpbs,
  repoRoot,
  walltimeScenario,
} from './harness.ts';

const skip = openpbs.skipReason();

/** The real commands, each call recorded as [command, ...args]. */
function recordingRun(): { run: RunCommand; calls: string[][] } {
  const calls: string[][] = [];
  return {
    calls,
    run: (command, args, options) => {
      calls.push([command, ...args]);
      return execCommand(command, args, options);
    },
  };
}

void test(
  'pbs launcher on OpenPBS: a qsub -J array hellos, qstat polls are batched, qdel of one subjob is replaced, stop empties the queue',
  { skip: skip ?? false, timeout: 120_000 },
  async (t) => {
    const profile = await loadClusterProfile(join(repoRoot, openpbs.profile));
    const { run, calls } = recordingRun();
    const launcher = openpbs.createLauncher(profile, { pollIntervalMs: 1_000, run });
    const h = await launcherHarness(t, launcher, { prefix: 'pe-arena-openpbs-', queue: openpbs.leftovers });
    await h.start(3);
    const [arrayId] = launcher.submissionIds();
    assert.equal(launcher.submissionIds().length, 1, 'one qsub for three agents');
    assert.match(arrayId ?? '', /^\d+\[\]\.localhost$/, 'qsub -J answers with an array id');
    assert.deepEqual(calls[0]?.slice(0, 3), ['/opt/pbs/bin/qsub', '-N', launcher.scheduledJobName], 'from commandsDir');
    const script = readFileSync(join(h.runDir, 'launch', `${launcher.scheduledJobName}-s1.sh`), 'utf8');
    assert.match(script, /^#PBS -J 0-2$/m);

    // Every agent says hello with its own subjob id, as PBS_JOBID names it.
    const launcherIds = new Set<string | undefined>();
    await h.hellos.until('3 hellos', (hello) => launcherIds.add(hello.launcherId).size >= 3);
    const subjobs = [0, 1, 2].map((i) => openpbs.taskId(arrayId!, i));
    assert.deepEqual([...launcherIds].sort(), subjobs);
    for (const id of subjobs)
      await h.events.until(`${id} seen running`, (e) => e.kind === 'running' && e.launcherId === id);

    // qdel ONE subjob, as an admin or a user would: the agent drains and exits 0 on the SIGTERM, yet it did not
    // choose to leave, so the launcher reports it lost and submits a replacement (the profile allows 2).
    const victim = subjobs[1]!;
    openpbs.cancel([victim]);
    const exit = await h.exits.until('the exit report', (e) => e.launcherId === victim);
    assert.deepEqual(
      [exit.pid, exit.code, exit.signal],
      [0, null, 'SIGTERM'],
      'a qdel is a lost agent, not a clean exit',
    );
    const replacement = await h.events.until(
      'a replacement',
      (e) => e.kind === 'replacement' && e.submissionId !== undefined,
    );
    const replacementId = replacement.submissionId!;
    assert.equal(launcher.submissionIds()[1], replacementId);
    await h.hellos.until("the replacement's hello", (hello) => hello.launcherId === replacementId);
    // The replacement is seen by the same batched poll as the array (OpenPBS's -F json would list the array only).
    await h.events.until('the replacement seen running', (e) => e.kind === 'running' && e.launcherId === replacementId);
    assert.deepEqual(
      h.exits.items.map((e) => e.launcherId),
      [victim],
      'only the qdel-ed subjob was reported',
    );
    const polls = calls.filter((c) => c[0] === '/opt/pbs/bin/qstat');
    assert.ok(polls.length >= 3, `polled (${polls.length} qstat calls)`);
    for (const poll of polls)
      assert.deepEqual(poll.slice(1, 4), ['-f', '-t', '-x'], 'every poll is one qstat -f -t -x');
    assert.ok(
      polls.some((p) => p.includes(arrayId!) && p.includes(replacementId)),
      'one qstat asks for every submission of the run',
    );
    assertEventKinds(h.runDir, ['submitted', 'running', 'ended', 'replacement']);

    assert.deepEqual(await h.stopAndList(), [], 'stop() leaves nothing of the run queued or running (qstat -x)');
    assert.ok(
      calls.some((c) => c[0] === '/opt/pbs/bin/qdel' && c.includes(arrayId!) && c.includes(replacementId)),
      'stop qdel-s every submission',
    );
    await agentProcessesExited(h.hellos, 15_000);
  },
);

void test(
  'pbs launcher on OpenPBS: an agent drains at its walltime margin and a continuation takes over',
  { skip: skip ?? false, timeout: 120_000 },
  (t) => walltimeScenario(t, openpbs),
);

void test(
  "pbs launcher on OpenPBS: a qsub that refuses the submission puts PBS's own words in the error",
  { skip: skip ?? false, timeout: 30_000 },
  async (t) => {
    const base = JSON.parse(readFileSync(join(repoRoot, openpbs.profile), 'utf8')) as Record<string, unknown>;
    const profile = compileClusterProfile({ ...base, queue: 'nosuchq' }, 'openpbs-no-queue.json');
    const launcher = openpbs.createLauncher(profile, { pollIntervalMs: 1_000 });
    const h = await launcherHarness(t, launcher, { prefix: 'pe-arena-openpbs-', queue: openpbs.leftovers });
    await assert.rejects(h.start(2), (error: unknown) => {
      assert.ok(error instanceof SchedulerCommandError);
      assert.match(error.message, /^qsub failed \(exit \d+\) submitting .*: qsub: Unknown queue/);
      return true;
    });
    assert.deepEqual(launcher.submissionIds(), [], 'nothing was submitted');
    assert.ok(
      h.events.items.some((e) => e.kind === 'submit_failed' && /Unknown queue/.test(e.text)),
      'the failure is an event too',
    );
  },
);
