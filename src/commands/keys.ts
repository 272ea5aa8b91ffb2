// PLACEHOLDER: replaced by the part that owns this command.
import type { Command } from 'commander';

export function registerKeysCommand(_program: Command): void {}
