// Parsing what the schedulers print: squeue --Format (captured on the loopback Slurm), qstat -f text (Slurm's
// torque wrapper, Torque) and qstat -f -F json (PBS Pro, shape from its reference guide).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseSlurmTime, parseSqueue, slurmDialect } from '../../../coordinator/launchers/slurm.ts';
import {
  parsePbsTime,
  parseQstatJson,
  parseQstatText,
  pbsDialect,
  pbsTasks,
} from '../../../coordinator/launchers/pbs.ts';

const fixture = (name: string): string => readFileSync(join(import.meta.dirname, 'fixtures', name), 'utf8');

void test('squeue: states, exit statuses, times and hosts', () => {
  const byId = new Map(parseSqueue(fixture('squeue.txt')).map((s) => [s.id, s]));
  assert.equal(byId.size, 7);
  assert.deepEqual(
    [...byId.values()].map((s) => [s.id, s.state, s.submissionId]),
    [
      ['25_3', 'ended', '25'],
      ['25_1', 'ending', '25'],
      ['25_2', 'ended', '25'],
      ['25_0', 'running', '25'],
      ['25_4', 'queued', '25'],
      ['25_5', 'ended', '25'],
      ['31', 'ended', '31'],
    ],
  );
  assert.equal(byId.get('25_3')!.exitCode, 0);
  assert.equal(byId.get('25_3')!.signal, null);
  assert.equal(byId.get('25_2')!.exitCode, 3, 'raw wait status 768 is exit 3');
  assert.deepEqual([byId.get('25_5')!.exitCode, byId.get('25_5')!.signal], [null, 'SIGTERM']);
  assert.deepEqual([byId.get('31')!.exitCode, byId.get('31')!.signal], [null, 'SIGTERM']);
  const running = byId.get('25_0')!;
  assert.equal(running.host, 'node1');
  assert.equal(running.endsAt! - running.startedAt!, 30 * 60 * 1000);
  assert.equal(byId.get('25_4')!.startedAt, undefined);
  assert.equal(parseSlurmTime('N/A'), undefined);
  assert.equal(parseSlurmTime('NONE'), undefined);
});

void test('squeue: garbage lines are skipped, not fatal', () => {
  assert.deepEqual(
    parseSqueue('slurm_load_jobs error: Invalid job id specified\n\n|||\n12_[0-3]|12|PENDING|0|N/A|N/A||None|\n'),
    [],
  );
});

void test('sbatch --parsable and the poll command', () => {
  assert.equal(slurmDialect.parseSubmitId('4711\n'), '4711');
  assert.equal(slurmDialect.parseSubmitId('4711;cluster2\n'), '4711');
  assert.throws(() => slurmDialect.parseSubmitId('sbatch: error: Batch job submission failed'));
  const poll = slurmDialect.pollCommand('pea-x', ['1', '2']);
  assert.equal(poll.command, 'squeue');
  assert.ok(poll.args.includes('--name=pea-x') && poll.args.includes('--states=all') && poll.args.includes('--array'));
  assert.deepEqual(slurmDialect.cancelCommand(['12', '13_1'], false), { command: 'scancel', args: ['12', '13_1'] });
});

