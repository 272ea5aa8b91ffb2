// PLACEHOLDER: replaced by the part that owns this command.
import type { Command } from 'commander';

export function registerHpcCommands(_program: Command): void {}
