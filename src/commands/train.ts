// PLACEHOLDER: replaced by the part that owns this command.
import type { Command } from 'commander';

export function registerTrainCommand(_program: Command): void {}
