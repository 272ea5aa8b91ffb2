// The PBS launcher with FAKE qsub/qstat/qdel executables on PATH, for what a real scheduler (pbs-real.test.ts on
// OpenPBS, pbs-on-slurm.test.ts on Slurm's wrapper) will not show on demand: a server that does not answer, output
// that is no job listing, a failing qsub, trimming queued extras, taking over a half-finished array, and the
// Torque spelling. The fakes record their arguments and answer from files the test writes; qstat answers in PBS
// Pro's `qstat -f -F json` form (shape from the PBS Pro reference guide), which the launcher reads as well as the
// text form it asks for.
import { test } from 'node:test';
import type { TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync, existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';
import { loadClusterProfile } from '../../../coordinator/cluster-profile.ts';
import { createPbsLauncher } from '../../../coordinator/launchers/pbs.ts';
import type { LauncherEvent } from '../../../coordinator/launchers/launcher-events.ts';
import type { SchedulerLauncher } from '../../../coordinator/launchers/scheduler-launcher.ts';
import type { AgentExit } from '../../../coordinator/launchers/types.ts';
import { SchedulerCommandError } from '../../../coordinator/launchers/errors.ts';
import { repoRoot, tempRunDir } from './harness.ts';

function writeFakes(dir: string): void {
  const record = (name: string): string => `printf '%s\\n' "$@" > "$D/${name}.$(date +%s%N).args"`;
  const scripts: Record<string, string> = {
    qsub: `#!/bin/bash
D="$(dirname "$0")"
${record('qsub')}
if [ -f "$D/qsub.fail" ]; then echo "qsub: Unknown queue" >&2; exit 170; fi
n=$(cat "$D/next" 2>/dev/null || echo 100); echo $((n + 1)) > "$D/next"
for a in "$@"; do if [ "$a" = "-J" ]; then echo "$n[].pbs-test"; exit 0; fi; done
echo "$n.pbs-test"
`,
    qstat: `#!/bin/bash
D="$(dirname "$0")"
${record('qstat')}
if [ -f "$D/qstat.fail" ]; then echo "qstat: cannot connect to server pbs-test (errno=111)" >&2; exit 2; fi
cat "$D/qstat.json"
`,
    qdel: `#!/bin/bash
D="$(dirname "$0")"
${record('qdel')}
if [ -f "$D/qstat.after-qdel.json" ]; then cp "$D/qstat.after-qdel.json" "$D/qstat.json"; fi
`,
  };
  for (const [name, text] of Object.entries(scripts)) {
    writeFileSync(join(dir, name), text);
    chmodSync(join(dir, name), 0o755);
  }
}

/** Argument lists each fake was called with, oldest first. */
function calls(dir: string, name: string): string[][] {
  return readdirSync(dir)
    .filter((f) => f.startsWith(`${name}.`) && f.endsWith('.args'))
    .sort()
    .map((f) => readFileSync(join(dir, f), 'utf8').split('\n').slice(0, -1));
}

type Sub = { state: string; exit?: number; stime?: string };
function qstatJson(jobName: string, jobs: Record<string, Sub>): string {
  const out: Record<string, unknown> = {};
  for (const [id, j] of Object.entries(jobs)) {
    const arrayId = /\[\d+\]/.test(id) ? id.replace(/\[\d+\]/, '[]') : undefined;
    out[id] = {
      Job_Name: jobName,
      Job_Owner: 'user@login01',
      job_state: j.state,
      queue: 'debug',
      server: 'pbs-test',
      exec_host: j.state === 'R' ? 'cn042/0*1' : undefined,
      stime: j.stime,
      Resource_List: { ncpus: 1, nodect: 1, select: '1:ncpus=1', walltime: '00:30:00' },
      ...(arrayId === undefined ? {} : { array_id: arrayId, array_index: Number(/\[(\d+)\]/.exec(id)![1]) }),
      ...(j.exit === undefined ? {} : { Exit_status: j.exit }),
    };
  }
  return JSON.stringify({ timestamp: 1731533521, pbs_version: '2022.1.5', pbs_server: 'pbs-test', Jobs: out }, null, 4);
}

/**
 * The fakes first on PATH, an empty qstat, and a run directory named runId; `launcher` makes a pbs launcher of
 * test-pbs.json whose polls the test drives itself (pollNow). After the test, the launchers made are stopped
 * first, newest first (with PATH still on the fakes: this machine may have Slurm's torque wrappers, which wait 9 s
 * for a slurmctld that is not there); then PATH is put back and both directories go.
 */
async function fakePbs(
  t: TestContext,
  runId: string,
): Promise<{
  fakes: string;
  runDir: string;
  /** What the launchers made here reported through onExit, in order. */
  exits: AgentExit[];
  launcher(options?: { demand?: () => number }): SchedulerLauncher;
}> {
  const profile = await loadClusterProfile(join(repoRoot, 'configs', 'clusters', 'test-pbs.json'));
  const fakes = mkdtempSync(join(tmpdir(), 'pe-arena-fake-pbs-'));
  const { runDir, remove } = tempRunDir('pe-arena-pbs-run-', runId);
  writeFakes(fakes);
  writeFileSync(join(fakes, 'qstat.json'), '{"timestamp":1,"pbs_version":"2022.1.5","pbs_server":"pbs-test"}');
  const savedPath = process.env['PATH'];
  process.env['PATH'] = `${fakes}${delimiter}${savedPath ?? ''}`;
  const launchers: SchedulerLauncher[] = [];
  t.after(async () => {
    for (const l of launchers.reverse()) await l.stop(0);
    process.env['PATH'] = savedPath;
    rmSync(fakes, { recursive: true, force: true });
    remove();
  });
  const exits: AgentExit[] = [];
  return {
    fakes,
    runDir,
    exits,
    launcher: (options = {}) => {
      // A long interval: the test drives polls itself with pollNow().
      const l = createPbsLauncher(profile, { pollIntervalMs: 600_000, ...options });
      l.onExit((e) => exits.push(e));
      launchers.push(l);
      return l;
    },
  };
}

void test(
  'pbs launcher: qsub array, batched qstat, exit reports, capped replacement, trimming, stop, stderr in errors',
  { timeout: 30_000 },
  async (t) => {
    const fake = await fakePbs(t, '20261123-101500-pbsfake1');
    const { fakes, runDir, exits } = fake;
    let demand = 3;
    const launcher = fake.launcher({ demand: () => demand });
    const replaced = new Promise<LauncherEvent>((resolve) =>
      launcher.onEvent((e) => {
        if (e.kind === 'replacement' && e.submissionId !== undefined) resolve(e);
      }),
    );
    const name = (): string => launcher.scheduledJobName;
    await launcher.start({ coordinator: 'tcp://login01:5555', count: 3, runDir, agentArgs: ['--backend', 'cpu'] });

    // One qsub for three agents: an array, PBS Pro resources, -o/-j on the command line, the script last.
    const [qsub] = calls(fakes, 'qsub');
    assert.ok(qsub !== undefined);
    assert.equal(calls(fakes, 'qsub').length, 1);
    const script = join(runDir, 'launch', `${name()}-s1.sh`);
    assert.deepEqual(qsub.slice(0, 2), ['-N', name()]);
    assert.deepEqual(qsub.slice(qsub.indexOf('-J'), qsub.indexOf('-J') + 2), ['-J', '0-2']);
    assert.ok(qsub.includes('select=1:ncpus=1') && qsub.includes('walltime=00:30:00') && qsub.includes('oe'));
    assert.equal(qsub.at(-1), script);
    assert.ok(!qsub.includes('-P'), 'no project in this profile, so no -P');
    const text = readFileSync(script, 'utf8');
    assert.match(text, /^#PBS -J 0-2$/m);
    assert.match(text, /PBS_JOBID/);

    // All three running: one qstat for the whole array.
    writeFileSync(
      join(fakes, 'qstat.json'),
      qstatJson(name(), {
        '100[0].pbs-test': { state: 'R' },
        '100[1].pbs-test': { state: 'R' },
        '100[2].pbs-test': { state: 'R' },
      }),
    );
    await launcher.pollNow();
    assert.deepEqual(calls(fakes, 'qstat').at(-1), ['-f', '-t', '-x', '100[].pbs-test']);
    assert.equal(launcher.alive(), 3);
    assert.deepEqual(
      launcher.tasksSnapshot().map((t) => [t.launcherId, t.state, t.schedulerState, t.host]),
      [0, 1, 2].map((i) => [`100[${i}].pbs-test`, 'running', 'R', 'cn042']),
    );
    assert.deepEqual(
      launcher.schedulerTasks().map((t) => `${t.launcherId} ${t.kind} ${t.state} ${t.schedulerState} ${t.host}`),
      [0, 1, 2].map((i) => `100[${i}].pbs-test initial running R cn042`),
      'the live status reply carries the same view',
    );
    const onDisk = JSON.parse(readFileSync(join(runDir, 'launch', 'tasks.json'), 'utf8')) as {
      tasks: { schedulerState: string }[];
    };
    assert.deepEqual(
      onDisk.tasks.map((t) => t.schedulerState),
      ['R', 'R', 'R'],
      'launch/tasks.json holds the scheduler states for pe-arena status',
    );
    assert.equal(exits.length, 0);

    // One subjob deleted (PBS reports 256 + SIGTERM): reported once, and replaced with a one-task submission.
    writeFileSync(
      join(fakes, 'qstat.json'),
      qstatJson(name(), {
        '100[0].pbs-test': { state: 'R' },
        '100[1].pbs-test': { state: 'F', exit: 271 },
        '100[2].pbs-test': { state: 'R' },
      }),
    );
    await launcher.pollNow();
    assert.deepEqual(exits, [{ pid: 0, launcherId: '100[1].pbs-test', code: null, signal: 'SIGTERM' }]);
    // The replacement is submitted in the background: its event says qsub has answered.
    assert.equal((await replaced).submissionId, '101.pbs-test');
    const replacement = calls(fakes, 'qsub')[1];
    assert.ok(replacement !== undefined, 'a replacement was submitted');
    assert.ok(!replacement.includes('-J'), 'a one-task submission is a plain job');
    assert.deepEqual(launcher.submissionIds(), ['100[].pbs-test', '101.pbs-test']);
    await launcher.pollNow();
    assert.equal(exits.length, 1, 'an ended task is reported once');

    // The run now needs only two agents: the queued replacement is cancelled.
    demand = 2;
    writeFileSync(
      join(fakes, 'qstat.json'),
      qstatJson(name(), {
        '100[0].pbs-test': { state: 'R' },
        '100[1].pbs-test': { state: 'F', exit: 271 },
        '100[2].pbs-test': { state: 'R' },
        '101.pbs-test': { state: 'Q' },
      }),
    );
    await launcher.pollNow();
    assert.deepEqual(calls(fakes, 'qdel').at(-1), ['101.pbs-test']);

    // A failing qsub puts its stderr in the error.
    writeFileSync(join(fakes, 'qsub.fail'), '');
    await assert.rejects(launcher.submit('replacement', 1), (error: unknown) => {
      assert.ok(error instanceof SchedulerCommandError);
      assert.match(error.message, /qsub failed \(exit 170\).*Unknown queue/);
      return true;
    });
    rmSync(join(fakes, 'qsub.fail'));

    // stop(): qdel of everything the run submitted; afterwards qstat shows nothing of it alive.
    writeFileSync(
      join(fakes, 'qstat.after-qdel.json'),
      qstatJson(name(), {
        '100[0].pbs-test': { state: 'F', exit: 271 },
        '100[1].pbs-test': { state: 'F', exit: 271 },
        '100[2].pbs-test': { state: 'F', exit: 271 },
        '101.pbs-test': { state: 'F', exit: 271 },
      }),
    );
    await launcher.stop(2_000);
    const qdel = calls(fakes, 'qdel').at(-1) ?? [];
    assert.ok(
      qdel.includes('100[].pbs-test') && qdel.includes('101.pbs-test'),
      `stop deletes every submission, got ${JSON.stringify(qdel)}`,
    );
    assert.equal(launcher.alive(), 0);
    assert.ok(existsSync(join(runDir, 'launch', 'events.jsonl')));
  },
);

void test(
  'pbs launcher: a qstat that cannot reach its server, or prints no job records, changes nothing and reports no one',
  { timeout: 30_000 },
  async (t) => {
    const fake = await fakePbs(t, '20261123-101500-pbsdown1');
    const { fakes, runDir, exits } = fake;
    const launcher = fake.launcher();
    const failed: string[] = [];
    launcher.onEvent((e) => {
      if (e.kind === 'poll_failed') failed.push(e.text);
    });
    await launcher.start({ coordinator: 'tcp://login01:5555', count: 2, runDir, agentArgs: [] });
    const name = launcher.scheduledJobName;
    const running = qstatJson(name, { '100[0].pbs-test': { state: 'R' }, '100[1].pbs-test': { state: 'R' } });
    writeFileSync(join(fakes, 'qstat.json'), running);
    await launcher.pollNow();
    const before = launcher.tasksSnapshot();
    assert.deepEqual(
      before.map((s) => s.state),
      ['running', 'running'],
    );

    // The server is down: qstat exits 2 with nothing listed.
    writeFileSync(join(fakes, 'qstat.fail'), '');
    await launcher.pollNow();
    assert.match(failed.at(-1) ?? '', /qstat exited 2: qstat: cannot connect to server pbs-test/);
    rmSync(join(fakes, 'qstat.fail'));
    // qstat answers 0 but with something that is no job listing, in text or as broken JSON.
    for (const garbage of ['<html><body>502 Bad Gateway</body></html>\n', '{"Jobs": {"100[0].pbs-test": ']) {
      writeFileSync(join(fakes, 'qstat.json'), garbage);
      await launcher.pollNow();
    }
    assert.equal(failed.length, 3, failed.join('\n'));
    assert.match(failed[1]!, /qstat printed no job records: "<html>/);
    assert.match(failed[2]!, /not JSON/);
    assert.deepEqual(launcher.tasksSnapshot(), before, 'the last known states are kept');
    assert.deepEqual(exits, [], 'no agent is reported lost on a poll that said nothing');
    assert.equal(launcher.alive(), 2);
    writeFileSync(
      join(fakes, 'qstat.after-qdel.json'),
      qstatJson(name, { '100[0].pbs-test': { state: 'F', exit: 0 }, '100[1].pbs-test': { state: 'F', exit: 0 } }),
    );
  },
);

void test('pbs launcher: dry run writes the script and submits nothing', async (t) => {
  const { runDir, remove } = tempRunDir('pe-arena-pbs-dry-', '20261123-101500-pbsdry01');
  t.after(remove);
  const profile = await loadClusterProfile(join(repoRoot, 'configs', 'clusters', 'torque.json'));
  // A qsub that must never run: submitting through it would throw.
  const launcher = createPbsLauncher(profile, {
    dryRun: true,
    run: () => Promise.reject(new Error('dry run must not run commands')),
  });
  await launcher.start({ coordinator: 'tcp://login01:5555', count: 4, runDir, agentArgs: [] });
  const script = launcher.dryRunScript ?? '';
  assert.match(script, /^#PBS -t 0-3$/m, 'Torque arrays are -t');
  assert.match(script, /^#PBS -l nodes=1:ppn=8:gpus=1$/m);
  assert.match(script, /^#PBS -A |^#PBS -q batch$/m);
  assert.match(
    script,
    /--keys-dir "\$\{HOME\}"'\/\.pe-arena\/keys'/,
    'keys are named by directory, $HOME expanded on the node',
  );
  assert.deepEqual(launcher.submissionIds(), []);
  assert.equal(readFileSync(join(runDir, 'launch', `${launcher.scheduledJobName}-s1.sh`), 'utf8'), script);
});

void test(
  'pbs launcher of a resumed run takes over the earlier coordinator’s live tasks and submits only the rest',
  { timeout: 30_000 },
  async (t) => {
    const fake = await fakePbs(t, '20261123-101500-pbsadopt');
    const { fakes, runDir } = fake;
    // The first launcher stands for a killed coordinator: stopping it only drops its exit hook.
    const [first, second, third] = [fake.launcher(), fake.launcher(), fake.launcher()];
    const request = { coordinator: 'tcp://login01:5555', count: 3, runDir, agentArgs: [] };
    await first.start(request);
    assert.deepEqual(first.submissionIds(), ['100[].pbs-test']);
    const name = first.scheduledJobName;
    // The first coordinator is killed (its launcher never cancels anything). One task finished, one runs, one
    // is still queued.
    writeFileSync(
      join(fakes, 'qstat.json'),
      qstatJson(name, {
        '100[0].pbs-test': { state: 'F', exit: 0 },
        '100[1].pbs-test': { state: 'R' },
        '100[2].pbs-test': { state: 'Q' },
      }),
    );
    const events: string[] = [];
    second.onEvent((e) => events.push(`${e.kind}: ${e.text}`));
    await second.start({ ...request, adopt: ['100[].pbs-test'] });
    assert.equal(second.adopted, 2);
    assert.equal(calls(fakes, 'qsub').length, 2, 'one more qsub, for the one agent missing');
    const qsub = calls(fakes, 'qsub').at(-1) ?? [];
    assert.ok(!qsub.includes('-J'), `a single agent is a plain job, got ${JSON.stringify(qsub)}`);
    assert.equal(qsub.at(-1), join(runDir, 'launch', `${name}-s2.sh`), 'numbering goes on after the earlier scripts');
    assert.deepEqual(second.submissionIds(), ['100[].pbs-test', '101.pbs-test']);
    assert.equal(second.alive(), 3, '2 taken over + 1 submitted');
    assert.ok(events.some((e) => /^adopted: took over 2 queued or running agent\(s\)/.test(e)));
    // At the end the taken-over submission is deleted with the new one.
    // (qdel ends them all; 271 = killed by PBS, which would ask for replacements if the run went on.)
    const allEnded = qstatJson(name, {
      '100[0].pbs-test': { state: 'F', exit: 0 },
      '100[1].pbs-test': { state: 'F', exit: 271 },
      '100[2].pbs-test': { state: 'F', exit: 271 },
      '101.pbs-test': { state: 'F', exit: 271 },
      '102[0].pbs-test': { state: 'F', exit: 0 },
      '102[1].pbs-test': { state: 'F', exit: 0 },
      '102[2].pbs-test': { state: 'F', exit: 0 },
    });
    writeFileSync(join(fakes, 'qstat.after-qdel.json'), allEnded);
    await second.stop(0);
    const qdel = calls(fakes, 'qdel').at(-1) ?? [];
    assert.ok(qdel.includes('100[].pbs-test') && qdel.includes('101.pbs-test'), JSON.stringify(qdel));

    // A submission with nothing left alive is dropped, and everything is submitted anew; its tasks that ended
    // under an earlier coordinator (two of them killed) are not replaced.
    await third.start({ ...request, adopt: ['100[].pbs-test'] });
    assert.equal(third.adopted, 0);
    assert.deepEqual(third.submissionIds(), ['102[].pbs-test']);
    assert.equal(calls(fakes, 'qsub').at(-1)?.at(-1), join(runDir, 'launch', `${name}-s3.sh`));
  },
);
