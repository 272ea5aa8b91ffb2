// Character-level tokenizer for math text. Ids 0..3 are special; every other printable ASCII
// character has its own id, so any problem text round-trips; anything else maps to UNK.
export const PAD = 0;
export const BOS = 1;
export const EOS = 2;
export const UNK = 3;
const FIRST_CHAR = 4;
// Printable ASCII plus newline: digits, operators, letters for word problems, '#' for GSM8K answers.
const CHARS = ['\n', ...Array.from({ length: 95 }, (_, i) => String.fromCharCode(32 + i))];

export class Tokenizer {
  readonly vocabSize = FIRST_CHAR + CHARS.length;
  private readonly ids = new Map<string, number>(CHARS.map((c, i) => [c, FIRST_CHAR + i]));

  encode(text: string): number[] {
    return Array.from(text, (c) => this.ids.get(c) ?? UNK);
  }

  /** Stops at EOS; drops PAD and BOS. */
  decode(ids: Iterable<number>): string {
    let out = '';
    for (const id of ids) {
      if (id === EOS) break;
      if (id < FIRST_CHAR) {
        if (id === UNK) out += '\uFFFD';
        continue;
      }
      out += CHARS[id - FIRST_CHAR] ?? '\uFFFD';
    }
    return out;
  }
}

export const tokenizer = new Tokenizer();
