import { createHash } from "node:crypto"
import * as fs from "node:fs"
import { createRequire } from "node:module"
import * as os from "node:os"
import * as path from "node:path"
import { NodeContext } from "@effect/platform-node"
import { SqlClient } from "@effect/sql"
import { Effect, Fiber, Logger, Option } from "effect"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { runMigrateStoreCommand } from "../src/app/Commands.js"
import { runMigrateStore } from "../src/app/MigrateStore.js"
import { TABLES, type TableSpec } from "../src/app/MigrateTables.js"
import { sqliteLayer } from "../src/store/Sql.js"
import { createTestDatabase, pgQuery, type TestDatabase } from "./support/pg.js"
import { freePort, mainJs, runMain, waitFor } from "./support/process.js"
import { query } from "./support/sqlite.js"

// migrate-store against the local PostgreSQL server: a SQLite history of a few thousand rows in
// every table is copied row for row, an interrupted copy (a fiber interrupted, a process killed)
// resumes to exactly the same rows, and a run over a finished copy writes nothing.

const dir = fs.mkdtempSync(path.join(os.tmpdir(), "migrate-store-"))
const file = path.join(dir, "app.db")
const databases: Array<TestDatabase> = []
const newDatabase = async () => {
  const db = await createTestDatabase("migrate")
  databases.push(db)
  return db
}
const hash = () => createHash("sha256").update(fs.readFileSync(file)).digest("hex")

const T0 = Date.UTC(2026, 0, 15) * 1000
/** Strings PostgreSQL's array syntax gives a meaning to: they must arrive as they are. */
const awkward = ['said "no"', "{a,b}", "back\\slash", "NULL", "it's", "tab\there", "", "ünïcode €"]

/** A SQLite store made by the platform's migrations, with rows of every shape its writers store. */
const seed = Effect.gen(function* () {
  const sql = yield* SqlClient.SqlClient
  const put = (table: string, rows: ReadonlyArray<Record<string, unknown>>) =>
    Effect.forEach(
      Array.from({ length: Math.ceil(rows.length / 500) }, (_, i) => rows.slice(i * 500, i * 500 + 500)),
      (chunk) => sql`INSERT INTO ${sql(table)} ${sql.insert(chunk as Array<Record<string, string | number | null>>)}`,
      { discard: true }
    )
  const symbols = ["BTCUSDT", "ETHUSDT", "SOLUSDT"]
  yield* put(
    "ticks",
    Array.from({ length: 3000 }, (_, i) => ({
      symbol: symbols[i % 3]!,
      ts_us: T0 + i * 1_000_003,
      timestamp_utc: new Date((T0 + i * 1_000_003) / 1000).toISOString(),
      last_price: (68000 + i / 7).toFixed(8),
      price_change_percent: (i % 17) - 8 + ".25",
      volume: String(24567.123 + i),
      source: "binance_api_v3_ticker_24hr",
      event_time: i % 5 === 0 ? null : new Date(T0 / 1000 + i).toISOString(),
      ingested_at: new Date(T0 / 1000 + i + 5).toISOString()
    }))
  )
  yield* put("symbol_stats", symbols.map((symbol, i) => ({ symbol, latest_us: T0 + i, latest_timestamp_utc: awkward[i]!, events: 1000 })))
  yield* put(
    "candles",
    Array.from({ length: 1500 }, (_, i) => {
      const ticks = i % 2 === 0
      return {
        symbol: symbols[i % 3]!,
        interval: ["1m", "5m", "1h", "1d"][i % 4]!,
        source: ticks ? "ticks" : "klines",
        open_time: Date.UTC(2026, 0, 1) + i * 60_000,
        open: "1.1",
        high: String(2 + i),
        low: "0.3",
        close: "1.5",
        volume: ticks ? "0" : "12.5",
        quote_volume: "15.75",
        trades: i,
        closed: i % 7 === 0 ? 0 : 1,
        first_us: ticks ? T0 + i : null,
        last_us: ticks ? T0 + i + 59_000_000 : null,
        high_num: ticks ? 0.1 + 0.2 + i : null,
        high_us: ticks ? T0 + i + 5 : null,
        low_num: ticks ? 1 / 3 : null,
        low_us: ticks ? T0 + i + 7 : null
      }
    })
  )
  yield* put(
    "daily_candles",
    Array.from({ length: 40 }, (_, i) => ({
      symbol: symbols[i % 3]!,
      date: new Date(Date.UTC(2025, 11, 1) + i * 86_400_000).toISOString().slice(0, 10),
      open: "1",
      high: "2",
      low: "0.5",
      close: "1.5",
      volume: "100",
      quote_volume: "150",
      trades: i * 10,
      closed: 1,
      source: i % 2 === 0 ? "klines" : "ticks",
      basis: i % 3 === 0 ? null : "1m",
      first_us: i % 3 === 0 ? null : T0 + i,
      last_us: i % 3 === 0 ? null : T0 + i + 1,
      high_num: i % 3 === 0 ? null : 2,
      high_us: i % 3 === 0 ? null : T0 + i,
      low_num: i % 3 === 0 ? null : 0.5,
      low_us: i % 3 === 0 ? null : T0 + i,
      open_minutes: i % 3 === 0 ? null : i % 4
    }))
  )
  yield* put(
    "trades",
    Array.from({ length: 4000 }, (_, i) => ({
      symbol: symbols[i % 2]!,
      agg_trade_id: 3_000_000_000 + i,
      price: (68001.2 + i / 100).toFixed(8),
      quantity: "0.01500000",
      first_trade_id: 27_781 + i * 3,
      last_trade_id: 27_783 + i * 3,
      trade_time_us: T0 + i * 913,
      is_buyer_maker: i % 2,
      source: i % 9 === 0 ? "binance_api_v3_aggTrades" : "binance_ws_aggTrade"
    }))
  )
  yield* put(
    "trade_gaps",
    Array.from({ length: 60 }, (_, i) => ({
      symbol: symbols[i % 3]!,
      from_id: 1000 + i * 10,
      to_id: 1004 + i * 10,
      state: ["missing", "repaired", "unrepairable"][i % 3]!,
      reason: i % 3 === 2 ? awkward[i % awkward.length]! : null,
      detected_at: new Date(T0 / 1000 + i).toISOString(),
      resolved_at: i % 3 === 0 ? null : new Date(T0 / 1000 + i + 60_000).toISOString()
    }))
  )
}).pipe(Effect.provide(sqliteLayer(file)), Effect.provide(NodeContext.layer))

