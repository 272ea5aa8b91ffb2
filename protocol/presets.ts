// Model presets (configs/presets.json: tiny, small, base): read and checked here, next to the ModelSpec they
// hold, so both the coordinator (compiling an experiment) and the training code may use them. Plain JSON, no
// TensorFlow.
import { join } from 'node:path';
import { PACKAGE_ROOT } from './code-paths.ts';
import { ConfigFileError, readJsonFile } from './config-file.ts';
import type { ModelSpec } from './messages.ts';

export const PRESETS_FILE = join(PACKAGE_ROOT, 'configs', 'presets.json');

const MODEL_FIELDS = [
  'layers',
  'dModel',
  'heads',
  'ffnDim',
  'dropout',
  'maxLen',
] as const satisfies readonly (keyof ModelSpec)[];

/**
 * A job's model for its encoding. MAPE's options belong to MAPE jobs only: the other encodings' jobs leave them out,
 * so their job spec stays the same whatever MAPE options an experiment sets (`pe-arena run --reuse` relies on it).
 * A MAPE job gets its relative bias unless the model turns it off, written into the spec, so a job or checkpoint from
 * before it was the default (no `mapeRelative`: off) keeps its meaning.
 */
export function modelForEncoding(encoding: string, model: ModelSpec): ModelSpec {
  if (encoding === 'mape') return { ...model, mapeRelative: model.mapeRelative ?? true };
  return Object.fromEntries(Object.entries(model).filter(([key]) => !key.startsWith('mape'))) as ModelSpec;
}

/** The model presets by name; a file that cannot be used throws ConfigFileError. */
export function loadPresets(file = PRESETS_FILE): Record<string, ModelSpec> {
  const raw = readJsonFile(file);
  if (typeof raw !== 'object' || raw === null) throw new ConfigFileError(file, '', 'must be an object of presets');
  const out: Record<string, ModelSpec> = {};
  for (const [name, spec] of Object.entries(raw)) {
    const errors = checkModelSpec(spec, name);
    if (errors.length > 0) throw new ConfigFileError(file, '', errors.join('; '));
    out[name] = spec as ModelSpec;
  }
  return out;
}

/** The problems of a model spec, each "<where>.<field>: problem"; [] when it is usable. */
export function checkModelSpec(spec: unknown, where: string): string[] {
  if (typeof spec !== 'object' || spec === null) return [`${where}: model must be an object`];
  const s = spec as Record<string, unknown>;
  const errors: string[] = [];
  for (const field of MODEL_FIELDS) {
    const v = s[field];
    const ok =
      field === 'dropout'
        ? typeof v === 'number' && v >= 0 && v < 1
        : typeof v === 'number' && Number.isInteger(v) && v > 0;
    if (!ok)
      errors.push(
        `${where}.${field}: ${field === 'dropout' ? 'must be in [0, 1)' : 'must be a positive integer'} (got ${JSON.stringify(v)})`,
      );
  }
  const cap = s['attentionLogitCap'];
  if (cap !== undefined && !(typeof cap === 'number' && Number.isFinite(cap) && cap >= 0))
    errors.push(`${where}.attentionLogitCap: must be a number >= 0, 0 for none (got ${JSON.stringify(cap)})`);
  const stride = s['sinusoidalStride'];
  if (stride !== undefined && !(typeof stride === 'number' && Number.isFinite(stride) && stride > 0))
    errors.push(
      `${where}.sinusoidalStride: must be a number > 0, 1 for the paper's table (got ${JSON.stringify(stride)})`,
    );
  if (errors.length === 0 && (s['dModel'] as number) % (s['heads'] as number) !== 0)
    errors.push(`${where}.dModel: must be divisible by heads`);
  return errors;
}
