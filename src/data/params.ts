// A tiny schema for task parameters: checks types, ranges and unknown names, fills defaults.
// Errors name the field ("task.params.maxDigits: ...") so a bad config is easy to fix.
import type { TaskSpec } from '../../protocol/messages.ts';

export type ParamRule =
  | { kind: 'int'; min: number; max: number; default?: number }
  | { kind: 'number'; min: number; max: number; default?: number }
  | { kind: 'bool'; default?: boolean }
  | { kind: 'string'; choices?: readonly string[]; default?: string; required?: boolean };

export type ParamSchema = Record<string, ParamRule>;
export type ParamValues = Record<string, number | string | boolean>;

/** Checks params against a schema; returns one message per problem (empty when valid). */
export function checkParams(params: unknown, schema: ParamSchema, path = 'task.params'): string[] {
  if (typeof params !== 'object' || params === null || Array.isArray(params)) {
    return [`${path}: must be an object of parameters`];
  }
  const errors: string[] = [];
  const given = params as Record<string, unknown>;
  for (const key of Object.keys(given)) {
    if (!(key in schema)) errors.push(`${path}.${key}: unknown parameter (known: ${Object.keys(schema).join(', ')})`);
  }
  for (const [key, rule] of Object.entries(schema)) {
    const value = given[key];
    const where = `${path}.${key}`;
    if (value === undefined) {
      if (rule.kind === 'string' && rule.required === true) errors.push(`${where}: required`);
      continue;
    }
    switch (rule.kind) {
      case 'int':
      case 'number': {
        const ok =
          typeof value === 'number' && Number.isFinite(value) && (rule.kind === 'number' || Number.isInteger(value));
        if (!ok || (value as number) < rule.min || (value as number) > rule.max) {
          const what = rule.kind === 'int' ? 'an integer' : 'a number';
          errors.push(`${where}: must be ${what} in [${rule.min}, ${rule.max}] (got ${JSON.stringify(value)})`);
        }
        break;
      }
      case 'bool':
        if (typeof value !== 'boolean') errors.push(`${where}: must be true or false (got ${JSON.stringify(value)})`);
        break;
      case 'string':
        if (typeof value !== 'string' || value === '') {
          errors.push(`${where}: must be a non-empty string (got ${JSON.stringify(value)})`);
        } else if (rule.choices !== undefined && !rule.choices.includes(value)) {
          errors.push(`${where}: must be one of ${rule.choices.join(', ')} (got ${JSON.stringify(value)})`);
        }
        break;
    }
  }
  return errors;
}

/** The given params with defaults filled in (call after checkParams found no errors). */
export function withDefaults(params: TaskSpec['params'], schema: ParamSchema): ParamValues {
  const out: ParamValues = {};
  for (const [key, rule] of Object.entries(schema)) {
    const value = params[key] ?? rule.default;
    if (value !== undefined) out[key] = value;
  }
  return out;
}

export function intParam(values: ParamValues, key: string): number {
  const v = values[key];
  if (typeof v !== 'number') throw new TypeError(`parameter ${key} is not a number`);
  return v;
}

export function boolParam(values: ParamValues, key: string): boolean {
  return values[key] === true;
}

export function stringParam(values: ParamValues, key: string): string | undefined {
  const v = values[key];
  return typeof v === 'string' ? v : undefined;
}