const columns = (t: TableSpec) => t.columns.map((c) => `"${c.name}"`).join(", ")
/** Every row of a table, in key order (sorted here: PostgreSQL's collation may order text otherwise). */
const sorted = (t: TableSpec, rows: Array<Record<string, unknown>>) =>
  rows.sort((a, b) => {
    for (const k of t.key) if (a[k] !== b[k]) return (a[k] as string | number) < (b[k] as string | number) ? -1 : 1
    return 0
  })
const sourceRows = (t: TableSpec) => sorted(t, query(file, `SELECT ${columns(t)} FROM "${t.name}"`))
const destRows = async (url: string, t: TableSpec) => sorted(t, await pgQuery(url, `SELECT ${columns(t)} FROM "${t.name}"`))
const expectSameRows = async (url: string) => {
  for (const t of TABLES) expect(await destRows(url, t), t.name).toEqual(sourceRows(t))
}
const count = async (url: string, table: string) => Number((await pgQuery(url, `SELECT count(*) AS n FROM "${table}"`))[0]!["n"])

/** Runs the copy in this process with its log lines collected. */
const migrate = (to: string, chunkSize = 5000) => {
  const logs: Array<string> = []
  const capture = Logger.replace(Logger.defaultLogger, Logger.make(({ message }) => void logs.push([message].flat().map(String).join(" "))))
  const effect = runMigrateStore({ from: file, to, chunkSize, tty: false }).pipe(Effect.provide(capture), Effect.provide(NodeContext.layer))
  return { logs, effect }
}

let sourceHash = ""
beforeAll(async () => {
  await Effect.runPromise(seed)
  sourceHash = hash()
}, 60_000)
afterAll(async () => {
  for (const db of databases) await db.drop()
  fs.rmSync(dir, { recursive: true, force: true })
})

