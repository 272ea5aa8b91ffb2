// PLACEHOLDER: replaced by the part that owns this command.
import type { Command } from 'commander';

export function registerResultsCommands(_program: Command): void {}
