// `pe-arena export tensorboard runs/<runId>`: TensorBoard event files for a finished or older run, from its
// metrics.jsonl and evaluation.json files (a live run writes them as it goes). Run twice, it adds nothing.
import { join } from 'node:path';
import type { Command } from 'commander';
import { RunDirectoryError } from '../../coordinator/errors.ts';
import { exportTensorBoard, TENSORBOARD_DIR } from '../../coordinator/tensorboard/sink.ts';

export function registerExportCommand(program: Command): void {
  const exporter = program.command('export').description("write a run's results in another tool's format");
  exporter
    .command('tensorboard')
    .argument('<runDir>', 'a run directory (runs/<runId>)')
    .description('TensorBoard event files under <runDir>/tensorboard/, one directory per job')
    .action((runDir: string) => {
      try {
        const summary = exportTensorBoard(runDir);
        console.log(
          `${join(runDir, TENSORBOARD_DIR)}: ${summary.jobs} job(s), ${summary.steps} step(s), ` +
            `${summary.evaluations} evaluation(s) written`,
        );
        console.log(`view: tensorboard --logdir ${join(runDir, TENSORBOARD_DIR)}`);
      } catch (error) {
        if (!(error instanceof RunDirectoryError)) throw error;
        console.error(`pe-arena export tensorboard: ${error.message}`);
        process.exitCode = 1;
      }
    });
}
