// Containers in site profiles, as doctor sees them: the runtime on PATH (else in commandsDir) and the image file,
// each failure with its fix; and `doctor --probe` through a fake Slurm whose job runs the real job script, so the
// probe agent starts through the container runtime's command line (a stand-in runtime that runs what follows the
// image on this host: it tests our command line and binds, not the runtime).
import { test } from 'node:test';
import type { TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { compileClusterProfile } from '../../../coordinator/cluster-profile.ts';
import type { ContainerSpec } from '../../../coordinator/cluster-profile.ts';
import { checkContainer } from '../../../coordinator/launchers/doctor-checks.ts';
import { probeComputeNode } from '../../../coordinator/launchers/doctor-probe.ts';

const repoRoot = resolve(import.meta.dirname, '..', '..', '..');

/** A temp directory removed after the test. */
function tempDir(t: TestContext, prefix: string): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

function executable(file: string, text: string): void {
  writeFileSync(file, text);
  chmodSync(file, 0o755);
}

const spec = (runtime: ContainerSpec['runtime'], image: string): ContainerSpec => ({
  runtime,
  image,
  gpus: false,
  binds: [],
});

void test('doctor: the runtime on PATH and a readable image file pass', (t) => {
  const dir = tempDir(t, 'pe-arena-container-');
  mkdirSync(join(dir, 'bin'));
  executable(join(dir, 'bin', 'apptainer'), '#!/bin/sh\n');
  writeFileSync(join(dir, 'pe-arena.sif'), 'image');
  const [runtime, image] = checkContainer(spec('apptainer', join(dir, 'pe-arena.sif')), {
    path: `/nonexistent:${join(dir, 'bin')}`,
  });
  assert.deepEqual(
    [runtime?.name, runtime?.status, runtime?.detail],
    ['container runtime', 'pass', `${join(dir, 'bin', 'apptainer')} (on PATH)`],
  );
  assert.deepEqual([image?.name, image?.status], ['container image', 'pass']);
});

void test('doctor: a missing runtime and a missing image fail, each naming the fix', (t) => {
  const dir = tempDir(t, 'pe-arena-container-');
  mkdirSync(join(dir, 'bin'));
  executable(join(dir, 'bin', 'singularity'), '#!/bin/sh\n'); // another runtime does not count
  writeFileSync(join(dir, 'bin', 'apptainer'), 'not executable');
  const [runtime, image] = checkContainer(spec('apptainer', join(dir, 'missing.sif')), { path: join(dir, 'bin') });
  assert.equal(runtime?.status, 'fail');
  assert.equal(runtime?.detail, 'apptainer not on PATH');
  assert.match(runtime?.fix ?? '', /module load apptainer.*profile's setup/);
  assert.equal(image?.status, 'fail');
  assert.equal(image?.detail, `${join(dir, 'missing.sif')} does not exist`);
  assert.match(image?.fix ?? '', /apptainer build pe-arena\.sif containers\/pe-arena\.def/);

  const [, enrootImage] = checkContainer(spec('enroot', join(dir, 'missing.sqsh')), { path: join(dir, 'bin') });
  assert.match(enrootImage?.fix ?? '', /enroot import -o pe-arena\.sqsh dockerd:\/\/pe-arena:latest/);
});

void test('doctor: a runtime only in commandsDir warns that the job runs it by name; $HOME in the image expands', (t) => {
  const dir = tempDir(t, 'pe-arena-container-');
  mkdirSync(join(dir, 'opt'));
  executable(join(dir, 'opt', 'enroot'), '#!/bin/sh\n');
  const [runtime] = checkContainer(spec('enroot', '$HOME/definitely-not-here.sqsh'), {
    path: join(dir, 'bin'),
    commandsDir: join(dir, 'opt'),
  });
  assert.equal(runtime?.status, 'warn');
  assert.match(runtime?.fix ?? '', new RegExp(`export PATH=${join(dir, 'opt')}:\\$PATH`));
  const [missing, image] = checkContainer(spec('enroot', '$HOME/definitely-not-here.sqsh'), {
    path: join(dir, 'bin'),
    commandsDir: join(dir, 'elsewhere'),
  });
  assert.equal(missing?.detail, `enroot not on PATH nor in ${join(dir, 'elsewhere')}`);
  assert.ok(!(image?.detail ?? '').includes('$HOME'), 'the path is checked as this node sees it');
  assert.equal(image?.status, 'fail');
});

void test('doctor: a registry or container name is not checked offline, and says so', () => {
  const [, podman] = checkContainer(spec('podman', 'localhost/pe-arena:latest'), { path: '' });
  assert.equal(podman?.status, 'warn');
  assert.match(podman?.detail ?? '', /registry name: not checked from here/);
  assert.match(podman?.fix ?? '', /podman load -i pe-arena\.tar/);
  const [, enroot] = checkContainer(spec('enroot', 'pe-arena'), { path: '' });
  assert.match(enroot?.detail ?? '', /container name: not checked/);
  const [, uri] = checkContainer(spec('apptainer', 'docker://pe-arena:latest'), { path: '' });
  assert.equal(uri?.status, 'warn');
});

void test('doctor --probe: the probe job starts its agent through the container runtime', async (t) => {
  const dir = tempDir(t, 'pe-arena-probe-');
  const bin = join(dir, 'bin');
  mkdirSync(bin);
  // A fake Slurm: sbatch runs the job script in the background, squeue reports it running, scancel ends it.
  executable(
    join(bin, 'sbatch'),
    `#!/bin/bash\nfor a; do script="$a"; done\nSLURM_JOB_ID=4242 setsid bash "$script" > ${dir}/job.out 2>&1 < /dev/null &\necho $! > ${dir}/job.pid\necho 4242\n`,
  );
  executable(
    join(bin, 'squeue'),
    `#!/bin/sh\nkill -0 "$(cat ${dir}/job.pid)" 2>/dev/null && echo '4242|4242|RUNNING|0|N/A|N/A|node1|None'\nexit 0\n`,
  );
  executable(join(bin, 'scancel'), `#!/bin/sh\nkill -TERM -- "-$(cat ${dir}/job.pid)" 2>/dev/null\nexit 0\n`);
  // The stand-in runtime: records its words, then runs what follows the image (the agent) on this host.
  executable(
    join(bin, 'podman'),
    `#!/bin/bash\nprintf '%s\\n' "$@" > ${dir}/podman.argv\nwhile [ "$1" != localhost/pe-arena-test ]; do shift; done\nshift\nexec "$@"\n`,
  );
  const profile = compileClusterProfile(
    {
      name: 'probe',
      scheduler: 'slurm',
      walltime: '00:10:00',
      commandsDir: bin,
      setup: [`export PATH=${bin}:$PATH`],
      workdir: join(dir, 'work'),
      head: { address: '127.0.0.1' },
      // Inside this container node and pe-arena are this host's: the profile names them, as it would a bound checkout.
      node: process.execPath,
      projectDir: repoRoot,
      container: { runtime: 'podman', image: 'localhost/pe-arena-test', binds: [`${repoRoot}`] },
    },
    'probe.json',
  );
  const result = await probeComputeNode(profile, join(dir, 'runs'), 120_000);
  const argv = readFileSync(join(dir, 'podman.argv'), 'utf8').split('\n');
  assert.equal(result.status, 'pass', `${result.detail}\n${readFileSync(join(dir, 'job.out'), 'utf8')}`);
  assert.match(result.detail, /\(in podman localhost\/pe-arena-test\) connected to tcp:\/\/127\.0\.0\.1:/);
  assert.deepEqual(argv.slice(0, 4), ['run', '--rm', '--network', 'host']);
  assert.ok(argv.includes(`${join(dir, 'work')}:${join(dir, 'work')}`), 'the workdir is bound');
  assert.ok(argv.includes(`${repoRoot}:${repoRoot}`), "the profile's bind");
  assert.ok(
    argv.some((a) => /^\/.*\/runs\/doctor-[^:]+:\/.*\/runs\/doctor-[^:]+$/.test(a)),
    'the probe run directory is bound',
  );
});
