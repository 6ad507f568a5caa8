import { SqlClient } from "@effect/sql"
import { afterAll, beforeAll, describe, expect, it } from "@effect/vitest"
import { Effect, Option } from "effect"
import { coverage, mergeRanges, subtractRanges } from "../src/bi/Coverage.js"
import { TradeRepo } from "../src/store/TradeRepo.js"
import { apiOver } from "./support/apiRuntime.js"
import { STORE_KINDS } from "./support/stores.js"
import { insertTrades as storeTrades, plainTrade } from "./support/trades.js"

const ms = (iso: string) => Date.parse(iso)
const MINUTE = 60_000

/** Trades by id and instant (ms), stored with plain SQL as the trade writer stores them. */
const insertTrades = (symbol: string, trades: ReadonlyArray<readonly [id: number, atMs: number]>) =>
  storeTrades(trades.map(([id, at]) => plainTrade(symbol, id, at * 1000)))

/** 1m candles opening at each of `opens`: klines unless told otherwise. */
const insertMinutes = (symbol: string, opens: ReadonlyArray<number>, options: { source?: string; closed?: number } = {}) =>
  Effect.flatMap(SqlClient.SqlClient, (sql) =>
    Effect.forEach(
      Array.from({ length: Math.ceil(opens.length / 500) }, (_, i) => opens.slice(i * 500, i * 500 + 500)),
      (chunk) =>
        sql`INSERT INTO candles ${sql.insert(
          chunk.map((open_time) => ({
            symbol,
            interval: "1m",
            source: options.source ?? "klines",
            open_time,
            open: "1",
            high: "1",
            low: "1",
            close: "1",
            volume: "1",
            quote_volume: "1",
            trades: 1,
            closed: options.closed ?? 1
          }))
        )}`,
      { discard: true }
    )
  )

const gap = (symbol: string, from: number, to: number, state: string, reason: string | null, resolvedAt: string | null) =>
  Effect.flatMap(
    SqlClient.SqlClient,
    (sql) => sql`INSERT INTO trade_gaps (symbol, from_id, to_id, state, reason, detected_at, resolved_at)
      VALUES (${symbol}, ${from}, ${to}, ${state}, ${reason}, '2026-01-15T11:09:00.000Z', ${resolvedAt})`
  )

const minutesFrom = (startIso: string, count: number) => Array.from({ length: count }, (_, i) => ms(startIso) + i * MINUTE)
const now = ms("2026-01-15T12:00:30Z")

