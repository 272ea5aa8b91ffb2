// The coordinator's logic on the memory transport with a simulated clock: placement, failure detection,
// fencing, reassignment from checkpoints, corrupt uploads, journal replay, bad input.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { PROTOCOL_VERSION } from '../../protocol/messages.ts';
import type { Assign, JobId } from '../../protocol/messages.ts';
import { metricsMessage } from '../../protocol/metric-columns.ts';
import { readJournal, replay } from '../../coordinator/journal.ts';
import {
  evaluationFor,
  fakeLauncher,
  settle,
  smallExperiment,
  startCoordinator,
  tempDir,
  withCoordinator,
} from './helpers.ts';
import type { FakeAgent, Harness } from './helpers.ts';

async function finishJob(h: Harness, agent: FakeAgent, assign: Assign): Promise<void> {
  await agent.metrics(assign.job.jobId, assign.epoch, 1, assign.job.training.steps);
  await agent.upload(assign.job.jobId, assign.epoch, assign.job.training.steps, 'final');
  await agent.result(assign.job, assign.epoch);
}

void test('two agents, four jobs: every job is placed, one per agent, and every result is written', async (t) => {
  const h = withCoordinator(t, smallExperiment());
  const dir = h.runDir;
  const a = h.agent('agent-a');
  const b = h.agent('agent-b');
  await a.hello();
  await b.hello();
  assert.equal(a.of('welcome').length, 1);
  assert.equal(b.of('welcome').length, 1);
  // One job per agent: two assigned, two still pending.
  assert.equal(a.of('assign').length, 1);
  assert.equal(b.of('assign').length, 1);
  assert.equal(h.coordinator.scheduler.counts().pending, 2);
  for (let round = 0; round < 2; round++) {
    for (const agent of [a, b]) {
      const assign = agent.lastAssign();
      assert.ok(assign);
      await finishJob(h, agent, assign);
    }
  }
  await h.advance(200);
  const counts = h.coordinator.scheduler.counts();
  assert.equal(counts.done, 4);
  for (const job of h.experiment.jobs) {
    assert.ok(existsSync(join(dir, 'jobs', job.jobId, 'evaluation.json')), `${job.jobId} evaluation.json`);
    assert.ok(existsSync(join(dir, 'jobs', job.jobId, 'final_model', 'model.bin')), `${job.jobId} final model`);
  }
  const outcome = await Promise.race([h.coordinator.done, h.advance(2000).then(() => h.coordinator.done)]);
  assert.equal(outcome.done, 4);
  // Once the run is over (the sink closed), every job's metrics are on disk.
  for (const job of h.experiment.jobs) {
    assert.equal(
      readFileSync(join(dir, 'jobs', job.jobId, 'metrics.jsonl'), 'utf8')
        .trim()
        .split('\n').length,
      job.training.steps,
    );
  }
  const report = JSON.parse(readFileSync(join(dir, 'final_comparison', 'comparison_report.json'), 'utf8')) as {
    rows: { encoding: string; seeds: number }[];
  };
  assert.deepEqual(report.rows.map((r) => [r.encoding, r.seeds]).sort(), [
    ['nope', 2],
    ['rope', 2],
  ]);
  assert.ok(a.of('shutdown').length === 1, 'agents are told to shut down at the end');
});