void test("qstat -f text from Slurm's torque wrapper and from Torque", () => {
  const wrapper = parseQstatText(fixture('qstat-wrapper.txt'));
  assert.deepEqual(
    wrapper.map((j) => [j.id, j.attrs['job_state'], j.attrs['Resource_List.walltime']]),
    [
      ['2', 'R', '8760:00:00'],
      ['3', 'C', '8760:00:00'],
    ],
  );
  const tasks = pbsTasks(wrapper, 'pe-test');
  assert.deepEqual(
    tasks.map((t) => [t.id, t.state, t.host]),
    [
      ['2', 'running', 'node1'],
      ['3', 'ended', 'node1'],
    ],
  );

  const torque = parseQstatText(fixture('qstat-torque.txt'));
  assert.equal(torque.length, 3);
  assert.equal(
    torque[0]!.attrs['Variable_List'],
    'PBS_O_QUEUE=batch,PBS_O_HOME=/home/alice,PBS_O_LANG=C,PBS_O_WORKDIR=/home/alice/pe-arena',
    'a wrapped value is joined',
  );
  const ours = pbsTasks(torque, 'pea-abc');
  assert.deepEqual(
    ours.map((t) => t.id),
    ['7001[0].torque-srv.example.org', '7001[1].torque-srv.example.org'],
    'another job name is not ours',
  );
  assert.equal(ours[0]!.submissionId, '7001[].torque-srv.example.org');
  assert.equal(ours[0]!.startedAt, 1763907000 * 1000);
  assert.equal(ours[0]!.endsAt, (1763907000 + 12 * 3600) * 1000);
  assert.deepEqual([ours[1]!.exitCode, ours[1]!.signal], [null, 'SIGTERM'], '271 = 256 + SIGTERM');
});

void test('qstat -f -F json (PBS Pro): subjobs, finished history, parents left out, Jobs absent when empty', () => {
  const json = JSON.stringify({
    timestamp: 1618432467,
    pbs_version: '20.0.1',
    pbs_server: 'pbs01',
    Jobs: {
      '1008[].pbs01': { Job_Name: 'pea-q', job_state: 'B', array: 'True', array_indices_submitted: '0-2' },
      '1008[0].pbs01': {
        Job_Name: 'pea-q',
        job_state: 'R',
        exec_host: 'cn01/0*8',
        stime: 'Mon Nov 23 14:28:37 2026',
        Resource_List: { ncpus: 8, ngpus: 1, walltime: '04:00:00' },
        array_id: '1008[].pbs01',
        array_index: 0,
      },
      '1008[1].pbs01': { Job_Name: 'pea-q', job_state: 'X', Exit_status: 0, array_id: '1008[].pbs01', array_index: 1 },
      '1008[2].pbs01': { Job_Name: 'pea-q', job_state: 'Q', array_id: '1008[].pbs01', array_index: 2 },
      '1010.pbs01': { Job_Name: 'pea-q', job_state: 'F', Exit_status: -1 },
    },
  });
  const tasks = pbsTasks(parseQstatJson(json), 'pea-q');
  assert.deepEqual(
    tasks.map((t) => [t.id, t.state]),
    [
      ['1008[0].pbs01', 'running'],
      ['1008[1].pbs01', 'ended'],
      ['1008[2].pbs01', 'queued'],
      ['1010.pbs01', 'ended'],
    ],
  );
  assert.equal(tasks[0]!.endsAt! - tasks[0]!.startedAt!, 4 * 3600 * 1000);
  assert.equal(tasks[0]!.host, 'cn01');
  assert.equal(tasks[1]!.exitCode, 0);
  assert.equal(tasks[3]!.exitCode, -1, "a job that failed to start keeps PBS's negative code");
  assert.equal(tasks[3]!.submissionId, undefined, 'a plain job is matched to its submission by the launcher');
  assert.deepEqual(parseQstatJson('{"timestamp":1,"pbs_version":"2024.1","pbs_server":"gadi"}'), []);
  assert.throws(() => parseQstatJson('{"Jobs": [1,2]}'), /not an object/);
  assert.throws(() => parseQstatJson('<html>'), /not JSON/);
  assert.equal(parsePbsTime('Mon Nov 23 14:28:37 2026'), new Date(2026, 10, 23, 14, 28, 37).getTime());
});

