// The wire contract between coordinator and agents (and between peers for collectives).
// One interface per message, each with a literal `type`; one union per direction.
// This folder is a leaf: it imports nothing from coordinator/, node-agent/ or src/.

/**
 * Bumped on any incompatible change; agreed once, in hello/welcome.
 * 2: metrics carry one Float64Array of columns instead of an array of point objects; peers say peer_bye.
 * 3: a coordinator <-> agent frame may carry several messages back to back.
 * 4: a message whose `data` holds 64 KiB or more sends those bytes as a second frame (codec.ts encodeParts).
 * 5: ModelSpec.attentionLogitCap (an agent that ignored it would train a different model).
 * 6: ModelSpec.sinusoidalStride (likewise).
 * 7: the mape encoding and its ModelSpec options (mapeMaxOffset, mapeOffset, mapeRoles).
 * 8: EvaluationSpec.lengthRange/perLength (per-length test sets; an agent that ignored them would evaluate less).
 * 9: data-parallel gangs: assign.gang, gang_start, gang_reform, gang_address, gang_ready, gang_done; peer_hello.session;
 *    ModelSpec.mapeRelative (an agent that ignored it would train a different model).
 */
export const PROTOCOL_VERSION = 10;

declare const brand: unique symbol;
export type Brand<T, B extends string> = T & { readonly [brand]: B };
export type AgentId = Brand<string, 'AgentId'>;
export type JobId = Brand<string, 'JobId'>;
export type RunId = Brand<string, 'RunId'>;
export type CheckpointId = Brand<string, 'CheckpointId'>;

/** Errors cross the wire in this form (never as class instances). */
export interface WireError {
  name: string;
  message: string;
  stack?: string;
  retryable: boolean;
}

export interface DeviceInfo {
  kind: 'gpu' | 'cpu';
  name: string;
  memoryBytes?: number;
}

// ---------------------------------------------------------------------------------------------
// The job: what one agent trains. Plain data, so it can be journaled and sent as it is.

export const ENCODINGS = ['sinusoidal', 'rope', 'alibi', 'diet', 't5', 'nope', 'mape'] as const;
export type EncodingName = (typeof ENCODINGS)[number];

export interface ModelSpec {
  layers: number;
  dModel: number;
  heads: number;
  ffnDim: number;
  dropout: number;
  maxLen: number;
  /**
   * Soft cap on every head's query-key logits: cap * tanh(logit / cap), so no head's softmax can saturate beyond
   * e^(2 * cap) between two keys; absent or 0 = no cap. Positional biases (alibi, diet, t5) are added after it.
   */
  attentionLogitCap?: number;
  /**
   * Sinusoidal only (the other encodings ignore it): position p is encoded as the table's row p * stride; absent
   * or 1 = Vaswani et al.'s table. 2 spreads neighbouring positions twice as far apart on every frequency.
   */
  sinusoidalStride?: number;
  /** MAPE only: the largest random offset added to every significance index in training (absent: 20; 0: none). */
  mapeMaxOffset?: number;
  /** MAPE only: false trains without the random offset (the ablation; same as mapeMaxOffset 0). Absent: true. */
  mapeOffset?: boolean;
  /** MAPE only: false drops the role embedding (the ablation). Absent: true. */
  mapeRoles?: boolean;
  /** MAPE only: true adds the relative variant's per-head bias on the clipped index difference. Absent: false. */
  mapeRelative?: boolean;
}

/** A task: a generator name and its parameters, e.g. {name: 'addition', params: {minDigits: 1, maxDigits: 3}}. */
export interface TaskSpec {
  name: string;
  params: Record<string, number | string | boolean>;
}

export interface TrainingSpec {
  steps: number;
  batchSize: number;
  learningRate: number;
  warmupSteps: number;
  weightDecay: number;
  clipNorm: number;
  /** Train one job on several agents at once (absent: one agent, today's path). */
  dataParallel?: DataParallelSpec;
}

/**
 * A data-parallel job: `ranks` agents share each global batch of `batchSize` rows, so results do not depend on the
 * count. The job keeps training while at least `minRanks` remain (absent: 1) and may grow to `maxRanks` (absent:
 * `ranks`) when agents are idle. Each bound is a positive integer, minRanks <= ranks <= maxRanks <= batchSize.
 */
