import { Context, Data, Effect, Either } from "effect"
import type { Tick } from "../domain/Ticker.js"

export class SinkError extends Data.TaggedError("SinkError")<{
  readonly sink: string
  readonly cause: unknown
}> {
  override get message() {
    return `${this.sink} sink could not store the batch: ${reasonOf(this.cause)}`
  }
}

/** The messages along an error's `cause` chain, each once: the root cause (e.g. "database or disk is full") included. */
const reasonOf = (error: unknown): string => {
  const parts: Array<string> = []
  for (let e = error, depth = 0; e !== undefined && e !== null && depth < 5; depth++) {
    const text = e instanceof Error ? e.message : String(e)
    if (!parts.some((p) => p.includes(text))) parts.push(text)
    e = (e as { readonly cause?: unknown }).cause
  }
  return parts.join(": ")
}

/**
 * Where consumed events end up, as Ticks (decoded once, at the broker boundary). Writes are idempotent:
 * writing the same batch twice stores it once.
 */
export class TickSink extends Context.Tag("store/TickSink")<
  TickSink,
  { readonly name: string; readonly writeBatch: (ticks: ReadonlyArray<Tick>) => Effect.Effect<void, SinkError> }
>() {}

/** Told the outcome of each sink's write: null on success, else the reason (for /health). */
export type SinkReport = (sink: string, error: string | null) => Effect.Effect<void>

/**
 * One sink that writes every batch to each of `sinks`; the batch counts as stored when all have it.
 * Every sink is tried even when an earlier one failed, so one failing sink does not hold the others
 * back and `report` learns each one's state; the first failure is the batch's.
 */
export const fanOut = (sinks: ReadonlyArray<TickSink["Type"]>, report: SinkReport = () => Effect.void): TickSink["Type"] =>
  TickSink.of({
    name: sinks.map((s) => s.name).join("+"),
    writeBatch: (ticks) =>
      Effect.forEach(sinks, (s) =>
        s.writeBatch(ticks).pipe(
          Effect.tapBoth({ onFailure: (e) => report(s.name, e.message), onSuccess: () => report(s.name, null) }),
          Effect.either
        )
      ).pipe(
        Effect.flatMap((results) => {
          const failed = results.find(Either.isLeft)
          return failed === undefined ? Effect.void : Effect.fail(failed.left)
        })
      )
  })
