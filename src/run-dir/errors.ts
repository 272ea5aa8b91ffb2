// Errors of reading a run directory. Each sets `name`, takes `cause`, and says whether retrying can help.
import { PeArenaError } from '../../protocol/errors.ts';

/** The directory given is not a run directory (nor a `pe-arena train --out` directory). */
export class RunDirectoryError extends PeArenaError {
  override readonly name = 'RunDirectoryError';
}