export interface DataParallelSpec {
  ranks: number;
  minRanks?: number;
  maxRanks?: number;
}

export interface EvaluationSpec {
  /** Problems drawn from the training distribution (held out by seed). */
  samples: number;
  /** Optional out-of-distribution test task for length generalization (e.g. longer operands). */
  lengthTask?: TaskSpec;
  lengthSamples?: number;
  /**
   * Per-length test sets (addition, multiplication): for every operand length from lengthRange[0] to
   * lengthRange[1], `perLength` held-out problems of the job's own task and format (split 'length').
   */
  lengthRange?: [number, number];
  perLength?: number;
}

export interface JobSpec {
  jobId: JobId;
  runId: RunId;
  encoding: EncodingName;
  task: TaskSpec;
  seed: number;
  preset: string;
  model: ModelSpec;
  training: TrainingSpec;
  evaluation: EvaluationSpec;
  /** Upload a checkpoint every this many steps. */
  checkpointEvery: number;
  /** Placement constraints; absent means any agent will do. */
  needs?: { backend?: string; gpu?: boolean };
}

/** One training step's numbers, streamed in batches. */
export interface MetricPoint {
  step: number;
  loss: number;
  learningRate: number;
  gradNorm: number;
  tokensPerSecond: number;
  time: number;
  accuracy?: number;
}

/** What a finished job reports; written as jobs/<jobId>/evaluation.json. */
export interface Evaluation {
  jobId: JobId;
  encoding: EncodingName;
  task: string;
  seed: number;
  backend: string;
  steps: number;
  wallTimeS: number;
  parameters: number;
  tokensPerSecond: number;
  exactMatch: number;
  symbolicAccuracy: number;
  stepAccuracy: number | null;
  /** Keyed by problem length (e.g. operand digits): exact match and (where scored) digit accuracy per bucket. */
  perLength: Record<string, { n: number; exactMatch: number; digitAccuracy?: number }>;
  /** Mean digit accuracy of the answers on the in-distribution test split (absent from older agents). */
  digitAccuracy?: number;
  /** The longest length up to which every length has >= 90% exact match; null: not even the shortest. */
  longestLength90?: number | null;
  /** [layer][head] mean attention entropy in nats. */
  attentionEntropy: number[][];
  errorTaxonomy: Record<string, number>;
  /** Per problem, for paired tests between encodings (same seeds give the same problems). */
  problems: {
    id: string;
    split: string;
    length: number;
    correct: boolean;
    symbolic: boolean;
    prediction: string;
    target: string;
  }[];
}

// ---------------------------------------------------------------------------------------------
// Agent -> coordinator

export interface Hello {
  type: 'hello';
  version: number;
  agentId: AgentId;
  host: string;
  pid: number;
  backend: string;
  devices: DeviceInfo[];
  /** The scheduler's id for this agent (PBS/Slurm job id), when launched by one. */
  launcherId?: string;
}

export interface Heartbeat {
  type: 'heartbeat';
  agentId: AgentId;
  seq: number;
  time: number;
  state: 'idle' | 'busy' | 'draining';
  jobId?: JobId;
  epoch?: number;
  step?: number;
}

/** The columns of Metrics.columns, in order: one per MetricPoint field. */
export const METRIC_COLUMNS = [
  'step',
  'loss',
  'learningRate',
  'gradNorm',
  'tokensPerSecond',
  'time',
  'accuracy',
] as const;
export type MetricColumn = (typeof METRIC_COLUMNS)[number];

/**
 * A batch of MetricPoints, column by column in one Float64Array: columns[c * n + i] is column METRIC_COLUMNS[c]
 * of point i, for n = columns.length / 7; accuracy is NaN at steps that measured none. One typed array instead
 * of an object per point makes decoding one copy (an object per point cost more than the transport itself).
 * Build and read it with metricsMessage(), metricPoints() and metricColumn() from metric-columns.ts.
 */
export interface Metrics {
  type: 'metrics';
  jobId: JobId;
  epoch: number;
  columns: Float64Array;
}

/** Checkpoints and final models move in chunks, in either direction; sha256 is of the whole blob. */
export interface CheckpointChunk {
  type: 'checkpoint_chunk';
  jobId: JobId;
  epoch: number;
  checkpointId: CheckpointId;
  kind: 'checkpoint' | 'final';
  step: number;
  index: number;
  count: number;
  totalBytes: number;
  sha256: string;
  data: Uint8Array;
}

