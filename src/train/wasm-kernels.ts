// Faster replacements for four kernels of the wasm backend (tfjs-backend-wasm 4.22), installed when it loads.
// Found with `--cpu-prof` on a tiny-preset training step: the stock kernels copy memory that needs no copy, and the
// garbage keeps V8's collector busy on another core. Without the copies a step takes 1.15x less wall time and 1.21x
// less CPU (`npm run bench -- kernels`, docs/benchmarks.md):
// - Identity copied its input. The engine clones every tensor it saves for the backward pass through Identity, so
//   each step copied all saved activations once more. TensorFlow.js tensors are immutable and the wasm backend counts
//   references (its Reshape already shares), so the copy is replaced by a shared reference, as the cpu backend does.
// - Slice read the whole input out of the wasm heap into a fresh JS array (`readSync`) before copying the slice, so
//   splitting the attention's q, k, v copied the whole projection three times. It now reads through a view.
// - SplitV calls the module's own Slice, not the registry's, so it is replaced too.
// - Cast to the dtype a tensor already has copied it (the gradients of Mul and Div cast their inputs to float32).
//   It now shares, as Identity does; a cast that changes the dtype still runs the stock kernel.
// Results are bitwise those of the stock kernels (test/train/wasm-kernels.test.ts).
import * as tf from '@tensorflow/tfjs';

type DataId = object;
interface Info {
  dataId: DataId;
  shape: number[];
  dtype: tf.DataType;
}
type Values = Float32Array | Int32Array | Uint8Array;
/** The part of tfjs-backend-wasm's BackendWasm these kernels use (public methods of its class). */
interface WasmBackend {
  incRef(dataId: DataId): void;
  makeOutput(shape: number[], dtype: tf.DataType): Info;
  typedArrayFromHeap(info: Info): Values;
}
type KernelFunc = (args: { inputs: Record<string, Info>; backend: unknown; attrs?: Record<string, unknown> }) => Info;

function identity(x: Info, backend: WasmBackend): Info {
  backend.incRef(x.dataId);
  return { dataId: x.dataId, shape: x.shape, dtype: x.dtype };
}

/**
 * Copies x[begin : begin + size] into a new tensor. The output is allocated first: allocating may grow the wasm
 * memory, which detaches any view taken before it.
 */
function sliceThroughView(x: Info, begin: number[], size: number[], backend: WasmBackend): Info {
  const out = backend.makeOutput(size, x.dtype);
  const from = backend.typedArrayFromHeap(x);
  const to = backend.typedArrayFromHeap(out);
  const xStrides = tf.util.computeStrides(x.shape);
  const rank = x.shape.length;
  // Copy runs of the innermost dimension; every index above it is walked like an odometer.
  const inner = size[rank - 1] ?? 1;
  const outer = size.slice(0, -1);
  const index = new Array<number>(outer.length).fill(0);
  const count = outer.reduce((a, b) => a * b, 1);
  let at = 0;
  for (let n = 0; n < count; n++) {
    let offset = begin[rank - 1] ?? 0;
    for (let d = 0; d < outer.length; d++)
      offset += ((begin[d] as number) + (index[d] as number)) * (xStrides[d] as number);
    to.set(from.subarray(offset, offset + inner), at);
    at += inner;
    for (let d = outer.length - 1; d >= 0; d--) {
      index[d] = (index[d] as number) + 1;
      if ((index[d] as number) < (outer[d] as number)) break;
      index[d] = 0;
    }
  }
  return out;
}

function parseSlice(x: Info, begin: number | number[], size?: number | number[]): [number[], number[]] {
  return tf.slice_util.parseSliceParams(x as unknown as tf.TensorInfo, begin, size) as [number[], number[]];
}

const NAMES = ['Identity', 'Cast', 'Slice', 'SplitV'] as const;
let kernels: { stock: tf.KernelConfig[]; fast: tf.KernelConfig[] } | undefined;

function register(configs: tf.KernelConfig[]): void {
  for (const config of configs) {
    tf.unregisterKernel(config.kernelName, 'wasm');
    tf.registerKernel(config);
  }
}

function fastKernels(stock: Map<string, KernelFunc>): tf.KernelConfig[] {
  const stockOf = (name: string): KernelFunc => stock.get(name) as KernelFunc;
  const slice = (x: Info, begin: number[], size: number[], backend: unknown): Info =>
    x.dtype === 'string'
      ? stockOf('Slice')({ inputs: { x }, backend, attrs: { begin, size } })
      : sliceThroughView(x, begin, size, backend as WasmBackend);
  const kernel = (kernelName: string, kernelFunc: (args: Parameters<KernelFunc>[0]) => Info | Info[]) => ({
    kernelName,
    backendName: 'wasm',
    kernelFunc: kernelFunc as unknown as tf.KernelFunc,
  });
  return [
    kernel('Identity', (args) => {
      const x = args.inputs.x as Info;
      return x.dtype === 'string' ? stockOf('Identity')(args) : identity(x, args.backend as WasmBackend);
    }),
    kernel('Cast', (args) => {
      const x = args.inputs.x as Info;
      const dtype = (args.attrs as { dtype: tf.DataType }).dtype;
      return x.dtype === dtype && dtype !== 'string' ? identity(x, args.backend as WasmBackend) : stockOf('Cast')(args);
    }),
    kernel('Slice', (args) => {
      const x = args.inputs.x as Info;
      const attrs = args.attrs as { begin: number | number[]; size?: number | number[] };
      const [begin, size] = parseSlice(x, attrs.begin, attrs.size);
      return slice(x, begin, size, args.backend);
    }),
    kernel('SplitV', (args) => {
      const x = args.inputs.x as Info;
      const attrs = args.attrs as { numOrSizeSplits: number | number[]; axis: number | number[] };
      const axis = tf.util.parseAxisParam(attrs.axis, x.shape)[0] as number;
      const sizes = tf.backend_util.prepareSplitSize(x as unknown as tf.Tensor, attrs.numOrSizeSplits, axis);
      const begin = new Array<number>(x.shape.length).fill(0);
      return sizes.map((s) => {
        const size = x.shape.slice();
        size[axis] = s;
        const part = slice(x, begin, size, args.backend);
        begin[axis] = (begin[axis] as number) + s;
        return part;
      });
    }),
  ];
}

/**
 * Registers the wasm backend's kernels of `which` set: 'fast' (this module's, what `selectBackend` installs) or
 * 'stock' (the package's own, for tests and benchmarks that compare the two). A no-op until the wasm package is loaded.
 */
export function useWasmKernels(which: 'fast' | 'stock'): void {
  if (kernels === undefined) {
    const stock = NAMES.map((name) => tf.getKernel(name, 'wasm'));
    if (stock.some((config) => config === undefined)) return;
    const configs = stock as tf.KernelConfig[];
    const funcs = new Map(configs.map((c) => [c.kernelName, c.kernelFunc as unknown as KernelFunc]));
    kernels = { stock: configs, fast: fastKernels(funcs) };
  }
  register(kernels[which]);
}