describe("migrate-store", () => {
  it("copies every table row for row; a second run copies nothing new and says so", async () => {
    const db = await newDatabase()
    const first = migrate(db.url)
    const results = await Effect.runPromise(first.effect)
    expect(results.map((r) => [r.table, r.total, r.read, r.written])).toEqual(TABLES.map((t) => [t.name, sourceRows(t).length, sourceRows(t).length, sourceRows(t).length]))
    await expectSameRows(db.url)
    expect(first.logs.join("\n")).toMatch(/migrate-store done: 8603 rows written/)

    const again = migrate(db.url)
    const second = await Effect.runPromise(again.effect)
    expect(second.map((r) => r.written)).toEqual(TABLES.map(() => 0))
    expect(second.map((r) => r.read)).toEqual(TABLES.map((t) => sourceRows(t).length))
    expect(again.logs.join("\n")).toMatch(/nothing new to copy: .* already holds every row of sqlite:/)
    await expectSameRows(db.url)
    // read only: the file is byte for byte what the platform left
    expect(hash()).toBe(sourceHash)
  }, 60_000)

  it("an interrupted copy resumes after the last chunk committed and ends with exactly the source's rows", async () => {
    const db = await newDatabase()
    const first = migrate(db.url, 100)
    const fiber = Effect.runFork(first.effect)
    // interrupted in the middle of the trades, the tables before them done
    await waitFor(async () => {
      const rows = await pgQuery(db.url, "SELECT rows_read FROM migrate_store_progress WHERE table_name = 'trades'").catch(() => [])
      return Number(rows[0]?.["rows_read"] ?? 0) >= 200 ? true : undefined
    }, 30_000, "the copy to reach the trades")
    await Effect.runPromise(Fiber.interrupt(fiber))
    const partial = await count(db.url, "trades")
    expect(partial).toBeGreaterThanOrEqual(200)
    expect(partial).toBeLessThan(4000)
    expect(partial % 100).toBe(0)
    expect(first.logs.join("\n")).toMatch(/interrupted: what was copied is kept/)

    const resumed = migrate(db.url, 100)
    const results = await Effect.runPromise(resumed.effect)
    expect(resumed.logs.join("\n")).toMatch(/resuming the interrupted copy/)
    const trades = results.find((r) => r.table === "trades")!
    expect([trades.resumedAfter, trades.read, trades.written]).toEqual([partial, 4000 - partial, 4000 - partial])
    expect(results.find((r) => r.table === "ticks")!.read).toBe(0)
    await expectSameRows(db.url)

    const again = migrate(db.url, 100)
    expect((await Effect.runPromise(again.effect)).every((r) => r.written === 0)).toBe(true)
    expect(again.logs.join("\n")).toMatch(/nothing new to copy/)
    await expectSameRows(db.url)
  }, 60_000)

  it("node dist/main.js migrate-store killed mid-copy and run again ends with the source's rows", async () => {
    if (!fs.existsSync(mainJs)) throw new Error("dist/main.js is missing: run `npm run build` (npm test does it first)")
    const db = await newDatabase()
    const args = ["migrate-store", "--from", `sqlite:${file}`, "--to", db.url, "--chunk-size", "50"]
    const first = runMain(args, {})
    await waitFor(async () => {
      const rows = await pgQuery(db.url, "SELECT sum(rows_read) AS n FROM migrate_store_progress").catch(() => [])
      return Number(rows[0]?.["n"] ?? 0) >= 1000 ? true : undefined
    }, 30_000, "the first chunks")
    first.child.kill("SIGKILL")
    await first.exited
    const copied = (await Promise.all(TABLES.map((t) => count(db.url, t.name)))).reduce((a, b) => a + b, 0)
    expect(copied).toBeLessThan(8603)

    const second = runMain(args, {})
    expect(await second.exited, second.output()).toBe(0)
    expect(second.output()).toMatch(/resuming the interrupted copy/)
    await expectSameRows(db.url)
    const third = runMain(args, {})
    expect(await third.exited, third.output()).toBe(0)
    expect(third.output()).toMatch(/nothing new to copy/)
    expect(hash()).toBe(sourceHash)
  }, 90_000)

  it("says in one line what is wrong with --from, --to or the server", async () => {
    const fail = async (from: string, to: string) => {
      const exit = await Effect.runPromise(
        runMigrateStoreCommand({ from: Option.some(from), to: Option.some(to), chunkSize: 5000, tty: false }).pipe(
          Effect.flip,
          Effect.provide(Logger.remove(Logger.defaultLogger)),
          Effect.provide(NodeContext.layer)
        )
      )
      return String((exit as { message?: unknown }).message)
    }
    const db = databases[0]!.url
    const text = path.join(dir, "notes.txt")
    fs.writeFileSync(text, "not a database\n".repeat(100))
    expect(await fail(`sqlite:${path.join(dir, "missing.db")}`, db)).toMatch(/missing\.db: no such file/)
    expect(await fail(`sqlite:${text}`, db)).toMatch(/is not a database of this platform \(not an SQLite file\)/)
    expect(await fail(file, db)).toMatch(/--from .* is not valid: expected sqlite:<the platform's SQLite file>/)
    expect(await fail(`sqlite:${file}`, "mysql://root:secret@localhost/db")).toMatch(/^--to mysql:\/\/localhost\/db is not valid: expected a PostgreSQL URL/)
    const closed = await freePort()
    const down = await fail(`sqlite:${file}`, `postgres://crypto:secret@127.0.0.1:${closed}/crypto`)
    expect(down).toMatch(/is not reachable \(.*ECONNREFUSED.*\): start the server .* then run the same command again/)
    expect(down).not.toContain("secret")
    const other = path.join(dir, "other.db")
    const Database = createRequire(import.meta.url)("better-sqlite3") as new (file: string) => { exec(sql: string): void; close(): void }
    const foreign = new Database(other)
    foreign.exec("CREATE TABLE notes (body TEXT)")
    foreign.close()
    expect(await fail(`sqlite:${other}`, db)).toMatch(/is not a database of this platform \(it has no effect_sql_migrations table\)/)
  }, 30_000)
})
