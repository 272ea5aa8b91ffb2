// Job scripts: valid bash for every dialect, every value quoted (checked by bash itself), key files named but
// no secret anywhere in the script or the submit command, the dialect's resource spelling.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
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
    tsxLoader: '/home/alice/pe-arena/node_modules/tsx/dist/loader.mjs',
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
