// Small statistics the bench suites share.

/** The middle value (the mean of the two middle ones for an even count); NaN for none. */
export function median(xs: readonly number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  if (s.length === 0) return Number.NaN;
  return s.length % 2 === 1 ? (s[m] as number) : ((s[m - 1] as number) + (s[m] as number)) / 2;
}

/** Rounded to 3 decimals, as the result files record figures. */
export function round3(x: number): number {
  return Math.round(x * 1000) / 1000;
}

/** The number after `--name` in a suite's arguments, or `fallback` when it is absent or not a number. */
export function numberFlag(args: readonly string[], name: string, fallback: number): number {
  const i = args.indexOf(name);
  const v = i < 0 ? Number.NaN : Number(args[i + 1]);
  return Number.isFinite(v) ? v : fallback;
}
