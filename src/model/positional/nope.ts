// NoPE: no positional signal at all; a causal decoder can still infer positions from the mask.
// Kazemnejad et al. 2023, "The Impact of Positional Encoding on Length Generalization in Transformers".
import type { PositionalConfig, PositionalEncoding, PositionalFactory } from './types.ts';

export const createNope: PositionalFactory = (_config: PositionalConfig): PositionalEncoding => ({
  name: 'nope',
  variables: [],
  variableNames: [],
  embed: (x) => x,
  rotate: (x) => x,
  bias: () => null,
  dispose: () => {},
});
