// Templated word problems with chain-of-thought in GSM8K form: one "a op b=c" step per line, then
// "#### <answer>". Numbers are drawn so every answer is a non-negative integer (divisions are exact).
// length = number of steps; a length split is train {maxSteps: 2}, test {minSteps: 3, maxSteps: 5} (the "bus"
// template has 1-5 steps, the others 1 or 2). Default params {maxValue 20}: at most 146 chars (prompt + target), measured
// over 200k draws; prompts end with "\n" so the target starts on its own line.
import type { Rng } from './rng.ts';
import type { Generator, Problem } from './problem.ts';
import { intParam, stringParam, type ParamValues } from './params.ts';

const NAMES = [
  'Ann',
  'Ben',
  'Cal',
  'Dee',
  'Eli',
  'Fay',
  'Gus',
  'Ivy',
  'Jo',
  'Kim',
  'Lee',
  'Max',
  'Ned',
  'Ola',
  'Sam',
  'Tia',
];
const ITEMS = ['pens', 'apples', 'books', 'cups', 'hats', 'kites', 'plums', 'socks'];

interface Drawn {
  question: string;
  steps: string[];
  answer: number;
}

interface Template {
  readonly minSteps: number;
  readonly maxSteps: number;
  /** steps: how many steps to write, in [minSteps, maxSteps] (only variable-length templates use it). */
  draw(rng: Rng, max: number, steps: number): Drawn;
}

/** Integer in [lo, max], with max never below lo (small maxValue still works). */
function num(rng: Rng, lo: number, max: number): number {
  return rng.int(lo, Math.max(lo, max));
}

export const TEMPLATES = {
  // rate * time
  rate: {
    minSteps: 1,
    maxSteps: 1,
    draw(rng, max) {
      const speed = num(rng, 2, max * 3);
      const hours = num(rng, 2, Math.min(max, 12));
      const who = rng.pick(NAMES);
      return {
        question: `${who} drives ${speed} km per hour for ${hours} hours. How many km?`,
        steps: [`${speed}*${hours}=${speed * hours}`],
        answer: speed * hours,
      };
    },
  },
  // quantity * price, plus another cost
  totals: {
    minSteps: 2,
    maxSteps: 2,
    draw(rng, max) {
      const [who, item] = [rng.pick(NAMES), rng.pick(ITEMS)];
      const q = num(rng, 2, Math.min(max, 12));
      const price = num(rng, 2, max);
      const extra = num(rng, 1, max * 2);
      const a = q * price;
      return {
        question: `${who} buys ${q} ${item} at $${price} each and a bag for $${extra}. How much in all?`,
        steps: [`${q}*${price}=${a}`, `${a}+${extra}=${a + extra}`],
        answer: a + extra,
      };
    },
  },
  // paid - quantity * price
  change: {
    minSteps: 2,
    maxSteps: 2,
    draw(rng, max) {
      const [who, item] = [rng.pick(NAMES), rng.pick(ITEMS)];
      const q = num(rng, 2, Math.min(max, 9));
      const price = num(rng, 1, max);
      const cost = q * price;
      const paid = cost + num(rng, 0, max * 2);
      return {
        question: `${who} pays $${paid} for ${q} ${item} at $${price} each. How much change?`,
        steps: [`${q}*${price}=${cost}`, `${paid}-${cost}=${paid - cost}`],
        answer: paid - cost,
      };
    },
  },
  // a:b ratio, given the first part
  ratio: {
    minSteps: 2,
    maxSteps: 2,
    draw(rng, max) {
      const a = num(rng, 1, 9);
      const b = num(rng, 1, 9);
      const unit = num(rng, 1, max);
      const first = a * unit;
      return {
        question: `Cats to dogs is ${a}:${b}. There are ${first} cats. How many dogs?`,
        steps: [`${first}/${a}=${unit}`, `${unit}*${b}=${unit * b}`],
        answer: unit * b,
      };
    },
  },
  // equal sharing
  share: {
    minSteps: 1,
    maxSteps: 1,
    draw(rng, max) {
      const [who, item] = [rng.pick(NAMES), rng.pick(ITEMS)];
      const friends = num(rng, 2, 9);
      const each = num(rng, 1, max);
      const total = friends * each;
      return {
        question: `${who} shares ${total} ${item} equally among ${friends} friends. How many each?`,
        steps: [`${total}/${friends}=${each}`],
        answer: each,
      };
    },
  },
  // what is left after giving some away twice
  left: {
    minSteps: 2,
    maxSteps: 2,
    draw(rng, max) {
      const [who, item] = [rng.pick(NAMES), rng.pick(ITEMS)];
      const [x, y] = [rng.pick(NAMES), rng.pick(NAMES)];
      const a = num(rng, 1, max);
      const b = num(rng, 1, max);
      const total = a + b + num(rng, 0, max * 2);
      return {
        question: `${who} has ${total} ${item}, gives ${a} to ${x} and ${b} to ${y}. How many are left?`,
        steps: [`${a}+${b}=${a + b}`, `${total}-${a + b}=${total - a - b}`],
        answer: total - a - b,
      };
    },
  },
  // percent discount: price - price*p/100, prices a multiple of 20 so 5% steps stay whole
  discount: {
    minSteps: 2,
    maxSteps: 2,
    draw(rng, max) {
      const price = 20 * num(rng, 1, Math.max(1, Math.ceil(max / 2)));
      const pct = 5 * num(rng, 1, 18);
      const off = (price * pct) / 100;
      return {
        question: `A $${price} coat is ${pct}% off. What is the sale price?`,
        steps: [`${price}*${pct}/100=${off}`, `${price}-${off}=${price - off}`],
        answer: price - off,
      };
    },
  },
  // mean of three scores
  average: {
    minSteps: 2,
    maxSteps: 2,
    draw(rng, max) {
      const mean = num(rng, 2, max * 5);
      const d1 = rng.int(0, Math.min(mean, 9));
      const d2 = rng.int(0, Math.min(mean, 9));
      const [s1, s2, s3] = [mean - d1, mean + d2, mean + d1 - d2];
      const sum = s1 + s2 + s3;
      return {
        question: `Scores are ${s1}, ${s2} and ${s3}. What is the mean?`,
        steps: [`${s1}+${s2}+${s3}=${sum}`, `${sum}/3=${mean}`],
        answer: mean,
      };
    },
  },
  // work rate: how long to fill, then the cost of the time
  fill: {
    minSteps: 2,
    maxSteps: 2,
    draw(rng, max) {
      const rate = num(rng, 2, max);
      const minutes = num(rng, 2, Math.min(max, 15));
      const volume = rate * minutes;
      const cents = num(rng, 1, 9);
      return {
        question: `A pump fills ${rate} liters a minute and costs $${cents} a minute. What does filling ${volume} liters cost?`,
        steps: [`${volume}/${rate}=${minutes}`, `${minutes}*${cents}=${minutes * cents}`],
        answer: minutes * cents,
      };
    },
  },
  // a running count over 1-5 stops: the one template whose step count varies, for length splits
  bus: {
    minSteps: 1,
    maxSteps: 5,
    draw(rng, max, steps) {
      let count = num(rng, 1, max * 2);
      const start = count;
      const moves: string[] = [];
      const lines: string[] = [];
      for (let i = 0; i < steps; i++) {
        const off = count > 1 && rng.next() < 0.5;
        const k = off ? rng.int(1, Math.min(count, max)) : num(rng, 1, max);
        const next = off ? count - k : count + k;
        moves.push(`${k} get ${off ? 'off' : 'on'}`);
        lines.push(`${count}${off ? '-' : '+'}${k}=${next}`);
        count = next;
      }
      return { question: `A bus has ${start} people. ${moves.join(', ')}. How many now?`, steps: lines, answer: count };
    },
  },
} satisfies Record<string, Template>;

