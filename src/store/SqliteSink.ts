import { Effect } from "effect"
import { SinkError, TickSink } from "./TickSink.js"
import { TickRepo } from "./TickRepo.js"

/** The queryable sink: SQLite through TickRepo. */
export const makeSqliteSink = Effect.gen(function* () {
  const repo = yield* TickRepo
  return TickSink.of({
    name: "sqlite",
    writeBatch: (events) =>
      repo.insertMany(events).pipe(
        Effect.tap((added) =>
          Effect.logDebug("stored batch in SQLite").pipe(
            Effect.annotateLogs({ events: events.length, added, replayed: events.length - added })
          )
        ),
        Effect.asVoid,
        Effect.mapError((cause) => new SinkError({ sink: "sqlite", cause }))
      )
  })
})
