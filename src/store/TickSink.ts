import { Context, Data, Effect } from "effect"
import type { TickerEvent } from "../domain/Ticker.js"

export class SinkError extends Data.TaggedError("SinkError")<{
  readonly sink: string
  readonly cause: unknown
}> {
  override get message() {
    const reason = this.cause instanceof Error ? this.cause.message : String(this.cause)
    return `${this.sink} sink could not store the batch: ${reason}`
  }
}

/** Where consumed events end up. Writes are idempotent: writing the same batch twice stores it once. */
export class TickSink extends Context.Tag("store/TickSink")<
  TickSink,
  { readonly name: string; readonly writeBatch: (events: ReadonlyArray<TickerEvent>) => Effect.Effect<void, SinkError> }
>() {}

/** One sink that writes every batch to each of `sinks` in turn; the batch counts as stored when all have it. */
export const fanOut = (sinks: ReadonlyArray<TickSink["Type"]>): TickSink["Type"] =>
  TickSink.of({
    name: sinks.map((s) => s.name).join("+"),
    writeBatch: (events) => Effect.forEach(sinks, (s) => s.writeBatch(events), { discard: true })
  })
