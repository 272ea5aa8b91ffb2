// The models a run offers: one per job with a final model (or checkpoint) on disk. Each encoding's first job is
// served under the encoding's name ("rope"); other jobs of that encoding under their job id. Models load
// lazily, once, on first use, so `serve` starts at once and a broken model file fails only its own requests.
import { loadRun } from '../run-dir/load-run.ts';
import type { BackendName } from '../train/workload.ts';
import { UnknownModelError } from './errors.ts';
import type { LoadedModel } from './inference.ts';

export interface ModelInfo {
  name: string;
  encoding: string;
  jobId: string;
  task: string;
  seed: number;
  file: string;
  loaded: boolean;
  step?: number;
  parameters?: number;
  /** Set when loading failed; requests for it answer this error. */
  error?: string;
}

type Loader = (file: string, name: string) => Promise<LoadedModel>;

export class ModelRegistry {
  private readonly entries = new Map<string, ModelInfo>();
  private readonly loading = new Map<string, Promise<LoadedModel>>();
  private readonly loaded = new Map<string, LoadedModel>();

  constructor(
    readonly runDir: string,
    private readonly loader: Loader,
  ) {}

  /** Scans the run directory (again): new jobs with models appear, known ones stay loaded. */
  refresh(): void {
    const run = loadRun(this.runDir);
    const jobs = run.jobs
      .filter((j) => j.modelFile !== undefined)
      .sort((a, b) => a.task.localeCompare(b.task) || a.seed - b.seed || a.jobId.localeCompare(b.jobId));
    const taken = new Set<string>();
    for (const j of jobs) {
      const name = taken.has(j.encoding) ? j.jobId : j.encoding;
      taken.add(name);
      const known = this.entries.get(name);
      if (known !== undefined && known.file === j.modelFile) continue;
      this.entries.set(name, {
        name,
        encoding: j.encoding,
        jobId: j.jobId,
        task: j.task,
        seed: j.seed,
        file: j.modelFile as string,
        loaded: false,
      });
    }
  }

  names(): string[] {
    return [...this.entries.keys()];
  }

  list(): ModelInfo[] {
    return [...this.entries.values()].map((e) => ({ ...e }));
  }

  has(name: string): boolean {
    return this.entries.has(name);
  }

  /** The loaded model; UnknownModelError (404) for a name the run does not have. */
  async get(name: string): Promise<LoadedModel> {
    const entry = this.entries.get(name);
    if (entry === undefined) throw new UnknownModelError(name, this.names());
    const ready = this.loaded.get(name);
    if (ready !== undefined) return ready;
    let pending = this.loading.get(name);
    if (pending === undefined) {
      pending = this.loader(entry.file, name).then(
        (m) => {
          this.loaded.set(name, m);
          Object.assign(entry, { loaded: true, step: m.step, parameters: m.parameters });
          delete entry.error;
          return m;
        },
        (error: unknown) => {
          // Forget the failure so a fixed file can be tried again; remember why for /models.
          this.loading.delete(name);
          entry.error = error instanceof Error ? error.message : String(error);
          throw error;
        },
      );
      this.loading.set(name, pending);
    }
    return pending;
  }

  dispose(): void {
    for (const m of this.loaded.values()) m.model.dispose();
    this.loaded.clear();
    this.loading.clear();
  }
}

/** A registry that loads with TensorFlow.js (imported on first load). */
export function tfRegistry(runDir: string, backend?: BackendName): ModelRegistry {
  return new ModelRegistry(runDir, async (file, name) => {
    const { loadModelFile } = await import('./inference.ts');
    return loadModelFile(file, name, backend);
  });
}
