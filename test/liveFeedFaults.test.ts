/**
 * The live feed when a read of the store fails: that poll is skipped whole (no cursor moves, nothing
 * half-sent), the feed lives on, and the next poll sends every row once.
 */
import { SqlError } from "@effect/sql"
import { ConfigProvider, Effect, Layer, ManagedRuntime } from "effect"
import { afterAll, assert, describe, it } from "vitest"
import { LiveFeed } from "../src/api/live/LiveFeed.js"
import { LiveReads, type LiveRow } from "../src/store/LiveReads.js"
import { sseParser, until } from "./support/sse.js"

describe("the live feed, when a read fails", () => {
  const ticks: Array<LiveRow> = []
  const trades: Array<LiveRow> = []
  let version = 0
  let failing = 0 // klines reads still to fail: after the ticks and trades of the same poll were read
  let failed = 0
  const after = (rows: ReadonlyArray<LiveRow>, key: number) => Effect.sync(() => rows.filter((r) => r.key > key))
  const reads = Layer.succeed(
    LiveReads,
    LiveReads.of({
      dataVersion: Effect.sync(() => version),
      symbols: Effect.succeed(["BTCUSDT"]),
      newest: () => Effect.succeed({ tickUs: null, tradeId: null, klineOpen: null }),
      ticksAfter: (_, key) => after(ticks, key),
      tradesAfter: (_, key) => after(trades, key),
      klinesAfter: () =>
        Effect.suspend(() => {
          if (failing === 0) return Effect.succeed([])
          failing--
          failed++
          return Effect.fail(new SqlError.SqlError({ cause: new Error("disk I/O error"), message: "Failed to read klines" }))
        }),
      tickMinutesAfter: () => Effect.succeed([])
    })
  )
  const config = ConfigProvider.fromMap(new Map([["SYMBOLS", "BTCUSDT"], ["SSE_HEARTBEAT_SECONDS", "60"]]))
  const runtime = ManagedRuntime.make(LiveFeed.Default.pipe(Layer.provide(reads), Layer.provide(Layer.setConfigProvider(config))))
  afterAll(() => runtime.dispose())

  it("skips the poll whose read failed and sends its rows once with the next one", async () => {
    const feed = await runtime.runPromise(LiveFeed)
    const parser = sseParser()
    const body = feed.subscribe({ kinds: undefined, symbols: undefined, lastEventId: undefined, drop: () => {}, server: undefined })
    body.on("data", (bytes: Buffer) => parser.push(bytes.toString("utf8")))
    await new Promise((r) => setTimeout(r, 600)) // the feed is following the symbol
    failing = 3
    ticks.push({ key: 1_000, timeUs: 1_000, json: '{"t":1}' }, { key: 3_000, timeUs: 3_000, json: '{"t":3}' })
    trades.push({ key: 7, timeUs: 2_000, json: '{"id":7}' })
    version++
    await until(() => parser.events.length >= 3, 5000, "the rows after the failed polls")
    await new Promise((r) => setTimeout(r, 600))
    assert.strictEqual(failed, 3)
    assert.deepStrictEqual(
      parser.events.map((e) => [e.event, e.data]),
      [["ticker", '{"t":1}'], ["trade", '{"id":7}'], ["ticker", '{"t":3}']]
    )
    // and it goes on
    ticks.push({ key: 4_000, timeUs: 4_000, json: '{"t":4}' })
    version++
    await until(() => parser.events.length === 4, 5000, "a row after recovery")
    body.destroy()
  })
})
