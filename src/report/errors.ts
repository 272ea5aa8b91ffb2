// Errors of the report layer. Each sets `name`, takes `cause`, and says whether retrying can help.
import { PeArenaError } from '../../protocol/errors.ts';

export class ReportError extends PeArenaError {
  override readonly name: string = 'ReportError';
}

/** Rendering a plot or the PDF failed (missing browser, font, or a bad spec). */
export class RenderError extends ReportError {
  override readonly name = 'RenderError';
  constructor(message: string, options: { cause?: unknown } = {}) {
    // A missing browser or a broken spec does not fix itself.
    super(message, { ...options, retryable: false });
  }
}
