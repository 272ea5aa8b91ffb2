// Configuration files (experiments, site profiles, model presets): one reader that reads and parses a JSON
// file, and one error that names the file, the field (or the line and column) and what is wrong. Config errors
// are never retryable: the same file fails the same way until someone edits it.
import { readFileSync } from 'node:fs';
import { PeArenaError } from './errors.ts';

export class ConfigFileError extends PeArenaError {
  override readonly name: string = 'ConfigFileError';
  constructor(
    readonly file: string,
    /** Dotted path of the offending field, e.g. "training.steps"; "" for the file as a whole. */
    readonly field: string,
    readonly problem: string,
    options: { cause?: unknown } = {},
  ) {
    super(`${file}: ${field === '' ? '' : `${field} `}${problem}`, options);
  }
}

/** A ConfigFileError subclass (ExperimentConfigError, ClusterProfileError), for errors named after the file kind. */
export type ConfigFileErrorClass = new (
  file: string,
  field: string,
  problem: string,
  options?: { cause?: unknown },
) => ConfigFileError;

/** The parsed contents of a JSON file; a file that cannot be read or parsed throws `Error` naming the place. */
export function readJsonFile(file: string, Error: ConfigFileErrorClass = ConfigFileError): unknown {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (error) {
    throw new Error(file, '', `cannot be read: ${(error as { message?: string }).message}`, { cause: error });
  }
  return parseJsonText(text, file, Error);
}

/** JSON.parse, with a failure that names the file and the line and column of the problem. */
export function parseJsonText(text: string, file: string, Error: ConfigFileErrorClass = ConfigFileError): unknown {
  try {
    return JSON.parse(text) as unknown;
  } catch (error) {
    const message = (error as { message?: string }).message ?? String(error);
    const at = /at position (\d+)/.exec(message);
    const where = at === null ? '' : ` at ${lineAndColumn(text, Number(at[1]))}`;
    throw new Error(file, '', `is not valid JSON${where}: ${message}`, { cause: error });
  }
}

function lineAndColumn(text: string, position: number): string {
  const before = text.slice(0, position);
  const line = before.split('\n').length;
  const column = position - before.lastIndexOf('\n');
  return `line ${line}, column ${column}`;
}