export type TemplateName = keyof typeof TEMPLATES;
export const TEMPLATE_NAMES = Object.keys(TEMPLATES) as TemplateName[];

/** The templates selected by params: an optional comma list, filtered by minSteps..maxSteps. */
export function selectTemplates(params: ParamValues): TemplateName[] {
  const list = stringParam(params, 'templates');
  const names = list === undefined ? TEMPLATE_NAMES : (list.split(',').map((s) => s.trim()) as TemplateName[]);
  const lo = intParam(params, 'minSteps');
  const hi = intParam(params, 'maxSteps');
  return names.filter((n) => n in TEMPLATES && TEMPLATES[n].minSteps <= hi && TEMPLATES[n].maxSteps >= lo);
}

export const wordProblems: Generator = {
  schema: {
    maxValue: { kind: 'int', min: 2, max: 100_000, default: 20 },
    minSteps: { kind: 'int', min: 1, max: 10, default: 1 },
    maxSteps: { kind: 'int', min: 1, max: 10, default: 10 },
    templates: { kind: 'string' },
  },
  check(params) {
    const errors: string[] = [];
    if (intParam(params, 'minSteps') > intParam(params, 'maxSteps')) {
      return [
        `task.params.maxSteps: must be >= minSteps (got minSteps ${params.minSteps}, maxSteps ${params.maxSteps})`,
      ];
    }
    const list = stringParam(params, 'templates');
    if (list !== undefined) {
      for (const n of list.split(',').map((s) => s.trim())) {
        if (!(n in TEMPLATES))
          errors.push(`task.params.templates: unknown template "${n}" (known: ${TEMPLATE_NAMES.join(', ')})`);
      }
    }
    if (errors.length === 0 && selectTemplates(params).length === 0) {
      errors.push(`task.params.minSteps: no template has between ${params.minSteps} and ${params.maxSteps} steps`);
    }
    return errors;
  },
  generate(rng, params): Problem {
    const template: Template = TEMPLATES[rng.pick(selectTemplates(params))];
    const steps = rng.int(
      Math.max(template.minSteps, intParam(params, 'minSteps')),
      Math.min(template.maxSteps, intParam(params, 'maxSteps')),
    );
    const d = template.draw(rng, intParam(params, 'maxValue'), steps);
    const answer = String(d.answer);
    return {
      prompt: `${d.question}\n`,
      target: `${d.steps.join('\n')}\n#### ${answer}`,
      answer,
      length: d.steps.length,
    };
  },
};