void test('a silent agent goes suspect, then dead; its job resumes elsewhere from the last acknowledged checkpoint', async (t) => {
  const h = withCoordinator(t, smallExperiment({ encodings: ['rope'], seeds: [1] }));
  const dir = h.runDir;
  const a = h.agent('agent-a');
  await a.hello();
  const first = a.lastAssign();
  assert.ok(first);
  assert.equal(first.epoch, 1);
  assert.equal(first.resumeFrom, undefined);
  const jobId = first.job.jobId;
  await a.metrics(jobId, 1, 1, 25);
  await a.upload(jobId, 1, 20, 'checkpoint');
  assert.equal(a.of('checkpoint_ack').at(-1)?.ok, true);
  const b = h.agent('agent-b');
  await b.hello();
  await b.sync();
  assert.equal(b.of('assign').length, 0, 'b waits: the job is still on a');
  // b keeps heartbeating, a goes silent.
  for (let i = 0; i < 5; i++) {
    await b.heartbeat();
    await h.advance(100);
  }
  const snap = h.coordinator.snapshot();
  assert.equal(
    snap.agents.find((x) => x.agentId === 'agent-a')?.state,
    'suspect',
    'silent past suspectAfterMs: suspect',
  );
  await b.sync();
  assert.equal(b.of('assign').length, 0, 'suspect is not dead');
  for (let i = 0; i < 8; i++) {
    await b.heartbeat();
    await h.advance(100);
  }
  const moved = b.lastAssign();
  assert.ok(moved, 'the job moved to b after the failure timeout');
  assert.equal(moved.epoch, 2);
  assert.equal(moved.attempt, 2);
  assert.equal(moved.resumeFrom?.step, 20);
  assert.ok(
    h.coordinator.events.some(
      (e) => e.kind === 'reassigned' && /lost on agent-a at step 25; resumed on agent-b from step 20/.test(e.text),
    ),
  );
  // b pulls the checkpoint and gets exactly what a uploaded.
  await b.send({ type: 'checkpoint_request', jobId, epoch: 2, checkpointId: moved.resumeFrom!.checkpointId });
  await settle(20);
  const chunks = b.of('checkpoint_chunk');
  assert.ok(chunks.length >= 1);
  assert.equal(chunks[0]?.sha256, moved.resumeFrom?.sha256);
  // a comes back with stale messages: it is unknown now, so it is rejected and must rejoin.
  await a.metrics(jobId, 1, 26, 30);
  await settle();
  assert.match(a.of('reject').at(-1)?.reason ?? '', /unknown agent/);
  // b finishes the job.
  await finishJob(h, b, moved);
  await h.advance(200);
  assert.equal(h.coordinator.scheduler.get(jobId)?.state, 'done');
  // Metrics are written in the background; closing the coordinator flushes them.
  await h.close();
  const metrics = readFileSync(join(dir, 'jobs', jobId, 'metrics.jsonl'), 'utf8')
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l) as { step: number; epoch: number });
  assert.ok(!metrics.some((m) => m.epoch === 1 && m.step > 25), 'stale metrics never reach the sink');
});

void test('fencing: a known agent sending an old epoch gets cancel and nothing is recorded', async (t) => {
  const h = withCoordinator(t, smallExperiment({ encodings: ['rope'], seeds: [1] }));
  const dir = h.runDir;
  const a = h.agent('agent-a');
  await a.hello();
  const assign = a.lastAssign()!;
  await a.send({
    type: 'job_result',
    jobId: assign.job.jobId,
    epoch: assign.epoch + 5,
    evaluation: evaluationFor(assign.job),
  });
  await settle();
  const cancel = a.of('cancel').at(-1);
  assert.ok(cancel);
  assert.equal(cancel.epoch, assign.epoch + 5);
  assert.equal(h.coordinator.scheduler.get(assign.job.jobId)?.state, 'assigned');
  assert.ok(!existsSync(join(dir, 'jobs', assign.job.jobId, 'evaluation.json')));
  // An unknown job id is also answered, not crashed on.
  await a.send(metricsMessage('nope-nothing-s9' as JobId, 1, []));
  await settle();
  assert.equal(a.of('cancel').length, 2);
});