/** Agent asks for a checkpoint to resume from (or for a chunk again after a bad one). */
export interface CheckpointRequest {
  type: 'checkpoint_request';
  jobId: JobId;
  epoch: number;
  checkpointId: CheckpointId;
}

export interface JobResult {
  type: 'job_result';
  jobId: JobId;
  epoch: number;
  evaluation: Evaluation;
}

export interface JobFailed {
  type: 'job_failed';
  jobId: JobId;
  epoch: number;
  error: WireError;
}

/** Rank 0 of a forming gang generation is bound: the coordinator relays the address to the other ranks. */
export interface GangAddress {
  type: 'gang_address';
  jobId: JobId;
  epoch: number;
  generation: number;
  address: string;
}

/**
 * A gang member stands at a step boundary without a generation to train in (its generation broke, it was asked to
 * reform, or it is new and loaded): `step` is the last step it applied, its replica's whole state is that step's.
 */
export interface GangReady {
  type: 'gang_ready';
  jobId: JobId;
  epoch: number;
  /** The generation it was last seated in (0: never seated). */
  generation: number;
  step: number;
  reason: string;
}

/** A rank other than 0 trained the last step: it is free (rank 0 exports, evaluates and reports). */
export interface GangDone {
  type: 'gang_done';
  jobId: JobId;
  epoch: number;
  generation: number;
  step: number;
}

export interface ErrorMessage {
  type: 'error';
  error: WireError;
  /** What the error is about, e.g. the message type that could not be handled. */
  context?: string;
}

export interface Bye {
  type: 'bye';
  agentId: AgentId;
  reason: string;
}

/** `pe-arena status tcp://...` asks a running coordinator for a snapshot; no hello needed. */
export interface StatusRequest {
  type: 'status_request';
  version: number;
}

export type AgentToCoordinator =
  | StatusRequest
  | Hello
  | Heartbeat
  | Metrics
  | CheckpointChunk
  | CheckpointRequest
  | JobResult
  | JobFailed
  | GangAddress
  | GangReady
  | GangDone
  | ErrorMessage
  | Bye;

// ---------------------------------------------------------------------------------------------
// Coordinator -> agent

export interface Welcome {
  type: 'welcome';
  version: number;
  agentId: AgentId;
  runId: RunId;
  heartbeatIntervalMs: number;
}

export interface Reject {
  type: 'reject';
  reason: string;
  version: number;
}

export interface Assign {
  type: 'assign';
  job: JobSpec;
  attempt: number;
  epoch: number;
  /** Resume from this checkpoint; the agent pulls it with checkpoint_request before training. */
  resumeFrom?: { checkpointId: CheckpointId; step: number; totalBytes: number; sha256: string };
  /**
   * A seat in a data-parallel gang: load the replica (and the resume checkpoint, if any), then wait for gang_start.
   * `generation` is the gang's generation at the time of the assign.
   */
  gang?: { generation: number };
}

/**
 * Train in gang generation `generation` as `rank` of `ranks`. Rank 0 gets no rootAddress: it binds and answers with
 * gang_address; the others join it at rootAddress. Rank 0 also streams the metrics after `metricsFrom` (the last
 * step the coordinator has), so a gang whose rank 0 changed leaves no gap in the job's metrics.
 */
export interface GangStart {
  type: 'gang_start';
  jobId: JobId;
  epoch: number;
  generation: number;
  rank: number;
  ranks: number;
  rootAddress?: string;
  metricsFrom: number;
  /** Longest wait in a collective once training; the agent shortens it to a multiple of its measured step time. */
  collectiveTimeoutMs: number;
}

/** Stop training at the next step boundary, leave generation `generation` and answer gang_ready. */
export interface GangReform {
  type: 'gang_reform';
  jobId: JobId;
  epoch: number;
  generation: number;
  reason: string;
}

export interface Cancel {
  type: 'cancel';
  jobId: JobId;
  epoch: number;
  reason: string;
}

export interface CheckpointAck {
  type: 'checkpoint_ack';
  jobId: JobId;
  epoch: number;
  checkpointId: CheckpointId;
  ok: boolean;
  /** Set when ok is false: why the upload was refused (the agent sends it again). */
  reason?: string;
}

