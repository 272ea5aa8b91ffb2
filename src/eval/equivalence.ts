// Numeric and symbolic equivalence of final answers. Plain numbers are compared exactly (BigInt-safe
// strings, so 32-digit products work); other answers are parsed with mathjs: variable-free expressions
// are compared by value (0.5 = 1/2 = 2/4); expressions with variables by evaluating both at fixed probe
// points (x*2 = 2*x, (x+1)^2 = x^2+2*x+1). Probing instead of simplify/rationalize because those can
// run for minutes or abort the process on short inputs like "x^9^9"; a model's output must not stall
// evaluation. A parse error, a disallowed construct or over MAX_EXPRESSION_CHARS counts as not
// equivalent: this never throws.
import { createRequire } from 'node:module';
import type { MathNode } from 'mathjs';

type MathJs = typeof import('mathjs');
let mathjs: MathJs | undefined;

/**
 * mathjs takes a second or more to load, so it is loaded at the first parse (an evaluation) rather than with every
 * module that imports this one: a training worker that only trains never loads it.
 */
function parse(text: string): MathNode {
  mathjs ??= createRequire(import.meta.url)('mathjs') as MathJs;
  return mathjs.parse(text);
}

export const MAX_EXPRESSION_CHARS = 200;
const RELATIVE_TOLERANCE = 1e-9;
/** Looser for probes: the two forms round differently. */
const PROBE_TOLERANCE = 1e-7;
const PROBES = 6;
const DECIMAL = /^[-+]?\d+(\.\d+)?$/;
const ALLOWED_FUNCTIONS = new Set(['sqrt', 'abs', 'exp', 'log', 'sin', 'cos', 'tan']);
// Arithmetic only: no factorial, comparisons, bitwise, unit conversion.
const ALLOWED_OPERATORS = new Set(['add', 'subtract', 'multiply', 'divide', 'pow', 'unaryMinus', 'unaryPlus']);
const CONSTANTS = new Set(['pi', 'e']);

/** Trims, drops "$", a trailing ".", spaces and thousands separators ("1,000" -> "1000"). */
export function normalizeAnswer(text: string): string {
  let s = text.trim().replace(/\$/g, '').replace(/\s+/g, '');
  while (/\d,\d{3}(?!\d)/.test(s)) s = s.replace(/(\d),(\d{3})(?!\d)/, '$1$2');
  if (s.endsWith('.')) s = s.slice(0, -1);
  return s;
}

/** A plain decimal in a canonical form ("+007.50" -> "7.5", "-0" -> "0"), or undefined. */
export function canonicalDecimal(text: string): string | undefined {
  if (!DECIMAL.test(text)) return undefined;
  let sign = text.startsWith('-') ? '-' : '';
  const body = text.replace(/^[-+]/, '');
  let [int = '', frac = ''] = body.split('.');
  int = int.replace(/^0+(?=\d)/, '');
  frac = frac.replace(/0+$/, '');
  if (/^0*$/.test(int) && frac === '') sign = '';
  return `${sign}${int || '0'}${frac === '' ? '' : `.${frac}`}`;
}

/** The parsed expression when it only uses numbers, variables, + - * / ^, parentheses and a few functions. */
export function parseSafe(text: string): MathNode | undefined {
  if (text === '' || text.length > MAX_EXPRESSION_CHARS) return undefined;
  let node: MathNode;
  try {
    node = parse(text);
  } catch {
    return undefined;
  }
  let ok = true;
  node.traverse((n) => {
    const fields = n as unknown as { fn?: unknown; value?: unknown };
    switch (n.type) {
      case 'SymbolNode':
      case 'ParenthesisNode':
        break;
      case 'ConstantNode':
        if (typeof fields.value !== 'number') ok = false;
        break;
      case 'OperatorNode':
        if (!ALLOWED_OPERATORS.has(String(fields.fn))) ok = false;
        break;
      case 'FunctionNode':
        if (!ALLOWED_FUNCTIONS.has((fields.fn as { name?: string }).name ?? '')) ok = false;
        break;
      default:
        ok = false;
    }
  });
  return ok ? node : undefined;
}

/** Names of the free variables (symbols that are neither function names nor pi/e). */
export function variablesOf(node: MathNode): string[] {
  const callees = new Set<MathNode>();
  node.traverse((n) => {
    if (n.type === 'FunctionNode') callees.add((n as unknown as { fn: MathNode }).fn);
  });
  const names = new Set<string>();
  node.traverse((n) => {
    const name = (n as unknown as { name?: string }).name;
    if (n.type === 'SymbolNode' && !callees.has(n) && name !== undefined && !CONSTANTS.has(name)) names.add(name);
  });
  return [...names].sort();
}

export function hasVariables(node: MathNode): boolean {
  return variablesOf(node).length > 0;
}

function valueAt(node: MathNode, scope: Record<string, number> = {}): number {
  try {
    const v: unknown = node.evaluate(scope);
    return typeof v === 'number' ? v : Number.NaN;
  } catch {
    return Number.NaN;
  }
}

function closeEnough(a: number, b: number, tolerance = RELATIVE_TOLERANCE): boolean {
  return Math.abs(a - b) <= tolerance * Math.max(1, Math.abs(a), Math.abs(b));
}

/** Same value at every probe point where either is finite, and at least half the probes finite. */
function sameAtProbes(a: MathNode, b: MathNode): boolean {
  const names = [...new Set([...variablesOf(a), ...variablesOf(b)])];
  let finite = 0;
  for (let k = 0; k < PROBES; k++) {
    // Distinct, non-integer, mixed-sign values per variable and probe, so no accidental cancellations.
    const scope = Object.fromEntries(
      names.map((name, j) => [name, (k % 2 === 0 ? 1 : -1) * (0.37 + ((k * 31 + j * 17) % 23) / 7)]),
    );
    const va = valueAt(a, scope);
    const vb = valueAt(b, scope);
    const fa = Number.isFinite(va);
    if (fa !== Number.isFinite(vb)) return false;
    if (!fa) continue;
    if (!closeEnough(va, vb, PROBE_TOLERANCE)) return false;
    finite++;
  }
  return finite * 2 >= PROBES;
}

/** True when the two answers are the same number or the same expression (by probing). Never throws. */
export function isEquivalent(prediction: string, target: string): boolean {
  try {
    const a = normalizeAnswer(prediction);
    const b = normalizeAnswer(target);
    if (a === '' || b === '') return false;
    if (a === b) return true;
    const da = canonicalDecimal(a);
    const db = canonicalDecimal(b);
    if (da !== undefined && db !== undefined) return da === db;
    const na = parseSafe(a);
    const nb = parseSafe(b);
    if (na === undefined || nb === undefined) return false;
    if (hasVariables(na) || hasVariables(nb)) return sameAtProbes(na, nb);
    const va = valueAt(na);
    const vb = valueAt(nb);
    return Number.isFinite(va) && Number.isFinite(vb) && closeEnough(va, vb);
  } catch {
    return false;
  }
}
