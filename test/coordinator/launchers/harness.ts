// Shared by the tests that talk to the loopback Slurm started by .ci/setup-slurm.sh.
import { execFileSync } from 'node:child_process';

/** Why the real-Slurm tests must skip (said in the test output), or undefined when sbatch and slurmctld answer. */
export function slurmSkipReason(): string | undefined {
  try {
    execFileSync('sbatch', ['--version'], { stdio: 'ignore', timeout: 5_000 });
  } catch {
    return 'sbatch is not on PATH: run .ci/setup-slurm.sh (as root) to start the loopback Slurm these tests need';
  }
  try {
    const out = execFileSync('sinfo', ['-h', '-o', '%T'], { encoding: 'utf8', timeout: 5_000 });
    if (!/idle|mixed|allocated/.test(out))
      return `the Slurm cluster has no usable node (sinfo: ${out.trim()}); run .ci/setup-slurm.sh`;
  } catch (error) {
    return `slurmctld does not answer (${(error as Error).message.split('\n')[0]}); run .ci/setup-slurm.sh`;
  }
  return undefined;
}

/** The run's array tasks still in the queue, as "<id> <state>" lines. */
export function squeueRun(jobName: string): string[] {
  return execFileSync('squeue', ['--noheader', '--array', `--name=${jobName}`, '-o', '%i %T'], {
    encoding: 'utf8',
    timeout: 10_000,
  })
    .split('\n')
    .filter((l) => l.trim() !== '');
}

/** Poll fn until it returns a value, at most ms of wall time. */
export async function waitFor<T>(
  what: string,
  ms: number,
  fn: () => T | undefined | Promise<T | undefined>,
): Promise<T> {
  const until = Date.now() + ms;
  for (;;) {
    const v = await fn();
    if (v !== undefined) return v;
    if (Date.now() > until) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}
