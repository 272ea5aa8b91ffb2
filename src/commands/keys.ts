// `pe-arena keys init [--dir d] [--force]`: writes the cluster CURVE key pair that turns on encryption and
// authentication between the coordinator and agents. The default directory is in $HOME because HPC nodes
// usually share it, so every node finds the same keys.
import { homedir } from 'node:os';
import { join } from 'node:path';
import type { Command } from 'commander';
import { KeyError } from '../../protocol/errors.ts';
import { initKeys } from '../../protocol/keys.ts';

export const DEFAULT_KEY_DIR = join(homedir(), '.pe-arena', 'keys');

export function registerKeysCommand(program: Command): void {
  const keys = program
    .command('keys')
    .description('manage the CURVE keys that encrypt and authenticate cluster traffic');
  keys
    .command('init')
    .description('write a new cluster key pair (files mode 0600)')
    .option('--dir <dir>', 'where to write the keys', DEFAULT_KEY_DIR)
    .option('--force', 'replace existing keys (every node then needs the new ones)', false)
    .action(async (options: { dir: string; force: boolean }) => {
      try {
        const files = await initKeys(options.dir, { force: options.force });
        console.log(`wrote ${files.serverSecretFile} (secret: keep it on cluster nodes only)`);
        console.log(`wrote ${files.serverPublicFile}`);
        console.log(`public key: ${files.publicKey}`);
      } catch (error) {
        if (!(error instanceof KeyError)) throw error;
        console.error(`pe-arena keys init: ${error.message}`);
        process.exitCode = 1;
      }
    });
}