void test('a corrupt or incomplete checkpoint upload is refused with checkpoint_ack ok:false; a good resend is stored', async (t) => {
  const h = withCoordinator(t, smallExperiment({ encodings: ['rope'], seeds: [1] }));
  const dir = h.runDir;
  const a = h.agent('agent-a');
  await a.hello();
  const { job, epoch } = a.lastAssign()!;
  const id = await a.upload(job.jobId, epoch, 10, 'checkpoint', { corrupt: true });
  let ack = a.of('checkpoint_ack').at(-1);
  assert.equal(ack?.ok, false);
  assert.match(ack?.reason ?? '', /sha256/);
  assert.equal(h.coordinator.scheduler.get(job.jobId)?.checkpoints.length, 0);
  await a.upload(job.jobId, epoch, 10, 'checkpoint', { id, dropChunk: 2 });
  ack = a.of('checkpoint_ack').at(-1);
  assert.equal(ack?.ok, false);
  assert.match(ack?.reason ?? '', /missing chunks 2/);
  await a.upload(job.jobId, epoch, 10, 'checkpoint', { id });
  ack = a.of('checkpoint_ack').at(-1);
  assert.equal(ack?.ok, true);
  const files = readdirSync(join(dir, 'jobs', job.jobId, 'checkpoints'));
  assert.equal(files.length, 1);
  assert.ok(!files.some((f) => f.includes('.tmp')));
});

void test('only the last K checkpoints per job are kept', async (t) => {
  const h = withCoordinator(t, smallExperiment({ encodings: ['rope'], seeds: [1] }, { keepCheckpoints: 2 }));
  const dir = h.runDir;
  const a = h.agent('agent-a');
  await a.hello();
  const { job, epoch } = a.lastAssign()!;
  for (const step of [10, 20, 30, 40]) await a.upload(job.jobId, epoch, step, 'checkpoint');
  const files = readdirSync(join(dir, 'jobs', job.jobId, 'checkpoints')).sort();
  assert.equal(files.length, 2);
  assert.match(files[0] ?? '', /^000000030-/);
  assert.match(files[1] ?? '', /^000000040-/);
});

void test('job_failed: not retryable fails at once; retryable re-queues until the attempt cap', async (t) => {
  const h = withCoordinator(t, smallExperiment({ encodings: ['rope'], seeds: [1, 2] }, { maxAttempts: 2 }));
  const a = h.agent('agent-a');
  await a.hello();
  const first = a.lastAssign()!;
  await a.send({
    type: 'job_failed',
    jobId: first.job.jobId,
    epoch: first.epoch,
    error: { name: 'NonFiniteLossError', message: 'loss is NaN', retryable: false },
  });
  await settle();
  assert.equal(h.coordinator.scheduler.get(first.job.jobId)?.state, 'failed');
  const second = a.lastAssign()!;
  assert.notEqual(second.job.jobId, first.job.jobId);
  await a.send({
    type: 'job_failed',
    jobId: second.job.jobId,
    epoch: second.epoch,
    error: { name: 'OOM', message: 'out of memory', retryable: true },
  });
  await settle();
  const again = a.lastAssign()!;
  assert.equal(again.job.jobId, second.job.jobId);
  assert.equal(again.attempt, 2);
  await a.send({
    type: 'job_failed',
    jobId: again.job.jobId,
    epoch: again.epoch,
    error: { name: 'OOM', message: 'out of memory', retryable: true },
  });
  await settle();
  assert.equal(h.coordinator.scheduler.get(second.job.jobId)?.state, 'failed', 'two attempts used: failed');
  const outcome = await Promise.race([h.coordinator.done, h.advance(2000).then(() => h.coordinator.done)]);
  assert.equal(outcome.failed, 2);
});

void test('bad input: a wrong version is rejected naming both versions, garbage is logged, and the coordinator keeps serving', async (t) => {
  const warnings: string[] = [];
  const log = {
    debug() {},
    info() {},
    warn: (_o: object, m: string) => void warnings.push(m),
    error: (_o: object, m: string) => void warnings.push(m),
  };
  const h = withCoordinator(t, smallExperiment({ encodings: ['rope'], seeds: [1] }), { extra: { log } });
  const old = h.agent('agent-old');
  await old.hello(PROTOCOL_VERSION + 1);
  const reject = old.of('reject').at(-1);
  assert.ok(reject);
  assert.match(
    reject.reason,
    new RegExp(`${PROTOCOL_VERSION}.*${PROTOCOL_VERSION + 1}|${PROTOCOL_VERSION + 1}.*${PROTOCOL_VERSION}`),
  );
  assert.ok(warnings.some((w) => w.includes(String(PROTOCOL_VERSION + 1))));
  await old.client.sendRaw(Uint8Array.from([0xc1, 0xff, 0x00, 0x13]));
  await old.client.sendRaw(new TextEncoder().encode('hello?'));
  await settle();
  assert.ok(
    warnings.some((w) => /malformed/.test(w) && w.includes(old.client.id)),
    'malformed input is logged with the peer',
  );
  // A heartbeat from someone who never said hello gets reject 'unknown agent'.
  const stranger = h.agent('stranger');
  await stranger.heartbeat();
  await settle();
  assert.match(stranger.of('reject').at(-1)?.reason ?? '', /unknown agent/);
  // And a good agent still gets work.
  const good = h.agent('agent-good');
  await good.hello();
  assert.ok(good.lastAssign());
  // status_request needs no hello.
  await stranger.sync();
  const status = stranger.of('status').at(-1);
  assert.equal(status?.jobs.length, 1);
  assert.equal(status?.agents[0]?.agentId, 'agent-good');
});

