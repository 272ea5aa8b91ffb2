// `pe-arena doctor`: passes (with --probe) against the loopback Slurm and the real OpenPBS with their test profiles,
// fails naming the field for a broken profile (exit 1); the scheduler query answers on every PBS dialect here, a
// commandsDir without the commands fails, and the key check catches missing keys and keys others can read.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, execFileSync } from 'node:child_process';
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import {
  backendFix,
  checkKeys,
  checkNode,
  checkScheduler,
  schedulerQuery,
} from '../../../coordinator/launchers/doctor-checks.ts';
import { initKeys } from '../../../protocol/keys.ts';
import { openPbsSkipReason, torqueWrapperSkipReason } from './harness.ts';

const repoRoot = resolve(import.meta.dirname, '..', '..', '..');

function doctor(args: string[]): Promise<{ code: number | null; out: string }> {
  return new Promise((res) => {
    execFile(
      process.execPath,
      ['--import', 'tsx', join(repoRoot, 'src', 'cli.ts'), 'doctor', ...args],
      { cwd: repoRoot, timeout: 90_000, encoding: 'utf8' },
      (error, stdout, stderr) => {
        res({ code: error === null ? 0 : typeof error.code === 'number' ? error.code : null, out: stdout + stderr });
      },
    );
  });
}

/** `doctor --probe` (60 s) against a test profile of configs/clusters, with a runs directory it removes after. */
async function probeDoctor(profile: string): Promise<{ code: number | null; out: string }> {
  const tmp = mkdtempSync(join(tmpdir(), 'pe-arena-doctor-'));
  try {
    return await doctor([
      '--cluster',
      join(repoRoot, 'configs', 'clusters', profile),
      '--runs-dir',
      join(tmp, 'runs'),
      '--probe',
      '--probe-timeout',
      '60',
    ]);
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
}

let slurm = true;
try {
  execFileSync('sinfo', ['-h', '-o', '%T'], { stdio: 'ignore', timeout: 5_000 });
} catch {
  slurm = false;
}

void test('doctor fails, naming the field, for a broken profile', { timeout: 100_000 }, async () => {
  const tmp = mkdtempSync(join(tmpdir(), 'pe-arena-doctor-'));
  try {
    const file = join(tmp, 'broken.json');
    writeFileSync(
      file,
      JSON.stringify({ name: 'broken', scheduler: 'slurm', walltime: '01:00:00', resources: { gpus: 'one' } }),
    );
    const { code, out } = await doctor(['--cluster', file, '--runs-dir', join(tmp, 'runs')]);
    assert.equal(code, 1, out);
    assert.match(out, /FAIL {2}site profile .*broken\.json: resources\.gpus must be an integer/);
    assert.match(out, /PASS {2}node version/);
    assert.match(out, /required check\(s\) failed: site profile/);
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
});

void test(
  'doctor passes against the loopback Slurm with the test profile, and --probe connects back from a compute node',
  { skip: slurm ? false : 'no Slurm answering: run .ci/setup-slurm.sh', timeout: 100_000 },
  async () => {
    const { code, out } = await probeDoctor('test-slurm.json');
    assert.equal(code, 0, out);
    assert.match(out, /PASS {2}compute node probe +\d+ on \S+ connected to tcp:\/\/127\.0\.0\.1:\d+/);
    for (const check of [
      'node version',
      'zeromq native module',
      'site profile',
      'slurm commands',
      'coordinator port',
      'TensorFlow.js',
    ])
      assert.match(out, new RegExp(`PASS {2}${check}`));
    assert.match(out, /backend cpu +loads/);
  },
);

void test('key check: missing, readable by others, and right', async () => {
  const tmp = mkdtempSync(join(tmpdir(), 'pe-arena-doctor-keys-'));
  try {
    assert.equal(checkKeys(tmp, true).status, 'fail');
    assert.match(checkKeys(tmp, true).fix ?? '', /pe-arena keys init/);
    assert.equal(checkKeys(tmp, false).status, 'warn', 'keys are only required where the profile names them');
    const keys = await initKeys(tmp);
    assert.equal(checkKeys(tmp, true).status, 'pass');
    chmodSync(keys.serverSecretFile, 0o644);
    const open = checkKeys(tmp, true);
    assert.equal(open.status, 'fail');
    assert.match(open.detail, /mode 644/);
    assert.match(open.fix ?? '', /chmod 600/);
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
  assert.equal(checkNode('18.19.0').status, 'fail');
  assert.equal(checkNode('20.11.1').status, 'pass');
  assert.match(backendFix('tensorflow-gpu', 'libcudnn.so.8: cannot open shared object file'), /cuDNN/);
});

const openPbsSkip = openPbsSkipReason();

void test(
  'doctor --probe passes against the real OpenPBS with test-openpbs.json (commands from its commandsDir)',
  { skip: openPbsSkip ?? false, timeout: 100_000 },
  async () => {
    const { code, out } = await probeDoctor('test-openpbs.json');
    assert.equal(code, 0, out);
    assert.match(
      out,
      /PASS {2}pbs commands +qsub, qstat, qdel found in \/opt\/pbs\/bin \(commandsDir\); qstat -Q workq answers/,
    );
    assert.match(
      out,
      /PASS {2}compute node probe +\d+\.localhost on \S+ connected to tcp:\/\/127\.0\.0\.1:\d+; backend cpu/,
    );
  },
);

void test('the scheduler query is one every dialect answers: qstat -Q [queue], not qstat -B', () => {
  assert.deepEqual(schedulerQuery('pbs', 'workq'), { command: 'qstat', args: ['-Q', 'workq'] });
  assert.deepEqual(schedulerQuery('pbs', undefined), { command: 'qstat', args: ['-Q'] });
  assert.equal(schedulerQuery('slurm', 'debug').command, 'squeue');
});

void test(
  "the pbs scheduler check passes on Slurm's torque wrapper (it has no qstat -B) and on OpenPBS, and names a wrong queue",
  { skip: torqueWrapperSkipReason() ?? openPbsSkip ?? false, timeout: 60_000 },
  async () => {
    const [wrapper] = await checkScheduler('pbs', { queue: 'debug' });
    assert.equal(wrapper?.status, 'pass', JSON.stringify(wrapper));
    assert.match(wrapper?.detail ?? '', /found on PATH; qstat -Q debug answers/);
    const [pro] = await checkScheduler('pbs', { commandsDir: '/opt/pbs/bin', queue: 'workq' });
    assert.equal(pro?.status, 'pass', JSON.stringify(pro));
    const [noQueue] = await checkScheduler('pbs', { commandsDir: '/opt/pbs/bin', queue: 'nosuchq' });
    assert.equal(noQueue?.status, 'fail');
    assert.match(noQueue?.detail ?? '', /qstat -Q nosuchq fails: qstat: Unknown queue/);
    assert.match(noQueue?.fix ?? '', /no queue "nosuchq"/);
  },
);

void test('a commandsDir without the scheduler commands fails the check, naming the directory', async () => {
  const tmp = mkdtempSync(join(tmpdir(), 'pe-arena-doctor-cmds-'));
  try {
    const [result] = await checkScheduler('pbs', { commandsDir: tmp });
    assert.equal(result?.status, 'fail');
    assert.equal(result?.detail, `qsub, qstat, qdel not in ${tmp} (commandsDir)`);
    assert.match(result?.fix ?? '', /commandsDir/);
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
});
