import { SqlClient, SqlError } from "@effect/sql"
import { Effect } from "effect"
import { CandleRepo } from "./CandleRepo.js"
import { SinkError, TickSink } from "./TickSink.js"
import { TickRepo } from "./TickRepo.js"

/**
 * The queryable sink: the ticks into SQLite (bronze), and, in the same transaction, the newly stored
 * ones merged into their 1m candles and daily candles (silver, gold), so daily aggregates cover today
 * too. One transaction: a crash can never leave stored ticks whose candles were not merged (their
 * replay would no longer be new).
 */
export const makeSqliteSink = Effect.gen(function* () {
  const repo = yield* TickRepo
  const candles = yield* CandleRepo
  const sql = yield* SqlClient.SqlClient
  return TickSink.of({
    name: "sqlite",
    writeBatch: (ticks) =>
      repo.insertMany(ticks).pipe(
        Effect.tap((stored) =>
          Effect.logDebug("stored batch in SQLite").pipe(
            Effect.annotateLogs({ events: ticks.length, added: stored.length, replayed: ticks.length - stored.length })
          )
        ),
        Effect.flatMap(candles.mergeTicks),
        sql.withTransaction,
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