// What OpenPBS 23.06 printed for `qstat -f -t -x` (trimmed) after `qdel '4[1].localhost'` of a task whose job
// trapped SIGTERM and exited 0, next to a task that ran to its end and one that failed.
const OPENPBS_TEXT = [
  'Job Id: 4[].localhost',
  '    Job_Name = pea-x',
  '    job_state = B',
  '    substate = 70',
  '    array = True',
  '',
  'Job Id: 4[0].localhost',
  '    Job_Name = pea-x',
  '    job_state = R',
  '    exec_host = localhost/0',
  '    Resource_List.walltime = 00:30:00',
  '    stime = Mon Dec  7 08:00:30 2026',
  '    substate = 42',
  '    Variable_List = PBS_O_HOME=/root,PBS_O_LANG=C.UTF-8,',
  '\tPBS_O_SHELL=/bin/bash,PBS_O_WORKDIR=/tmp/pbsx,',
  '\tPBS_O_SYSTEM=Linux,PBS_O_QUEUE=workq,PBS_O_HOST=localhost',
  '    array_id = 4[].localhost',
  '',
  'Job Id: 4[1].localhost',
  '    Job_Name = pea-x',
  '    job_state = X',
  '    substate = 91',
  '    comment = Job run at Mon Dec 07 at 08:00 on (localhost:ncpus=1) and terminated by root@localhost',
  '    Exit_status = 0',
  '    array_id = 4[].localhost',
  '',
  'Job Id: 4[2].localhost',
  '    Job_Name = pea-x',
  '    job_state = F',
  '    substate = 92',
  '    Exit_status = 0',
  '    array_id = 4[].localhost',
  '',
  'Job Id: 5.localhost',
  '    Job_Name = pea-x',
  '    job_state = F',
  '    substate = 93',
  '    Exit_status = 1',
  '',
].join('\n');

void test("OpenPBS qstat -f text: a qdel'd task (substate 91) is lost even when it exited 0; a finished one is not", () => {
  const tasks = pbsDialect('pbspro').parsePoll({ code: 0, stdout: OPENPBS_TEXT, stderr: '' }, 'pea-x');
  assert.deepEqual(
    tasks.map((t) => [t.id, t.state, t.submissionId, t.exitCode, t.signal]),
    [
      ['4[0].localhost', 'running', '4[].localhost', undefined, undefined],
      ['4[1].localhost', 'ended', '4[].localhost', null, 'SIGTERM'],
      ['4[2].localhost', 'ended', '4[].localhost', 0, null],
      ['5.localhost', 'ended', undefined, 1, null],
    ],
  );
  assert.equal(tasks[0]!.host, 'localhost');
  assert.equal(tasks[0]!.endsAt! - tasks[0]!.startedAt!, 30 * 60 * 1000, 'walltime read across wrapped attributes');
});

void test('pbs dialects: submit ids, poll and cancel commands, failed polls', () => {
  const pro = pbsDialect('pbspro');
  const torque = pbsDialect('torque');
  assert.equal(pro.parseSubmitId('1008[].pbs01\n'), '1008[].pbs01');
  assert.throws(() => pro.parseSubmitId('qsub: Unknown queue\n'));
  assert.deepEqual(
    pro.pollCommand('n', ['1008[].pbs01', '1011.pbs01']).args,
    ['-f', '-t', '-x', '1008[].pbs01', '1011.pbs01'],
    "text, not -F json: OpenPBS's JSON lists only the first id's jobs",
  );
  assert.deepEqual(
    torque.pollCommand('n', ['7001[].srv']).args,
    ['-f', '-t', '7001[].srv'],
    'Torque has no JSON, and -x means XML there',
  );
  assert.deepEqual(pro.cancelCommand(['1008[].pbs01'], true).args, ['-W', 'force', '1008[].pbs01']);
  assert.equal(pro.taskId('1008[].pbs01', 2, 3), '1008[2].pbs01');
  assert.equal(
    pro.pollFailed({ code: 2, stdout: '', stderr: 'qstat: cannot connect to server pbs01 (errno=111)' }, []),
    true,
  );
  assert.equal(
    pro.pollFailed({ code: 153, stdout: '', stderr: 'qstat: Unknown Job Id 1008[].pbs01' }, []),
    false,
    'unknown ids mean the jobs are gone',
  );
});