void test('journal replay: a restarted coordinator does not rerun done jobs and resumes running ones from their checkpoints', async (t) => {
  const { dir, cleanup } = tempDir();
  // Both coordinators (the crashed one and its successor) close, and the run directory goes, whatever happens.
  const started: Harness[] = [];
  t.after(async () => {
    for (const h of started) await h.close();
    cleanup();
  });
  const experiment = smallExperiment({ encodings: ['rope'], seeds: [1, 2] });
  const h1 = startCoordinator(experiment, dir);
  started.push(h1);
  let doneJob: JobId;
  let runningJob: JobId;
  {
    const a = h1.agent('agent-a');
    const b = h1.agent('agent-b');
    await a.hello();
    await b.hello();
    const aa = a.lastAssign()!;
    const bb = b.lastAssign()!;
    await finishJob(h1, a, aa);
    doneJob = aa.job.jobId;
    runningJob = bb.job.jobId;
    await b.metrics(runningJob, bb.epoch, 1, 35);
    await b.upload(runningJob, bb.epoch, 30, 'checkpoint');
    // The "crash": the transport goes away without any drain; the journal is all that is left.
    a.autoBye = false;
    b.autoBye = false;
    await h1.close();
    await a.close();
    await b.close();
  }
  const run = replay(readJournal(join(dir, 'journal.jsonl')));
  assert.equal(run.jobs.get(doneJob)?.state, 'done');
  assert.equal(run.jobs.get(runningJob)?.checkpoints.at(-1)?.step, 30);

  const h2 = startCoordinator(experiment, dir, { resume: run });
  started.push(h2);
  assert.equal(h2.coordinator.scheduler.get(doneJob)?.state, 'done');
  assert.equal(h2.coordinator.scheduler.get(runningJob)?.state, 'pending');
  const c = h2.agent('agent-c');
  await c.hello();
  const resumed = c.lastAssign()!;
  assert.equal(resumed.job.jobId, runningJob, 'only the unfinished job is assigned');
  assert.equal(resumed.resumeFrom?.step, 30);
  assert.ok(resumed.epoch > 1, 'a new epoch fences the old assignment');
  assert.equal(resumed.attempt, 1, 'a coordinator restart does not use up an attempt');
  await finishJob(h2, c, resumed);
  const outcome = await Promise.race([h2.coordinator.done, h2.advance(2000).then(() => h2.coordinator.done)]);
  assert.equal(outcome.done, 2);
  assert.equal(c.of('assign').length, 1, 'the done job never ran again');
});

void test('the progress watchdog declares an agent lost when its step stops advancing', async (t) => {
  const h = withCoordinator(t, smallExperiment({ encodings: ['rope'], seeds: [1] }, { watchdogMs: 600 }));
  const a = h.agent('agent-a');
  await a.hello();
  const { job, epoch } = a.lastAssign()!;
  await a.metrics(job.jobId, epoch, 1, 5);
  // Heartbeats keep coming, the step does not move.
  for (let i = 0; i < 10; i++) {
    await a.heartbeat({ jobId: job.jobId, epoch, step: 5 });
    await h.advance(100);
  }
  assert.equal(h.coordinator.scheduler.get(job.jobId)?.state, 'pending');
  assert.ok(h.coordinator.events.some((e) => e.kind === 'lost' && /no progress past step 5/.test(e.text)));
});

