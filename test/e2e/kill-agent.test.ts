// kill -9 of an agent mid-job (real training): the job finishes on the other agent, resumed from its last
// acknowledged checkpoint; its step counter continues from there, not from 0.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { readEventFile } from '../../coordinator/tensorboard/event-file.ts';
import {
  entries,
  exitWithin,
  killAll,
  killPid,
  logTail,
  pidOf,
  runsFixture,
  startRun,
  tinyRealExperiment,
  TWO_REAL_AGENTS,
  waitFor,
  writeExperiment,
} from './helpers.ts';

after(killAll);

void test(
  'kill -9 of a busy agent: its job resumes on the other agent from the checkpoint and the run completes',
  { timeout: 150_000 },
  async (t) => {
    const dir = runsFixture(t);
    const file = writeExperiment(
      dir,
      tinyRealExperiment(
        'kill-agent',
        { encodings: ['rope'], seeds: [1], training: { steps: 40, batchSize: 8, learningRate: 0.003 } },
        { checkpointEvery: 5 },
      ),
    );
    const { run, runDir, ctx } = await startRun(dir, file, TWO_REAL_AGENTS);
    const assigned = await waitFor('the job to be assigned', 60_000, () => entries(runDir, 'job_assigned')[0], ctx);
    // Wait for an acknowledged checkpoint past step 0, then kill the agent that holds the job.
    const ckpt = await waitFor(
      'a checkpoint',
      90_000,
      () => entries(runDir, 'checkpoint_acked').find((e) => e.kind === 'checkpoint' && e.checkpoint.step > 0),
      ctx,
    );
    assert.equal(entries(runDir, 'job_done').length, 0, 'the job is still running when it is killed');
    const pid = pidOf(runDir, assigned.agentId);
    assert.ok(pid !== undefined);
    killPid(pid, 'SIGKILL');

    const exit = await exitWithin(run, 120_000, () => logTail(runDir));
    assert.equal(exit.code, 0, ctx());
    const assigns = entries(runDir, 'job_assigned');
    assert.equal(assigns.length, 2, 'assigned twice: first agent, then the survivor');
    const second = assigns[1]!;
    assert.notEqual(second.agentId, assigned.agentId);
    assert.equal(second.epoch, 2);
    assert.ok(
      (second.resumeStep ?? 0) >= ckpt.checkpoint.step,
      `resumed from step ${second.resumeStep}, checkpoint was at ${ckpt.checkpoint.step}`,
    );
    assert.equal(entries(runDir, 'agent_lost')[0]?.agentId, assigned.agentId);

    // The survivor's metrics start right after the checkpoint's step.
    const jobId = assigned.jobId;
    const points = readFileSync(join(runDir, 'jobs', jobId, 'metrics.jsonl'), 'utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as { epoch: number; step: number });
    const resumedSteps = points.filter((p) => p.epoch === 2).map((p) => p.step);
    assert.ok(resumedSteps.length > 0);
    assert.equal(
      Math.min(...resumedSteps),
      (second.resumeStep ?? 0) + 1,
      'training continued from the checkpoint, not from 0',
    );
    assert.equal(Math.max(...resumedSteps), 40);
    // No step is missing: the points a checkpoint covers left the agent before the checkpoint did.
    assert.deepEqual(
      [...new Set(points.map((p) => p.step))].sort((x, y) => x - y),
      Array.from({ length: 40 }, (_, i) => i + 1),
    );
    const evaluation = JSON.parse(readFileSync(join(runDir, 'jobs', jobId, 'evaluation.json'), 'utf8')) as {
      steps: number;
    };
    assert.equal(evaluation.steps, 40);

    // TensorBoard saw every step once, although the survivor re-sent those after the checkpoint, and the evaluation.
    const tensorboardDir = join(runDir, 'tensorboard', jobId);
    const events = readdirSync(tensorboardDir).flatMap((file) => readEventFile(join(tensorboardDir, file)));
    const lossSteps = events.filter((e) => e.scalars?.some((s) => s.tag === 'train/loss')).map((e) => e.step);
    assert.deepEqual(
      lossSteps,
      Array.from({ length: 40 }, (_, i) => i + 1),
    );
    assert.ok(events.some((e) => e.step === 40 && e.scalars?.some((s) => s.tag === 'eval/exact_match')));
    assert.match(run.output() + logTail(runDir, 200), /lost on .* at step \d+; resumed on .* from step \d+/);
  },
);
