import { SqlClient } from "@effect/sql"
import { assert, describe, it } from "@effect/vitest"
import { Cause, Effect, Exit, Layer } from "effect"
import { pgLayer } from "../src/store/pg/PgSql.js"
import { createTestDatabase, databaseUrl, pgQuery } from "./support/pg.js"
import { startPgCluster } from "./support/pgCluster.js"

describe("PostgreSQL store start-up", () => {
  it.effect("migrates a new database once, also when two processes start together", () =>
    Effect.gen(function* () {
      const db = yield* Effect.acquireRelease(Effect.promise(() => createTestDatabase("startup")), (d) => Effect.promise(d.drop))
      const start = Effect.gen(function* () {
        const sql = yield* SqlClient.SqlClient
        return yield* sql<{ n: number }>`SELECT count(*) AS n FROM effect_sql_migrations`
      }).pipe(Effect.provide(pgLayer(db.url, 2)))
      const [a, b] = yield* Effect.all([start, start], { concurrency: 2 })
      assert.deepStrictEqual([a[0]?.n, b[0]?.n], [1, 1])
      const tables = yield* Effect.promise(() =>
        pgQuery(db.url, "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public' ORDER BY table_name")
      )
      assert.deepStrictEqual(
        tables.map((t) => t["table_name"]),
        ["candles", "daily_candles", "effect_sql_migrations", "symbol_stats", "ticks", "trade_gaps", "trades"]
      )
    }).pipe(Effect.scoped)
  )

  it.effect("refuses a database that does not exist, saying what to do", () =>
    Effect.gen(function* () {
      const exit = yield* Effect.exit(Layer.build(pgLayer(databaseUrl("cs_test_no_such_database"), 1)).pipe(Effect.scoped))
      assert.isTrue(Exit.isFailure(exit))
      const message = Exit.isFailure(exit) ? String((Cause.squash(exit.cause) as Error).message) : ""
      assert.match(message, /database does not exist: create it/)
      assert.match(message, /DATABASE_URL=postgres:\/\/postgres@127\.0\.0\.1:5432\/cs_test_no_such_database/)
    })
  )

  it.live("waits for a server that is down at start, and is ready once it is up", () =>
    Effect.gen(function* () {
      const cluster = yield* Effect.acquireRelease(Effect.promise(startPgCluster), (c) => Effect.sync(c.destroy))
      yield* Effect.promise(() => pgQuery(cluster.url("postgres"), "CREATE DATABASE crypto"))
      cluster.stop()
      const started = yield* Effect.fork(
        Effect.gen(function* () {
          const sql = yield* SqlClient.SqlClient
          return yield* sql<{ n: number }>`SELECT count(*) AS n FROM ticks`
        }).pipe(Effect.provide(pgLayer(cluster.url("crypto"), 2)))
      )
      yield* Effect.sleep("3 seconds") // still waiting: the layer has not failed
      assert.isNull(yield* started.poll.pipe(Effect.map((o) => (o._tag === "Some" ? o.value : null))))
      cluster.start()
      const rows = yield* started.await.pipe(Effect.flatten, Effect.timeout("15 seconds"))
      assert.deepStrictEqual(rows, [{ n: 0 }])
    }).pipe(Effect.scoped), 40_000
  )
})
