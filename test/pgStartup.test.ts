import { SqlClient } from "@effect/sql"
import { assert, describe, expect, it } from "@effect/vitest"
import { Cause, Effect, Exit, Layer, Schedule } from "effect"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { pgLayer } from "../src/store/pg/PgSql.js"
import { createTestDatabase, databaseUrl, pgQuery } from "./support/pg.js"
import { startPgCluster } from "./support/pgCluster.js"
import { freePort, getJson, mainJs, runMain, waitFor } from "./support/process.js"

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

  it.live("starts while the server is down, failing reads until it is up, then migrates and serves", () =>
    Effect.gen(function* () {
      const cluster = yield* Effect.acquireRelease(Effect.promise(startPgCluster), (c) => Effect.sync(c.destroy))
      yield* Effect.promise(() => pgQuery(cluster.url("postgres"), "CREATE DATABASE crypto"))
      cluster.stop()
      const context = yield* Layer.build(pgLayer(cluster.url("crypto"), 2)).pipe(Effect.timeout("10 seconds"))
      const count = Effect.gen(function* () {
        const sql = yield* SqlClient.SqlClient
        return yield* sql<{ n: number }>`SELECT count(*) AS n FROM ticks`
      }).pipe(Effect.provide(context))
      const down = yield* Effect.either(count)
      assert.strictEqual(down._tag, "Left")
      cluster.start()
      // the background set-up finds the server within its 2 s spacing and creates the tables
      const rows = yield* count.pipe(Effect.retry(Schedule.spaced("250 millis")), Effect.timeout("20 seconds"))
      assert.deepStrictEqual(rows, [{ n: 0 }])
    }).pipe(Effect.scoped), 60_000
  )

  it("the api role started with the server down answers 503 and says why on /health, then serves once it is up", async () => {
    if (!fs.existsSync(mainJs)) throw new Error("dist/main.js is missing: run `npm run build` (npm test does it first)")
    const cluster = await startPgCluster()
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "pg-startup-"))
    try {
      await pgQuery(cluster.url("postgres"), "CREATE DATABASE crypto")
      cluster.stop()
      const port = await freePort()
      const api = runMain(["--role=api"], {
        STORE: "postgres",
        DATABASE_URL: cluster.url("crypto"),
        STORAGE_PATH: path.join(dir, "app.db"),
        HOST: "127.0.0.1",
        PORT: String(port),
        SYMBOLS: "BTCUSDT"
      })
      try {
        const health = await waitFor(() => getJson(`http://127.0.0.1:${port}/health`), 20_000, "the api to answer")
        expect(health.status).toBe(503)
        expect(health.body.components.store).toMatchObject({ state: "down", path: `postgres://postgres@127.0.0.1:${cluster.port}/crypto` })
        expect(String(health.body.components.store.detail)).toMatch(/ECONNREFUSED/)
        const res = await fetch(`http://127.0.0.1:${port}/trades/latest?symbol=BTCUSDT&limit=5`)
        expect(res.status).toBe(503)
        expect(res.headers.get("retry-after")).toBe("5")
        expect(await res.json()).toMatchObject({ error: "StoreUnavailable", message: expect.stringMatching(/ECONNREFUSED/) })
        cluster.start()
        await waitFor(async () => ((await getJson(`http://127.0.0.1:${port}/health`))?.status === 200 ? true : undefined), 20_000, "/health 200")
        const ok = await fetch(`http://127.0.0.1:${port}/trades/latest?symbol=BTCUSDT&limit=5`)
        expect(ok.status).toBe(200)
        expect(await ok.json()).toEqual([])
        expect(api.output()).toMatch(/is not reachable \(.*ECONNREFUSED.*\); starting without it/)
      } finally {
        api.child.kill("SIGTERM")
        await api.exited
      }
    } finally {
      cluster.destroy()
      fs.rmSync(dir, { recursive: true, force: true })
    }
  }, 60_000)
})
