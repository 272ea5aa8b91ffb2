// A whole run through the pbs launcher on the real OpenPBS of .ci/setup-openpbs.sh, the case issue 26 found broken:
// the real Coordinator on a real socket, 2 agents from one `qsub -J` array for 2 jobs (fake workload), one agent's
// subjob qdel-ed mid-job. The launcher reports it lost and submits a replacement (there is work for two agents),
// the lost job resumes from its last acknowledged checkpoint on the replacement, the run completes with every
// evaluation, and afterwards qstat -x shows nothing of the run queued or running.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { bindServer } from '../../../protocol/zmq-transport.ts';
import { newRunId } from '../../../protocol/ids.ts';
import type { RunId } from '../../../protocol/messages.ts';
import { Coordinator } from '../../../coordinator/coordinator.ts';
import type { RunOutcome } from '../../../coordinator/coordinator.ts';
import { compileExperiment } from '../../../coordinator/experiment.ts';
import { loadClusterProfile } from '../../../coordinator/cluster-profile.ts';
import { createPbsLauncher } from '../../../coordinator/launchers/pbs.ts';
import type { LauncherEvent } from '../../../coordinator/launchers/launcher-events.ts';
import { entries } from '../../e2e/helpers.ts';
import {
  fakeWorkload,
  openPbs,
  openPbsSkipReason,
  qstatRun,
  quickExperiment,
  repoRoot,
  tempRunDir,
  waitFor,
} from './harness.ts';

const skip = openPbsSkipReason();

void test(
  "a run through qsub on OpenPBS completes on a replacement after one agent's subjob is qdel-ed mid-job",
  { skip: skip ?? false, timeout: 150_000 },
  async (t) => {
    const runId = newRunId() as RunId;
    const { runDir, remove } = tempRunDir('pe-arena-openpbs-run-', runId);
    // 300 steps of 60 ms: the other agent is still busy with its own job when the replacement joins.
    const experiment = compileExperiment(
      quickExperiment('openpbs-run', { steps: 300, params: { stepDelayMs: 60 }, maxAttempts: 4 }),
      'openpbs-run.json',
      runId,
    );
    const server = await bindServer({ address: 'tcp://127.0.0.1:0' });
    const profile = await loadClusterProfile(join(repoRoot, 'configs', 'clusters', 'test-openpbs.json'));
    const ref: { coordinator?: Coordinator } = {};
    // The run's demand, as `pe-arena run` sizes it: jobs not finished yet.
    const launcher = createPbsLauncher(profile, {
      pollIntervalMs: 1_000,
      demand: () => {
        const c = ref.coordinator?.scheduler.counts();
        return c === undefined ? 2 : c.pending + c.assigned + c.running + c.evaluating;
      },
    });
    const replacements: LauncherEvent[] = [];
    launcher.onEvent((e) => {
      if (e.kind === 'replacement' && e.submissionId !== undefined) replacements.push(e);
    });
    const coordinator = new Coordinator({ experiment, runDir, transport: server, launcher, drainMs: 3_000 });
    ref.coordinator = coordinator;
    let finished = false;
    let launcherStopped = false;
    t.after(async () => {
      if (!finished) await coordinator.stop('test over');
      if (!launcherStopped) await launcher.stop(3_000);
      await server.close().catch(() => undefined);
      remove();
    });
    coordinator.start();
    await launcher.start({
      coordinator: server.address,
      count: 2,
      runDir,
      agentArgs: ['--workload-module', fakeWorkload, '--death-timeout-ms', '20000'],
    });
    const arrayId = launcher.submissionIds()[0]!;
    const c = coordinator;
    await waitFor('2 agents to join', 60_000, () => (c.agents.size >= 2 ? true : undefined));
    assert.deepEqual(
      [...c.agents.values()].map((a) => a.launcherId).sort(),
      [0, 1].map((i) => arrayId.replace('[]', `[${i}]`)),
      'every agent joined with its subjob id',
    );
    const busy = await waitFor('a job past step 20', 60_000, () => {
      const job = [...c.scheduler.jobs.values()].find(
        (j) => j.state === 'running' && j.step >= 20 && j.agentId !== undefined,
      );
      return job === undefined ? undefined : { job, agent: c.agents.get(job.agentId!)! };
    });
    openPbs('qdel', [busy.agent.launcherId!]);
    const outcome: RunOutcome = await c.done;
    finished = true;
    assert.equal(outcome.done, 2);
    assert.equal(outcome.failed, 0);
    for (const job of experiment.jobs)
      assert.ok(existsSync(join(runDir, 'jobs', job.jobId, 'evaluation.json')), `${job.jobId} has its evaluation`);

    assert.equal(replacements.length, 1, 'one replacement for the one qdel-ed subjob');
    const replacementId = replacements[0]!.submissionId!;
    const joined = entries(runDir, 'agent_joined').find((e) => e.launcherId === replacementId);
    assert.ok(joined !== undefined, `the replacement ${replacementId} joined`);
    const again = entries(runDir, 'job_assigned').filter((e) => e.jobId === busy.job.spec.jobId && e.epoch > 1);
    assert.ok(
      again.some((e) => e.agentId === joined.agentId),
      `the lost job went to the replacement: ${JSON.stringify(again)}`,
    );
    assert.ok((again[0]?.resumeStep ?? 0) >= 10, 'and resumed from an acknowledged checkpoint, not from step 0');

    await launcher.stop(3_000);
    launcherStopped = true;
    assert.deepEqual(qstatRun(launcher.scheduledJobName), [], 'nothing of the run queued or running (qstat -x)');
  },
);
