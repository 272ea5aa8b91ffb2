// Learning-rate schedule: linear warmup from 0 to the peak, then cosine (or linear) decay to a floor.
// A pure function of the step, so a resumed run gets exactly the rates the straight run would have.

export interface ScheduleSpec {
  peak: number;
  warmupSteps: number;
  totalSteps: number;
  decay?: 'cosine' | 'linear' | 'constant';
  /** The floor as a fraction of the peak (default 0.1). */
  minRatio?: number;
}

/** The learning rate for the step about to be taken; `step` counts completed steps (0 for the first). */
export function learningRateAt(step: number, spec: ScheduleSpec): number {
  const { peak, warmupSteps, totalSteps } = spec;
  const decay = spec.decay ?? 'cosine';
  const floor = peak * (spec.minRatio ?? 0.1);
  // Step s is the (s+1)-th update: warmup reaches the peak on its last warmup step, never uses lr 0.
  if (warmupSteps > 0 && step < warmupSteps) return (peak * (step + 1)) / warmupSteps;
  if (decay === 'constant') return peak;
  const span = Math.max(1, totalSteps - warmupSteps);
  const progress = Math.min(1, Math.max(0, (step - warmupSteps) / span));
  if (decay === 'linear') return peak - (peak - floor) * progress;
  return floor + (peak - floor) * 0.5 * (1 + Math.cos(Math.PI * progress));
}
