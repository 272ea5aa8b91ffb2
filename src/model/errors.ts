// Errors of the model folder. Each sets `name`, takes `cause`, and says whether retrying can help:
// a bad config or an over-long input is the caller's mistake, so none of these is retryable.
import { PeArenaError } from '../../protocol/errors.ts';

export class ModelError extends PeArenaError {
  override readonly name: string = 'ModelError';
}

/** A TransformerConfig that cannot build a model; `field` names the offending setting. */
export class ModelConfigError extends ModelError {
  override readonly name = 'ModelConfigError';
  constructor(
    message: string,
    readonly field: string,
    options: { cause?: unknown } = {},
  ) {
    super(message, options);
  }
}

/** Token ids or shapes the model cannot take (out-of-vocabulary id, wrong rank, empty prompt). */
export class ModelInputError extends ModelError {
  override readonly name = 'ModelInputError';
}
