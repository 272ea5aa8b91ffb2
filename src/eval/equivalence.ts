// Numeric and symbolic equivalence of final answers. Plain numbers are compared exactly (BigInt for
// integers, so 32-digit products are safe); anything else goes through mathjs: numbers by value
// (0.5 = 1/2 = 2/4), expressions with variables by simplify((a) - (b)) == 0 (x*2 = 2*x). A parse error,
// a disallowed construct or an input longer than MAX_EXPRESSION_CHARS counts as not equivalent: this
// never throws.
import { parse, rationalize, simplify, type MathNode } from 'mathjs';

export const MAX_EXPRESSION_CHARS = 200;
const RELATIVE_TOLERANCE = 1e-9;
const DECIMAL = /^[-+]?\d+(\.\d+)?$/;
const ALLOWED_FUNCTIONS = new Set(['sqrt', 'abs', 'exp', 'log', 'sin', 'cos', 'tan']);

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
    switch (n.type) {
      case 'ConstantNode':
      case 'SymbolNode':
      case 'OperatorNode':
      case 'ParenthesisNode':
        break;
      case 'FunctionNode': {
        const fn = (n as unknown as { fn: { name?: string } }).fn;
        if (!ALLOWED_FUNCTIONS.has(fn.name ?? '')) ok = false;
        break;
      }
      default:
        ok = false;
    }
  });
  return ok ? node : undefined;
}

export function hasVariables(node: MathNode): boolean {
  // Function names are SymbolNodes too; a variable is a symbol that is not the callee of a function.
  const callees = new Set<MathNode>();
  node.traverse((n) => {
    if (n.type === 'FunctionNode') callees.add((n as unknown as { fn: MathNode }).fn);
  });
  return node.filter((n) => n.type === 'SymbolNode' && !callees.has(n) && !['pi', 'e'].includes((n as unknown as { name: string }).name)).length > 0;
}

function toNumber(node: MathNode): number | undefined {
  try {
    const v: unknown = node.evaluate();
    const n = typeof v === 'number' ? v : Number(v);
    return Number.isFinite(n) ? n : undefined;
  } catch {
    return undefined;
  }
}

function isZero(reduce: () => MathNode): boolean {
  try {
    const node = reduce();
    return node.type === 'ConstantNode' && Number((node as unknown as { value: unknown }).value) === 0;
  } catch {
    return false;
  }
}

function closeEnough(a: number, b: number): boolean {
  return Math.abs(a - b) <= RELATIVE_TOLERANCE * Math.max(1, Math.abs(a), Math.abs(b));
}

/** True when the two answers are the same number or (where simplify can tell) the same expression. */
export function isEquivalent(prediction: string, target: string): boolean {
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
  if (hasVariables(na) || hasVariables(nb)) {
    const difference = `(${a}) - (${b})`;
    if (isZero(() => simplify(difference))) return true;
    // simplify does not expand products; rationalize does ((x+1)^2 = x^2+2*x+1). Skipped for big powers,
    // whose expansion would be slow.
    return !/\^\s*\(?\s*\d{2,}/.test(difference) && isZero(() => rationalize(difference));
  }
  const va = toNumber(na);
  const vb = toNumber(nb);
  return va !== undefined && vb !== undefined && closeEnough(va, vb);
}