void test('placement honours job.needs: a gpu job waits for a gpu agent', async (t) => {
  const h = withCoordinator(t, smallExperiment({ encodings: ['rope'], seeds: [1], needs: { gpu: true } }));
  const cpu = h.agent('agent-cpu');
  await cpu.hello();
  await cpu.sync();
  assert.equal(cpu.of('assign').length, 0);
  assert.ok(
    h.coordinator.events.some((e) => /pending jobs need \{"gpu":true\}; no idle agent matches/.test(e.text)),
    'the mismatch is said, not silent',
  );
  const gpu = h.agent('agent-gpu');
  await gpu.send({
    type: 'hello',
    version: PROTOCOL_VERSION,
    agentId: gpu.agentId,
    host: 'g',
    pid: 1,
    backend: 'tensorflow-gpu',
    devices: [{ kind: 'gpu', name: 'H100' }],
  });
  await settle();
  assert.equal(gpu.of('assign').length, 1);
});

void test('an agent that keeps saying idle while holding a job gets the job taken back (after a grace period)', async (t) => {
  const h = withCoordinator(t, smallExperiment({ encodings: ['rope'], seeds: [1] }));
  const a = h.agent('agent-a');
  await a.hello();
  const first = a.lastAssign()!;
  await a.heartbeat();
  await h.advance(100);
  assert.equal(
    h.coordinator.scheduler.get(first.job.jobId)?.state,
    'assigned',
    'an idle heartbeat right after assign is forgiven',
  );
  for (let i = 0; i < 25; i++) {
    await a.heartbeat();
    await h.advance(100);
  }
  const again = a.lastAssign()!;
  assert.equal(again.epoch, first.epoch + 1, 'taken back and assigned again, with a new epoch');
  assert.equal(again.attempt, first.attempt, 'not counted as a failed attempt');
});

void test('a known agent reconnecting under a new routing id keeps its job (recognised by id or by current epoch)', async (t) => {
  const h = withCoordinator(t, smallExperiment({ encodings: ['rope'], seeds: [1] }));
  const a = h.agent('agent-a');
  await a.hello();
  const { job, epoch } = a.lastAssign()!;
  // Same agent, new connection (a new routing id): its heartbeat is answered, not rejected.
  const again = h.agent('agent-a');
  await again.heartbeat({ jobId: job.jobId, epoch, step: 3 });
  await again.sync();
  assert.equal(again.of('reject').length, 0);
  assert.equal(again.of('heartbeat_ack').length, 1);
  // A third connection that only sends metrics of the current epoch is recognised too.
  const third = h.agent('agent-a');
  await third.metrics(job.jobId, epoch, 4, 6);
  await third.sync();
  assert.equal(third.of('reject').length, 0);
  assert.equal(h.coordinator.scheduler.get(job.jobId)?.step, 6);
  // But an old epoch from a new connection is not the job's holder: rejected.
  const impostor = h.agent('agent-x');
  await impostor.metrics(job.jobId, epoch - 1, 7, 8);
  await settle();
  assert.match(impostor.of('reject').at(-1)?.reason ?? '', /unknown agent/);
});

void test("the launcher's word that a process is gone declares its agent lost at once, without waiting for heartbeats", async (t) => {
  const h = withCoordinator(t, smallExperiment({ encodings: ['rope'], seeds: [1] }));
  const fake = fakeLauncher();
  h.coordinator.attachLauncher(fake.launcher);
  const a = h.agent('agent-a');
  await a.hello(); // pid 4242 (see FakeAgent.hello)
  const { job } = a.lastAssign()!;
  fake.exit({ pid: 9999, code: 1, signal: null });
  await settle();
  assert.equal(h.coordinator.scheduler.get(job.jobId)?.state, 'assigned', 'another pid changes nothing');
  fake.exit({ pid: 4242, code: null, signal: 'SIGKILL' });
  await settle();
  assert.equal(h.coordinator.scheduler.get(job.jobId)?.state, 'pending');
  assert.ok(
    h.coordinator.events.some((e) => e.kind === 'lost' && /process 4242 exited \(signal SIGKILL\)/.test(e.text)),
  );
});

