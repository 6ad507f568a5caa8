import { SqlClient, SqlError } from "@effect/sql"
import { Effect } from "effect"
import { eventKey } from "../domain/Ticker.js"
import { CandleRepo } from "./CandleRepo.js"
import { SinkError, TickSink } from "./TickSink.js"
import { TickRepo } from "./TickRepo.js"

const eventMillis = (e: Parameters<typeof eventKey>[0]) => Math.floor(eventKey(e).tsMicros / 1000)

/**
 * The queryable sink: the events into SQLite (bronze), then the 1m candles derived from them and
 * the daily candles of their days (silver, gold), so daily aggregates cover today too.
 */
export const makeSqliteSink = Effect.gen(function* () {
  const repo = yield* TickRepo
  const candles = yield* CandleRepo
  const sql = yield* SqlClient.SqlClient
  return TickSink.of({
    name: "sqlite",
    writeBatch: (events) =>
      repo.insertMany(events).pipe(
        Effect.tap((added) =>
          Effect.logDebug("stored batch in SQLite").pipe(
            Effect.annotateLogs({ events: events.length, added, replayed: events.length - added })
          )
        ),
        Effect.zipRight(candles.refreshFromTicks(events, eventMillis)),
        // @effect/sql turns a failed COMMIT into a defect; in WAL mode that is where a full disk
        // (SQLITE_FULL) shows. SQLite may or may not have rolled the transaction back (its docs), so
        // roll back explicitly (an error here only means nothing was open) and retry the batch.
        Effect.catchAllDefect((defect) =>
          defect instanceof SqlError.SqlError
            ? sql`ROLLBACK`.pipe(Effect.ignore, Effect.zipRight(Effect.fail(defect)))
            : Effect.die(defect)
        ),
        Effect.mapError((cause) => new SinkError({ sink: "sqlite", cause }))
      )
  })
})
