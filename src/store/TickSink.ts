import { Context, Data, Effect, Either } from "effect"
import type { Candle } from "../domain/Candles.js"
import type { Tick } from "../domain/Ticker.js"
import type { Trade } from "../domain/Trade.js"

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
 * Where consumed events of one kind end up, decoded once (at the broker boundary). Writes are
 * idempotent: writing the same batch twice stores it once.
 */
export interface Sink<A> {
  readonly name: string
  readonly writeBatch: (values: ReadonlyArray<A>) => Effect.Effect<void, SinkError>
}

/** Ticks: SQLite and the JSONL raw log. */
export class TickSink extends Context.Tag("store/TickSink")<TickSink, Sink<Tick>>() {}

/** Aggregate trades: SQLite (by symbol and id; recording gaps) and `RAW_DIR/trades/`. */
export class TradeSink extends Context.Tag("store/TradeSink")<TradeSink, Sink<Trade>>() {}

/** Closed 1m klines from the stream, stored as `klines` candles. */
export class BarSink extends Context.Tag("store/BarSink")<BarSink, Sink<Candle>>() {}

/** Told the outcome of each sink's write: null on success, else the reason (for /health). */
export type SinkReport = (sink: string, error: string | null) => Effect.Effect<void>

/**
 * One sink that writes every batch to each of `sinks`; the batch counts as stored when all have it.
 * Every sink is tried even when an earlier one failed, so one failing sink does not hold the others
 * back and `report` learns each one's state; the first failure is the batch's.
 */
export const fanOut = <A>(sinks: ReadonlyArray<Sink<A>>, report: SinkReport = () => Effect.void): Sink<A> => ({
    name: sinks.map((s) => s.name).join("+"),
    writeBatch: (values) =>
      Effect.forEach(sinks, (s) =>
        s.writeBatch(values).pipe(
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