/** The coordinator answers each heartbeat, so an agent can tell when the coordinator is gone. */
export interface HeartbeatAck {
  type: 'heartbeat_ack';
  seq: number;
  time: number;
}

export interface Shutdown {
  type: 'shutdown';
  reason: string;
}

export interface JobStatus {
  jobId: JobId;
  encoding: EncodingName;
  task: string;
  seed: number;
  state: 'pending' | 'assigned' | 'running' | 'evaluating' | 'done' | 'failed';
  attempt: number;
  epoch: number;
  step: number;
  totalSteps: number;
  agentId?: AgentId;
  loss?: number;
  accuracy?: number;
  tokensPerSecond?: number;
  /** A data-parallel job's gang: its generation and its members in rank order. */
  gang?: { generation: number; members: AgentId[] };
}

export interface AgentStatus {
  agentId: AgentId;
  host: string;
  pid: number;
  backend: string;
  state: 'idle' | 'busy' | 'suspect' | 'dead' | 'draining' | 'gone';
  lastHeartbeatAgoMs: number;
  jobId?: JobId;
  launcherId?: string;
}

/** A batch-scheduler task (PBS/Slurm) that runs or will run an agent, as the launcher last polled it. */
export interface SchedulerTaskStatus {
  launcherId: string;
  /** e.g. 'initial', 'replacement', 'continuation' */
  kind: string;
  /** pe-arena's view: 'queued', 'running', 'ended' */
  state: string;
  /** The scheduler's own word for it, e.g. 'PENDING', 'R', 'Q'. */
  schedulerState: string;
  host?: string;
}

export interface StatusReply {
  type: 'status';
  runId: RunId;
  experiment: string;
  jobs: JobStatus[];
  agents: AgentStatus[];
  /** Present for runs whose agents were started through a batch scheduler. */
  schedulerTasks?: SchedulerTaskStatus[];
}

export type CoordinatorToAgent =
  | StatusReply
  | Welcome
  | Reject
  | Assign
  | GangStart
  | GangReform
  | Cancel
  | CheckpointChunk
  | CheckpointAck
  | HeartbeatAck
  | ErrorMessage
  | Shutdown;

export type MessageType = AgentToCoordinator['type'] | CoordinatorToAgent['type'];

// ---------------------------------------------------------------------------------------------
// Peer <-> peer: the communicator's messages (protocol/communicator.ts). Each rank binds one ROUTER
// and reaches the others through DEALERs, so every message says which rank sent it.

/** A rank announces itself to rank 0 with the address it listens on. */
export interface PeerHello {
  type: 'peer_hello';
  version: number;
  rank: number;
  size: number;
  address: string;
  /** The communicator's session (a job and its gang generation); rank 0 refuses another one. */
  session?: string;
}

/** Rank 0 answers once every rank has said hello: addresses[r] is where rank r listens. */
export interface PeerTable {
  type: 'peer_table';
  version: number;
  addresses: string[];
}

/**
 * Point-to-point data ('p2p', tag chosen by the user) or one step of a collective ('coll', tag = the
 * collective's sequence number, the same on every rank because all ranks call collectives in the same order).
 */
export interface PeerData {
  type: 'peer_data';
  source: number;
  channel: 'p2p' | 'coll';
  tag: number;
  /** Any msgpack value; typed arrays survive as typed arrays. */
  data: unknown;
  /**
   * Set when the payload travels raw in a second frame instead of in `data` (which is then null), so large
   * arrays skip msgpack: 'f32' = little-endian float32s.
   */
  bulk?: 'f32';
}

/** A rank gave up on a collective (or is closing): the others fail fast instead of waiting out their timeout. */
export interface PeerAbort {
  type: 'peer_abort';
  source: number;
  reason: string;
}

/**
 * close() sends one to each peer after its last message, and the peer answers with ack set. Messages between two
 * ranks arrive in order, so the answer proves that everything sent before arrived: ZeroMQ's linger does not
 * survive process.exit(), so a rank that exits right after close() would otherwise lose what was still queued.
 */
export interface PeerBye {
  type: 'peer_bye';
  source: number;
  ack: boolean;
}

export type PeerMessage = PeerHello | PeerTable | PeerData | PeerAbort | PeerBye;
