// `pe-arena doctor [--cluster file] [--probe]`: what is missing for a cluster run, and the fix for each.
// Parsing only; the checks live in coordinator/launchers/doctor.ts (doctor-checks.ts, doctor-probe.ts).
import { InvalidArgumentError } from 'commander';
import type { Command } from 'commander';

function positiveSeconds(value: string): number {
  const n = Number(value);
  if (!Number.isFinite(n) || n <= 0)
    throw new InvalidArgumentError(`--probe-timeout must be a positive number of seconds, got '${value}'`);
  return n;
}

export function registerHpcCommands(program: Command): void {
  program
    .command('doctor')
    .description(
      'check this node for a cluster run: node, zeromq, TensorFlow.js backends, GPUs, scheduler, profile, address, port, disk, keys',
    )
    .option('--cluster <file>', 'site profile to check, e.g. configs/clusters/iitd.json')
    .option('--probe', 'also submit a one-task job and wait until it connects back from a compute node', false)
    .option('--probe-timeout <s>', 'how long --probe waits for the job to connect (default 600)', positiveSeconds)
    .option('--runs-dir <dir>', 'where run directories go (free disk is checked there)', 'runs')
    .option('--keys-dir <dir>', 'where the CURVE keys are when no profile names them')
    .action(
      async (flags: { cluster?: string; probe: boolean; probeTimeout?: number; runsDir: string; keysDir?: string }) => {
        const { runDoctor, formatCheck } = await import('../../coordinator/launchers/doctor.ts');
        process.stdout.write(`pe-arena doctor${flags.cluster === undefined ? '' : ` (${flags.cluster})`}\n`);
        const results = await runDoctor({
          probe: flags.probe,
          runsDir: flags.runsDir,
          ...(flags.cluster === undefined ? {} : { clusterFile: flags.cluster }),
          ...(flags.probeTimeout === undefined ? {} : { probeTimeoutMs: flags.probeTimeout * 1000 }),
          ...(flags.keysDir === undefined ? {} : { keysDir: flags.keysDir }),
          onResult: (r) => void process.stdout.write(formatCheck(r) + '\n'),
        });
        const failed = results.filter((r) => r.status === 'fail');
        process.stdout.write(
          failed.length === 0
            ? 'doctor: everything required passes\n'
            : `doctor: ${failed.length} required check(s) failed: ${failed.map((r) => r.name).join(', ')}\n`,
        );
        process.exit(failed.length === 0 ? 0 : 1);
      },
    );
}
