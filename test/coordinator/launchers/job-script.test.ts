// Job scripts: valid bash for every dialect, every value quoted (checked by bash itself), key files named but
// no secret anywhere in the script or the submit command, the dialect's resource spelling.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import fc from 'fast-check';
import { compileClusterProfile, loadClusterProfile } from '../../../coordinator/cluster-profile.ts';
import type { ClusterProfile } from '../../../coordinator/cluster-profile.ts';
import {
  renderJobScript,
  shQuote,
  shQuoteExpandingUser,
  submitCommand,
} from '../../../coordinator/launchers/job-script.ts';
import type { JobScriptInput } from '../../../coordinator/launchers/job-script.ts';
import { initKeys } from '../../../protocol/keys.ts';

const dir = resolve(import.meta.dirname, '..', '..', '..', 'configs', 'clusters');

function input(profile: ClusterProfile, extra: Partial<JobScriptInput> = {}): JobScriptInput {
  return {
    profile,
    runId: '20261123-101500-abcdefgh',
    jobName: 'pea-abcdefgh',
    submission: 1,
    kind: 'initial',
    count: 3,
    coordinator: 'tcp://login01:5555',
    runDir: '/scratch/alice/runs/20261123-101500-abcdefgh',
    launchDir: '/scratch/alice/runs/20261123-101500-abcdefgh/launch',
    agentArgs: [],
    projectDir: '/home/alice/pe-arena',
    nodeBinary: 'node',
    ...extra,
  };
}

void test('shQuote: bash reads back exactly the word, whatever it holds', () => {
  fc.assert(
    fc.property(
      fc.string({ unit: 'binary', maxLength: 40 }).map((s) => s.replace(/\0/g, '')),
      (word) => {
        const echoed = execFileSync('bash', ['-c', `printf %s ${shQuote(word)}`], { encoding: 'utf8' });
        return echoed === word;
      },
    ),
    { numRuns: 40 },
  );
  const expanded = execFileSync('bash', ['-c', `printf %s ${shQuoteExpandingUser("/scratch/$USER/it's $(x)")}`], {
    encoding: 'utf8',
    env: { ...process.env, USER: 'alice' },
  });
  assert.equal(expanded, "/scratch/alice/it's $(x)", '$USER expands, nothing else does');
});