void test("a batch launcher's exit (pid 0) finds its agent by hello.launcherId; launcher events reach the journal and the view", async (t) => {
  const h = withCoordinator(t, smallExperiment({ encodings: ['rope'], seeds: [1] }));
  const dir = h.runDir;
  const fake = fakeLauncher({
    name: 'fake-batch',
    schedulerTasks: () => [
      { launcherId: '17_0', kind: 'initial', state: 'running', schedulerState: 'RUNNING', host: 'testhost' },
      { launcherId: '17_1', kind: 'initial', state: 'queued', schedulerState: 'PENDING' },
    ],
  });
  h.coordinator.attachLauncher(fake.launcher);
  // The live status carries the scheduler's view of every task (what `pe-arena status tcp://...` prints).
  const watcher = h.agent('watcher');
  await watcher.sync();
  assert.deepEqual(
    watcher
      .of('status')
      .at(-1)
      ?.schedulerTasks?.map((t) => `${t.launcherId} ${t.state} ${t.schedulerState}`),
    ['17_0 running RUNNING', '17_1 queued PENDING'],
  );
  const a = h.agent('agent-a');
  await a.send({
    type: 'hello',
    version: PROTOCOL_VERSION,
    agentId: a.agentId,
    host: 'testhost',
    pid: 4242,
    backend: 'cpu',
    devices: [{ kind: 'cpu', name: 'test' }],
    launcherId: '17_0',
  });
  await settle();
  const { job } = a.lastAssign()!;
  fake.exit({ pid: 0, launcherId: '17_1', code: null, signal: 'SIGTERM' });
  await settle();
  assert.equal(h.coordinator.scheduler.get(job.jobId)?.state, 'assigned', 'another task changes nothing');
  fake.exit({ pid: 0, code: null, signal: 'SIGTERM' });
  await settle();
  assert.equal(
    h.coordinator.scheduler.get(job.jobId)?.state,
    'assigned',
    'pid 0 without a launcherId matches no agent',
  );
  h.coordinator.noteLauncherEvent({
    kind: 'ended',
    text: '17_0 ended: CANCELLED',
    launcherId: '17_0',
    exitCode: null,
  });
  fake.exit({ pid: 0, launcherId: '17_0', code: null, signal: 'SIGTERM' });
  await settle();
  assert.equal(h.coordinator.scheduler.get(job.jobId)?.state, 'pending');
  assert.ok(h.coordinator.events.some((e) => e.kind === 'lost' && /task 17_0 exited \(signal SIGTERM\)/.test(e.text)));
  assert.ok(
    h.coordinator.events.some(
      (e) => e.kind === 'launcher' && e.text === '17_0 ended: CANCELLED' && e.agentId === a.agentId,
    ),
  );
  const journal = readFileSync(join(dir, 'journal.jsonl'), 'utf8');
  assert.match(
    journal,
    /"type":"launcher_event","kind":"ended","text":"17_0 ended: CANCELLED","launcherId":"17_0","exitCode":null/,
  );
});

void test('a message the coordinator fails to handle is answered with the error, its stack, and not retryable', async (t) => {
  const log = {
    debug() {},
    info: (_o: object, m: string) => {
      if (m.includes('joined')) throw new Error('the log is full');
    },
    warn() {},
    error() {},
  };
  const h = withCoordinator(t, smallExperiment({ encodings: ['rope'], seeds: [1] }), { extra: { log } });
  const a = h.agent('agent-a');
  await a.hello();
  await a.sync();
  const error = a.of('error').at(-1);
  assert.ok(error, 'the agent hears what went wrong');
  assert.equal(error.context, 'hello');
  assert.equal(error.error.message, 'the log is full');
  assert.equal(error.error.retryable, false, 'the same message would fail the same way');
  assert.match(error.error.stack ?? '', /the log is full/);
});
