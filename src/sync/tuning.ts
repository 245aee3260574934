import { availableParallelism } from "node:os";
import { InputError } from "../input-error.js";

/**
 * How much to do at once. Workers are parallel COPY streams (one source and
 * one target connection each), shared by every table of a run. Batches: a
 * table is split into parallel reads only where each part holds at least
 * minBatchSize rows; staged rows merge in slices of at most maxBatchSize
 * rows, each committed on its own (the watermark commits with the last).
 */
export interface Tuning {
  workers: number;
  minBatchSize: number;
  maxBatchSize: number;
}

export interface TuningInput {
  workers?: number | undefined;
  minWorkers?: number | undefined;
  maxWorkers?: number | undefined;
  minBatchSize?: number | undefined;
  maxBatchSize?: number | undefined;
}

export const DEFAULT_MIN_BATCH_SIZE = 100_000;
export const DEFAULT_MAX_BATCH_SIZE = 1_000_000;

function envInt(env: NodeJS.ProcessEnv, name: string): number | undefined {
  const v = env[name];
  if (v === undefined || v === "") return undefined;
  const n = Number(v);
  if (!Number.isInteger(n) || n < 1)
    throw new InputError(`${name} must be a whole number of at least 1, not ${JSON.stringify(v)}`);
  return n;
}

/**
 * Defaults < environment (DEFAULT_WORKERS, MIN_WORKERS, MAX_WORKERS,
 * MIN_BATCH_SIZE, MAX_BATCH_SIZE) < explicit settings (config file, flags).
 * The default is one worker per core, at most 8: each worker keeps a core
 * busy on each server, and on a small machine both servers share them.
 */
export function resolveTuning(
  explicit: TuningInput = {},
  env: NodeJS.ProcessEnv = process.env,
): Tuning {
  const minWorkers = explicit.minWorkers ?? envInt(env, "MIN_WORKERS") ?? 1;
  const maxWorkers = explicit.maxWorkers ?? envInt(env, "MAX_WORKERS") ?? 32;
  if (minWorkers > maxWorkers)
    throw new InputError(`MIN_WORKERS (${minWorkers}) is more than MAX_WORKERS (${maxWorkers})`);
  const wanted =
    explicit.workers ?? envInt(env, "DEFAULT_WORKERS") ?? Math.min(8, availableParallelism());
  const minBatchSize =
    explicit.minBatchSize ?? envInt(env, "MIN_BATCH_SIZE") ?? DEFAULT_MIN_BATCH_SIZE;
  const maxBatchSize =
    explicit.maxBatchSize ?? envInt(env, "MAX_BATCH_SIZE") ?? DEFAULT_MAX_BATCH_SIZE;
  if (minBatchSize > maxBatchSize) {
    throw new InputError(
      `MIN_BATCH_SIZE (${minBatchSize}) is more than MAX_BATCH_SIZE (${maxBatchSize})`,
    );
  }
  return {
    workers: Math.max(minWorkers, Math.min(maxWorkers, wanted)),
    minBatchSize,
    maxBatchSize,
  };
}

/**
 * Caps workers by what the servers allow: each worker holds a connection on
 * each side, and a table in progress one more; leave a few for others.
 */
export function capWorkers(workers: number, freeConnections: number, minWorkers = 1): number {
  return Math.max(minWorkers, Math.min(workers, Math.floor((freeConnections - 4) / 2)));
}
