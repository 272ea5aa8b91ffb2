// A generated problem before it gets an id: what each task generator returns for one draw.
import type { Rng } from './rng.ts';
import type { ParamSchema, ParamValues } from './params.ts';

export interface Problem {
  prompt: string;
  target: string;
  answer: string;
  length: number;
  reversed?: boolean;
  /** Set when the prompt's operands are written least-significant digit first too (reverseAll). */
  reversedOperands?: boolean;
  /** Set when numbers are zero-padded (padOperands, padAnswer): a predicted answer may carry leading zeros. */
  padded?: boolean;
  /** Set when the text has spaces that the numbers do not: "1 2 + 3 4 =" -> "4 6" (spaced), "1 2+3 4=" (spaceDigits). */
  spaced?: boolean;
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
