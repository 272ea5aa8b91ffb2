// The registry of positional encodings: one factory per name in protocol's ENCODINGS.
import type { EncodingName } from '../../../protocol/messages.ts';
import { createAlibi } from './alibi.ts';
import { createDiet } from './diet.ts';
import { createMape } from './mape.ts';
import { createNope } from './nope.ts';
import { createRope } from './rope.ts';
import { createSinusoidal } from './sinusoidal.ts';
import { createT5 } from './t5.ts';
import type { PositionalConfig, PositionalEncoding, PositionalFactory, WeightInit } from './types.ts';

export type { PositionalConfig, PositionalEncoding, PositionalFactory, TokenContext, WeightInit } from './types.ts';

export const POSITIONAL_ENCODINGS: Readonly<Record<EncodingName, PositionalFactory>> = {
  sinusoidal: createSinusoidal,
  rope: createRope,
  alibi: createAlibi,
  diet: createDiet,
  t5: createT5,
  nope: createNope,
  mape: createMape,
};

export function createPositionalEncoding(
  name: EncodingName,
  config: PositionalConfig,
  init: WeightInit,
): PositionalEncoding {
  const factory = POSITIONAL_ENCODINGS[name];
  // Names come from job specs; a bad one must fail with a message, not a TypeError.
  if (factory === undefined)
    throw new RangeError(
      `unknown positional encoding '${String(name)}': use one of ${Object.keys(POSITIONAL_ENCODINGS).join(', ')}`,
    );
  return factory(config, init);
}