describe.each(STORE_KINDS)("on %s", (kind) => {
  const { run, get, dispose } = apiOver(kind)

  beforeAll(async () => {
    await run(
      Effect.all([
        // ETHUSDT: complete. Ids 1..120 every 30 s from 11:00:10, and a closed kline for every minute since.
        insertTrades("ETHUSDT", Array.from({ length: 120 }, (_, i) => [i + 1, ms("2026-01-15T11:00:10Z") + i * 30_000] as const)),
        insertMinutes("ETHUSDT", minutesFrom("2026-01-15T11:00:00Z", 60)),
        // BTCUSDT: ten trades yesterday from 23:00, one a minute (ids 1000..1009), and today ids 1010..1059
        // every 10 s from 11:00, less 1020-1024 (a gap waiting), 1040-1041 (unrepairable) and 1050-1051
        // (absent, no gap recorded); 1030-1034 were repaired.
        insertTrades("BTCUSDT", Array.from({ length: 10 }, (_, i) => [1000 + i, ms("2026-01-14T23:00:00Z") + i * MINUTE] as const)),
        insertTrades(
          "BTCUSDT",
          Array.from({ length: 50 }, (_, i) => [1010 + i, ms("2026-01-15T11:00:00Z") + i * 10_000] as const).filter(
            ([id]) => !(id >= 1020 && id <= 1024) && !(id >= 1040 && id <= 1041) && !(id >= 1050 && id <= 1051)
          )
        ),
        gap("BTCUSDT", 1001, 1002, "repaired", null, "2026-01-14T23:30:00.000Z"),
        gap("BTCUSDT", 1020, 1024, "missing", null, null),
        gap("BTCUSDT", 1030, 1034, "repaired", null, "2026-01-15T11:10:00.000Z"),
        gap("BTCUSDT", 1040, 1041, "unrepairable", "Binance returned no trades for these ids", "2026-01-15T11:10:01.000Z"),
        // klines for 00:00-10:59 and 11:05-11:59, but 11:30 is still open and 11:40 only derived from ticks
        insertMinutes("BTCUSDT", [...minutesFrom("2026-01-15T00:00:00Z", 660), ...minutesFrom("2026-01-15T11:05:00Z", 55)].filter(
          (open) => open !== ms("2026-01-15T11:30:00Z") && open !== ms("2026-01-15T11:40:00Z")
        )),
        insertMinutes("BTCUSDT", [ms("2026-01-15T11:30:00Z")], { closed: 0 }),
        insertMinutes("BTCUSDT", [ms("2026-01-15T11:40:00Z")], { source: "ticks" })
      ], { discard: true })
    )
  }, 60_000)
  afterAll(dispose)

  const report = (symbol: string, days: number, at = now) =>
    run(Effect.flatMap(TradeRepo, (repo) => coverage(repo, symbol, days, at))).then(Option.getOrThrow)

  describe("coverage", () => {
    it("says a complete history is complete", async () => {
      expect(await report("ETHUSDT", 1)).toEqual({
        symbol: "ETHUSDT",
        from: "2026-01-15T11:00:00.000Z", // the first trade's minute, after the day's start
        to: "2026-01-15T12:00:30.000Z",
        trades: { first_id: 1, last_id: 120, stored: 120, missing: [], repaired: [], unrepairable: [] },
        minutes: { covered: 60, missing: [] } // 11:00 to 11:59, the last minute closed at 12:00:30
      })
    })

    it("reports missing, repaired and unrepairable ids and the minutes without a closed kline, within the window", async () => {
      expect(await report("BTCUSDT", 1)).toEqual({
        symbol: "BTCUSDT",
        from: "2026-01-15T00:00:00.000Z",
        to: "2026-01-15T12:00:30.000Z",
        trades: {
          first_id: 1010,
          last_id: 1059,
          stored: 41,
          missing: [
            { from_id: 1020, to_id: 1024 },
            { from_id: 1050, to_id: 1051 } // absent with no gap recorded yet: missing all the same
          ],
          // yesterday's repaired 1001-1002 is outside the window
          repaired: [{ from_id: 1030, to_id: 1034, at: "2026-01-15T11:10:00.000Z" }],
          unrepairable: [{ from_id: 1040, to_id: 1041, reason: "Binance returned no trades for these ids" }]
        },
        minutes: {
          covered: 713,
          missing: [
            { from: "2026-01-15T11:00:00.000Z", to: "2026-01-15T11:05:00.000Z" },
            { from: "2026-01-15T11:30:00.000Z", to: "2026-01-15T11:31:00.000Z" }, // open kline: not covered
            { from: "2026-01-15T11:40:00.000Z", to: "2026-01-15T11:41:00.000Z" } // tick-derived: not covered
          ]
        }
      })
    })

    it("counts only the time since the first stored trade when the window reaches further back", async () => {
      const two = await report("BTCUSDT", 2)
      expect(two.from).toBe("2026-01-14T23:00:00.000Z")
      expect(two.trades).toMatchObject({ first_id: 1000, last_id: 1059, stored: 51 })
      expect(two.trades.repaired.map((r) => r.from_id)).toEqual([1001, 1030])
      expect(two.minutes.missing[0]).toEqual({ from: "2026-01-14T23:00:00.000Z", to: "2026-01-15T00:00:00.000Z" })
      expect(two.minutes.covered).toBe(713)
      expect((await report("BTCUSDT", 3650)).from).toBe("2026-01-14T23:00:00.000Z")
    })

    it("reports a window without trades as empty, its minutes missing", async () => {
      const later = await report("ETHUSDT", 1, ms("2026-01-16T00:10:00Z"))
      expect(later.from).toBe("2026-01-16T00:00:00.000Z")
      expect(later.trades).toEqual({ first_id: null, last_id: null, stored: 0, missing: [], repaired: [], unrepairable: [] })
      expect(later.minutes).toEqual({ covered: 0, missing: [{ from: "2026-01-16T00:00:00.000Z", to: "2026-01-16T00:10:00.000Z" }] })
    })
  })

  describe("TradeRepo, for the repairer", () => {
    it("firstTrade is the lowest stored id and its time, None without trades", async () => {
      const first = await run(Effect.flatMap(TradeRepo, (repo) => repo.firstTrade("BTCUSDT")))
      expect(first).toEqual(Option.some({ id: 1000, timeMicros: ms("2026-01-14T23:00:00Z") * 1000 }))
      expect(await run(Effect.flatMap(TradeRepo, (repo) => repo.firstTrade("SOLUSDT")))).toEqual(Option.none())
    })

    it("missingMinutes: runs of closed minutes without a closed 1m kline, from the minute holding fromMs", async () => {
      const missing = (from: string, to: string) =>
        run(Effect.flatMap(TradeRepo, (repo) => repo.missingMinutes("BTCUSDT", ms(from), ms(to))))
      expect(await missing("2026-01-15T11:00:30Z", "2026-01-15T11:06:10Z")).toEqual([
        { fromMs: ms("2026-01-15T11:00:00Z"), toMs: ms("2026-01-15T11:05:00Z") }
      ])
      expect(await missing("2026-01-15T10:00:00Z", "2026-01-15T11:00:00Z")).toEqual([])
      // the minute holding toMs is not closed yet: not counted
      expect(await missing("2026-01-15T11:29:00Z", "2026-01-15T11:30:59Z")).toEqual([])
      expect(await missing("2026-01-15T11:29:00Z", "2026-01-15T11:31:00Z")).toEqual([
        { fromMs: ms("2026-01-15T11:30:00Z"), toMs: ms("2026-01-15T11:31:00Z") }
      ])
      // across days, read a day at a time
      expect(await missing("2026-01-14T22:58:00Z", "2026-01-15T00:02:00Z")).toEqual([
        { fromMs: ms("2026-01-14T22:58:00Z"), toMs: ms("2026-01-15T00:00:00Z") }
      ])
    })
  })

  describe("GET /coverage", () => {
    it("answers the contract's shape for a symbol known from its stored trades", async () => {
      const at = Date.now()
      await run(insertTrades("ADAUSDT", [[1, at - 150_000], [2, at - 140_000], [3, at - 130_000]]))
      const res = await get("/coverage?symbol=ADAUSDT&days=1")
      expect(res.status).toBe(200)
      const body = res.json()
      expect(Object.keys(body)).toEqual(["symbol", "from", "to", "trades", "minutes"])
      expect(Object.keys(body.trades)).toEqual(["first_id", "last_id", "stored", "missing", "repaired", "unrepairable"])
      expect(body.trades).toEqual({ first_id: 1, last_id: 3, stored: 3, missing: [], repaired: [], unrepairable: [] })
      expect(body.minutes.covered).toBe(0)
      expect(body.minutes.missing.length).toBe(1)
      expect(body.minutes.missing[0].from).toBe(body.from)
      expect((await get("/coverage?symbol=ADAUSDT")).json().symbol).toBe("ADAUSDT") // days defaults to 1
    })

    it("is a 404 for a symbol without stored trades, and a 400 for a bad query", async () => {
      const none = await get("/coverage?symbol=SOLUSDT&days=1")
      expect(none.status).toBe(404)
      expect(none.json()).toEqual({
        _tag: "NoTrades",
        symbol: "SOLUSDT",
        message: "no trades stored for SOLUSDT yet: coverage starts with the symbol's first stored trade"
      })
      for (const [url, says] of [
        ["/coverage?symbol=DOGEUSDT&days=1", "known symbols"],
        ["/coverage?symbol=BTCUSDT&days=0", "days must be a whole number from 1 to 3650"],
        ["/coverage?symbol=BTCUSDT&days=3651", "days must be a whole number from 1 to 3650"],
        ["/coverage?days=1", "symbol is missing"]
      ] as const) {
        const res = await get(url)
        expect(res.status, url).toBe(400)
        expect(res.text, url).toContain(says)
      }
    })
  })
})

describe("id ranges", () => {
  it("id ranges subtract and merge", () => {
    expect(subtractRanges([{ fromId: 1, toId: 10 }], [{ fromId: 3, toId: 4 }, { fromId: 8, toId: 12 }])).toEqual([
      { fromId: 1, toId: 2 },
      { fromId: 5, toId: 7 }
    ])
    expect(mergeRanges([{ fromId: 5, toId: 6 }, { fromId: 1, toId: 2 }, { fromId: 3, toId: 3 }])).toEqual([
      { fromId: 1, toId: 3 },
      { fromId: 5, toId: 6 }
    ])
  })
})