void test('each dialect: valid bash, its resource spelling, -o/-j on the command line, the script last', async () => {
  const expect: Record<string, RegExp[]> = {
    'pbspro.json': [/^#PBS -l select=1:ncpus=8:ngpus=1:mem=32gb$/m, /^#PBS -J 0-2$/m, /^#PBS -l walltime=12:00:00$/m],
    'torque.json': [/^#PBS -l nodes=1:ppn=8:gpus=1$/m, /^#PBS -t 0-2$/m, /^#PBS -l mem=32gb$/m],
    'slurm.json': [
      /^#SBATCH --gres=gpu:1$/m,
      /^#SBATCH --cpus-per-task=8$/m,
      /^#SBATCH --array=0-2$/m,
      /^#SBATCH --time=12:00:00$/m,
    ],
  };
  for (const [file, patterns] of Object.entries(expect)) {
    const profile = await loadClusterProfile(join(dir, file));
    const script = renderJobScript(input(profile), '/x/job.sh');
    execFileSync('bash', ['-n'], { input: script }); // throws on a syntax error
    for (const p of patterns) assert.match(script, p, `${file}: ${p}`);
    const cmd = submitCommand(input(profile), '/x/job.sh');
    assert.equal(cmd.args.at(-1), '/x/job.sh');
    if (cmd.command === 'qsub') assert.ok(cmd.args.includes('-j') && cmd.args.includes('-o'));
    else
      assert.ok(
        cmd.args.includes('--export=PATH,HOME,USER,LANG'),
        "sbatch does not copy the coordinator's environment",
      );
  }
  const one = submitCommand(input(await loadClusterProfile(join(dir, 'pbspro.json')), { count: 1 }), '/x/job.sh');
  assert.ok(!one.args.includes('-J'), 'one task is a plain job');
});

void test('a login shell only where the set-up needs one (module), unless the profile says otherwise', () => {
  const base = { name: 'x', scheduler: 'slurm', walltime: '01:00:00' };
  const shebang = (raw: Record<string, unknown>): string =>
    renderJobScript(input(compileClusterProfile({ ...base, ...raw }, 'x.json')), '/x/job.sh').split('\n')[0] ?? '';
  assert.equal(shebang({}), '#!/bin/bash', 'nothing to set up: no login shell (node is named by path)');
  assert.equal(shebang({ setup: ['module load nodejs/20'] }), '#!/bin/bash -l', '`module` comes from the profile');
  assert.equal(shebang({ setup: ['module load nodejs/20'], loginShell: false }), '#!/bin/bash');
  assert.equal(shebang({ loginShell: true }), '#!/bin/bash -l');
  assert.throws(
    () => compileClusterProfile({ ...base, loginShell: 'yes' }, 'x.json'),
    /x\.json: loginShell must be true or false, got "yes"/,
  );
});

void test('the script names the key directory and carries no secret; hostile values stay inert', async () => {
  const keyDir = mkdtempSync(join(tmpdir(), 'pe-arena-keys-'));
  try {
    const keys = await initKeys(keyDir);
    const secret = readFileSync(keys.serverSecretFile, 'utf8').split('\n')[0]!;
    const profile = compileClusterProfile(
      {
        name: 'x',
        scheduler: 'pbs',
        walltime: '01:00:00',
        keysDir: keyDir,
        workdir: `${keyDir}/$USER/w`,
        setup: ['module load nodejs'],
        agentArgs: ['--backend', "cpu'; touch /tmp/pwned; '"],
      },
      'x.json',
    );
    const script = renderJobScript(input(profile, { coordinator: 'tcp://h:1$(id)' }), '/x/job.sh');
    assert.ok(!script.includes(secret), 'the secret key is not in the script');
    assert.ok(!script.includes(keys.publicKey), 'no key material at all, only the directory');
    assert.match(script, new RegExp(`--keys-dir '${keyDir}'`));
    assert.ok(!submitCommand(input(profile), '/x/job.sh').args.some((a) => a.includes(secret)));
    // Run the exec line with `echo` in place of node: every argument arrives as one word, nothing runs.
    const probe = script.replace(/^exec 'node'/m, "exec printf '<%s>\\n' 'node'").replace(/^mkdir -p '.*$/m, ':');
    const out = execFileSync('bash', ['-c', probe], {
      encoding: 'utf8',
      env: { PATH: process.env['PATH'] ?? '', USER: 'alice', HOME: '/tmp', SLURM_ARRAY_TASK_ID: '' },
    });
    assert.match(out, /<cpu'; touch \/tmp\/pwned; '>/);
    assert.match(out, /<tcp:\/\/h:1\$\(id\)>/);
    assert.match(out, /<pea-abcdefgh-s1-0>/);
  } finally {
    rmSync(keyDir, { recursive: true, force: true });
  }
});

/** Runs a container job script with the runtime replaced by a script that prints the words it was given. */
function containerArgv(runtime: string, container: Record<string, unknown>, extra: Record<string, unknown> = {}) {
  const tmp = mkdtempSync(join(tmpdir(), 'pe-arena-container-'));
  try {
    const bin = join(tmp, 'bin');
    mkdirSync(bin);
    writeFileSync(join(bin, runtime), '#!/bin/sh\nfor a in "$@"; do printf "%s\\n" "$a"; done\n', { mode: 0o755 });
    const profile = compileClusterProfile(
      {
        name: 'x',
        scheduler: 'slurm',
        walltime: '01:00:00',
        keysDir: '$HOME/keys',
        workdir: `${tmp}/$USER/work`,
        container: { runtime, ...container },
        ...extra,
      },
      'x.json',
    );
    const script = renderJobScript(input(profile, { runDir: `${tmp}/runs/r1`, count: 1 }), '/x/job.sh');
    const argv = execFileSync('bash', ['-c', script], {
      encoding: 'utf8',
      env: { PATH: `${bin}:${process.env['PATH'] ?? ''}`, USER: 'alice', HOME: '/home/alice', SLURM_JOB_ID: '7' },
    })
      .split('\n')
      .filter((l) => !l.startsWith('pe-arena: agent'))
      .slice(0, -1)
      .map((w) => w.replaceAll(tmp, '<tmp>'));
    return { argv, script };
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
}

/** What follows the image: the image's node and pe-arena at /opt/pe-arena, the same agent arguments as without. */
const agentInContainer = [
  'node',
  '/opt/pe-arena/src/bin.mjs',
  'agent',
  '--coordinator',
  'tcp://login01:5555',
  '--agent-id',
  'pea-abcdefgh-s1-0',
  '--launcher-id',
  '7',
  '--log-file',
  '<tmp>/runs/r1/logs/agents/pea-abcdefgh-s1-0.log',
  '--keys-dir',
  '/home/alice/keys',
];

void test('apptainer and singularity: exec --nv, one --bind list (run, keys, workdir, binds), --pwd, the image', () => {
  for (const runtime of ['apptainer', 'singularity']) {
    const { argv } = containerArgv(runtime, {
      image: '$HOME/pe-arena.sif',
      gpus: true,
      binds: ['/scratch', '/data:/mnt/data'],
    });
    assert.deepEqual(argv, [
      'exec',
      '--nv',
      '--bind',
      '<tmp>/runs/r1,/home/alice/keys,<tmp>/alice/work,/scratch,/data:/mnt/data',
      '--pwd',
      '<tmp>/alice/work',
      '/home/alice/pe-arena.sif',
      ...agentInContainer,
    ]);
  }
  const { argv } = containerArgv('apptainer', { image: '/images/pe.sif', gpus: false });
  assert.deepEqual(argv.slice(0, 3), ['exec', '--bind', '<tmp>/runs/r1,/home/alice/keys,<tmp>/alice/work']);
});

void test('enroot: --mount src:dst for each directory, the walltime variables passed, GPUs from its hook', () => {
  const on = containerArgv('enroot', { image: '/images/pe-arena.sqsh', gpus: true, binds: ['/scratch'] });
  assert.deepEqual(on.argv, [
    'start',
    '--mount',
    '<tmp>/runs/r1:<tmp>/runs/r1',
    '--mount',
    '/home/alice/keys:/home/alice/keys',
    '--mount',
    '<tmp>/alice/work:<tmp>/alice/work',
    '--mount',
    '/scratch:/scratch',
    '--env',
    'PE_ARENA_JOB_START',
    '--env',
    'PE_ARENA_WALLTIME_S',
    '--env',
    'PE_ARENA_WALLTIME_MARGIN_S',
    '--env',
    'PE_ARENA_WALLTIME_PRELOAD',
    '/images/pe-arena.sqsh',
    ...agentInContainer,
  ]);
  const off = containerArgv('enroot', { image: 'pe-arena', gpus: false });
  assert.deepEqual(off.argv.slice(15, 18), ['--env', 'NVIDIA_VISIBLE_DEVICES=void', 'pe-arena']);
});

void test('podman: run --rm --network host, the CDI GPU device only when asked, -v src:dst, -e, -w', () => {
  const on = containerArgv('podman', { image: 'localhost/pe-arena:latest', gpus: true, binds: ['/data:/mnt/data'] });
  assert.deepEqual(on.argv, [
    'run',
    '--rm',
    '--network',
    'host',
    '--device',
    'nvidia.com/gpu=all',
    '-v',
    '<tmp>/runs/r1:<tmp>/runs/r1',
    '-v',
    '/home/alice/keys:/home/alice/keys',
    '-v',
    '<tmp>/alice/work:<tmp>/alice/work',
    '-v',
    '/data:/mnt/data',
    '-e',
    'PE_ARENA_JOB_START',
    '-e',
    'PE_ARENA_WALLTIME_S',
    '-e',
    'PE_ARENA_WALLTIME_MARGIN_S',
    '-e',
    'PE_ARENA_WALLTIME_PRELOAD',
    '-w',
    '<tmp>/alice/work',
    'localhost/pe-arena:latest',
    ...agentInContainer,
  ]);
  const off = containerArgv('podman', { image: 'localhost/pe-arena:latest', gpus: false });
  assert.ok(!off.argv.includes('--device'), 'no GPU device without gpus');
});

void test('in a container: the key directory is bound and named, no key material; projectDir and node are the image paths', async () => {
  const keyDir = mkdtempSync(join(tmpdir(), 'pe-arena-keys-'));
  try {
    const keys = await initKeys(keyDir);
    const secret = readFileSync(keys.serverSecretFile, 'utf8').split('\n')[0]!;
    for (const runtime of ['apptainer', 'enroot', 'podman']) {
      const profile = compileClusterProfile(
        {
          name: 'x',
          scheduler: 'pbs',
          walltime: '01:00:00',
          keysDir: keyDir,
          container: { runtime, image: runtime === 'podman' ? 'localhost/pe' : '/images/pe.sif' },
        },
        'x.json',
      );
      const script = renderJobScript(input(profile), '/x/job.sh');
      execFileSync('bash', ['-n'], { input: script });
      assert.ok(!script.includes(secret) && !script.includes(keys.publicKey), `${runtime}: no key in the script`);
      const exec = script.split('\n').find((l) => l.startsWith('exec '))!;
      assert.ok(exec.startsWith(`exec ${runtime} `), `${runtime}: the runtime is the job's process`);
      assert.ok(exec.includes(`--keys-dir '${keyDir}'`), `${runtime}: the agent is told the bound directory`);
      assert.ok(exec.split(`'${keyDir}'`).length >= 3, `${runtime}: the key directory is bound and named`);
      assert.ok(!exec.includes('/home/alice/pe-arena'), `${runtime}: the host checkout is not used inside`);
    }
    const own = compileClusterProfile(
      {
        name: 'x',
        scheduler: 'pbs',
        walltime: '01:00:00',
        node: '/usr/local/bin/node',
        projectDir: '/src/pe-arena',
        container: { runtime: 'podman', image: 'localhost/pe', binds: ['/home/alice/pe-arena:/src/pe-arena'] },
      },
      'x.json',
    );
    assert.match(
      renderJobScript(input(own), '/x/job.sh'),
      / 'localhost\/pe' '\/usr\/local\/bin\/node' '\/src\/pe-arena\/src\/bin\.mjs' agent /,
      'a profile node and projectDir name the paths inside the container',
    );
  } finally {
    rmSync(keyDir, { recursive: true, force: true });
  }
});
