// A generated problem before it gets an id: what each task generator returns for one draw.
import type { Rng } from './rng.ts';
import type { ParamSchema, ParamValues } from './params.ts';
import type { ProblemText } from './types.ts';

export interface Problem extends ProblemText {
  /** What decides the train/test split when not the prompt: "a+b" and "b+a" share one, so both land in the same split. */
  holdoutKey?: string;
}

export interface Generator {
  readonly schema: ParamSchema;
  /** Cross-field checks beyond the schema (e.g. minDigits <= maxDigits); params already have defaults. */
  check?(params: ParamValues): string[];
  /** One problem; `params` already validated and defaulted. */
  generate(rng: Rng, params: ParamValues): Problem;
}
