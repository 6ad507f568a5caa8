import { SqlClient } from "@effect/sql"
import { Effect } from "effect"
import { SinkError, TickSink } from "./TickSink.js"
import { TickWriter } from "./TickWriter.js"

/** What /health and the logs call the database sinks: the store they write, `sqlite` or `postgres`. */
export const databaseSinkName = Effect.map(SqlClient.SqlClient, (sql) =>
  sql.onDialectOrElse({ pg: () => "postgres" as const, orElse: () => "sqlite" as const })
)

/**
 * The queryable sink: the ticks into SQLite (bronze), and, in the same transaction, the newly stored
 * ones merged into their 1m candles and daily candles (silver, gold), so daily aggregates cover today
 * too. One transaction: a crash can never leave stored ticks whose candles were not merged (their
 * replay would no longer be new). A failed write (a full disk shows at COMMIT in WAL mode) is rolled
 * back whole, and the batch is retried by the consumer.
 */
export const makeSqliteSink = Effect.gen(function* () {
  const writer = yield* TickWriter
  const name = yield* databaseSinkName
  return TickSink.of({
    name,
    writeBatch: (ticks) =>
      writer.storeBatch(ticks).pipe(
        Effect.tap((stored) =>
          Effect.logDebug(`stored batch in ${name}`).pipe(
            Effect.annotateLogs({ events: ticks.length, added: stored.length, replayed: ticks.length - stored.length })
          )
        ),
        Effect.asVoid,
        Effect.mapError((cause) => new SinkError({ sink: name, cause }))
      )
  })
})
