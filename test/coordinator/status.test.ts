import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { AgentId, JobId, RunId, StatusReply } from '../../protocol/messages.ts';
import { replay, type StampedEntry } from '../../coordinator/journal.ts';
import { formatStatus, schedulerTasksFromRunDir, statusFromCoordinator } from '../../coordinator/status.ts';
import { clientCurve, initKeys, loadClusterKeys, serverCurve } from '../../protocol/keys.ts';
import { bindServer } from '../../protocol/zmq-transport.ts';
import { tempDir } from './helpers.ts';

const empty: StatusReply = { type: 'status', runId: 'r1' as RunId, experiment: 'x', jobs: [], agents: [] };

void test('status shows the scheduler state of each batch task written by the launcher', (t) => {
  const { dir, cleanup } = tempDir();
  t.after(cleanup);
  mkdirSync(join(dir, 'launch'));
  writeFileSync(
    join(dir, 'launch', 'tasks.json'),
    JSON.stringify({
      at: '2026-11-23T16:00:00Z',
      jobName: 'pe-arena-r1',
      tasks: [
        { launcherId: '12_0', kind: 'initial', state: 'running', schedulerState: 'RUNNING', host: 'node1' },
        { launcherId: '12_1', kind: 'initial', state: 'queued', schedulerState: 'PENDING' },
        { bogus: true },
      ],
    }),
  );
  const tasks = schedulerTasksFromRunDir(dir);
  assert.deepEqual(
    tasks.map((t) => t.launcherId),
    ['12_0', '12_1'],
  );
  const text = formatStatus(empty, tasks);
  assert.match(text, /scheduler task/);
  assert.match(text, /12_0\s+initial\s+running\s+RUNNING\s+node1/);
  assert.match(text, /12_1\s+initial\s+queued\s+PENDING\s+-/);
});

void test('a run without a batch launcher, or with a damaged tasks.json, shows no scheduler tasks and says why', (t) => {
  const { dir, cleanup } = tempDir();
  t.after(cleanup);
  assert.deepEqual(schedulerTasksFromRunDir(dir), []);
  mkdirSync(join(dir, 'launch'));
  writeFileSync(join(dir, 'launch', 'tasks.json'), '{"tasks": [');
  const warnings: string[] = [];
  assert.deepEqual(
    schedulerTasksFromRunDir(dir, (l) => warnings.push(l)),
    [],
  );
  assert.equal(warnings.length, 1);
  assert.match(warnings[0] ?? '', /tasks\.json: unreadable/);
  assert.doesNotMatch(formatStatus(empty), /scheduler task/);
});

void test('status tcp:// reaches a coordinator that runs with CURVE only with its keys, and says so without', async (t) => {
  const { dir, cleanup } = tempDir();
  t.after(cleanup);
  const pair = await loadClusterKeys((await initKeys(join(dir, 'keys'))).dir);
  const server = await bindServer({ address: 'tcp://127.0.0.1:0', curve: serverCurve(pair) });
  t.after(() => server.close());
  const reply: StatusReply = {
    ...empty,
    schedulerTasks: [{ launcherId: '9_0', kind: 'initial', state: 'queued', schedulerState: 'PENDING' }],
  };
  void (async () => {
    for await (const item of server.inbound())
      if (item.kind === 'message' && item.message.type === 'status_request') await server.send(item.from, reply);
  })();
  const status = await statusFromCoordinator(server.address, { curve: clientCurve(pair), timeoutMs: 10_000 });
  assert.deepEqual(status.schedulerTasks, reply.schedulerTasks);
  await assert.rejects(
    statusFromCoordinator(server.address, { timeoutMs: 500 }),
    /no answer from tcp:\/\/127\.0\.0\.1:\d+ within 500 ms \(a coordinator with CURVE on answers only with --keys-dir\)/,
  );
});

void test("a gang's generation and members: folded from the journal, shown by status", () => {
  const entries = [
    { t: 1, type: 'run_started', runId: 'r1', experiment: 'x', jobs: ['j'], address: 'tcp://h:1' },
    { t: 2, type: 'job_assigned', jobId: 'j', agentId: 'a', attempt: 1, epoch: 1 },
    {
      t: 3,
      type: 'gang_formed',
      jobId: 'j',
      epoch: 1,
      generation: 1,
      members: ['a', 'b', 'c'],
      reason: 'placed',
      step: 0,
    },
    { t: 4, type: 'gang_formed', jobId: 'j', epoch: 1, generation: 2, members: ['b', 'c'], reason: 'a gone', step: 77 },
  ] as StampedEntry[];
  const job = replay(entries).jobs.get('j' as JobId);
  assert.deepEqual(job?.gang, { generation: 2, members: ['b', 'c'] });
  assert.equal(job?.agentId, 'b', 'rank 0 of the last generation holds the job');
  assert.equal(job?.step, 77);
  const text = formatStatus({
    ...empty,
    jobs: [
      {
        jobId: 'j' as JobId,
        encoding: 'rope',
        task: 'addition',
        seed: 1,
        state: 'running',
        attempt: 1,
        epoch: 1,
        step: 80,
        totalSteps: 100,
        agentId: 'b' as AgentId,
        gang: { generation: 2, members: ['b' as AgentId, 'c' as AgentId] },
      },
    ],
  });
  assert.match(text, /gang gen 2: b, c/);
});
