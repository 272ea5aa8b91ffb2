// What every task generator and loader produces: a prompt, the target the model must write after it,
// and the problem's length (e.g. operand digits) for length-generalization buckets.
import type { RngState } from './rng.ts';

/** A problem's text and what evaluation needs to read it back: shared by generated problems and examples. */
export interface ProblemText {
  prompt: string;
  /** For step-by-step tasks: the steps, then "#### <answer>" (GSM8K form). Otherwise just the answer. */
  target: string;
  /** The final answer alone, for exact and symbolic match. */
  answer: string;
  length: number;
  /** Set when the target writes the answer's digits in reverse; `answer` is always in normal reading order. */
  reversed?: boolean;
  /** Set when the prompt's operands are written least-significant digit first too (reverseAll). */
  reversedOperands?: boolean;
  /** Set when numbers are zero-padded (padOperands, padAnswer): leading zeros of the answer are not errors. */
  padded?: boolean;
  /** Set when prompt and target have spaces between digits (`spaced` or `spaceDigits`); `answer` has none. */
  spaced?: boolean;
}

export interface Example extends ProblemText {
  /** Stable within a seed, so paired tests can match the same problem across encodings. */
  id: string;
  task: string;
}

/** An endless, seeded, resumable stream of examples. */
export interface ExampleSource {
  readonly task: string;
  next(): Example;
  getState(): SourceState;
  setState(state: SourceState): void;
}

export interface SourceState {
  rng: RngState;
  /** Examples drawn so far (the data position). */
  position: number;
}
