// The pe-arena command line: each command lives with the part it drives and registers itself here.
import { Command } from 'commander';
import { registerTrainCommand } from './commands/train.ts';
import { registerRuntimeCommands } from './commands/runtime.ts';
import { registerKeysCommand } from './commands/keys.ts';
import { registerResultsCommands } from './commands/results.ts';
import { registerHpcCommands } from './commands/hpc.ts';
import { registerExportCommand } from './commands/export.ts';

const program = new Command('pe-arena')
  .description('Compare positional encodings for math-reasoning transformers across a cluster')
  .showHelpAfterError();

registerTrainCommand(program);
registerRuntimeCommands(program);
registerKeysCommand(program);
registerResultsCommands(program);
registerHpcCommands(program);
registerExportCommand(program);

await program.parseAsync(process.argv);
