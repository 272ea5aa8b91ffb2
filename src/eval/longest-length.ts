// The longest length a model carries: its own file, free of imports, so the coordinator's comparison table can read
// it without loading the scorer (mathjs).

/** The longest length up to which every length (from the shortest) reaches `threshold` exact match; null if none. */
export function longestPassingLength(
  perLength: Readonly<Record<string, { exactMatch: number }>>,
  threshold = 0.9,
): number | null {
  let longest: number | null = null;
  for (const length of Object.keys(perLength)
    .map(Number)
    .sort((a, b) => a - b)) {
    if ((perLength[String(length)]?.exactMatch ?? 0) < threshold) break;
    longest = length;
  }
  return longest;
}
