import { FileSystem, Path } from "@effect/platform"
import { NodeContext } from "@effect/platform-node"
import { SqlClient } from "@effect/sql"
import { assert, describe, it } from "@effect/vitest"
import { Effect, Layer } from "effect"
import { makeJsonlSink } from "../src/store/JsonlSink.js"
import { sqliteLayer } from "../src/store/Sql.js"
import { makeSqliteSink } from "../src/store/SqliteSink.js"
import { TickRepo } from "../src/store/TickRepo.js"
import { TickWriter } from "../src/store/TickWriter.js"
import { CandleRepo } from "../src/store/CandleRepo.js"
import { toTick } from "../src/domain/Ticker.js"
import { makeEvent, makeTick, us } from "./support/events.js"
import { STORE_KINDS, withStore } from "./support/stores.js"

/** A migrated database in a fresh temporary directory that does not exist yet (it must be created). */
const withTempDb = <A, E>(f: (file: string) => Effect.Effect<A, E, TickRepo | TickWriter | CandleRepo | SqlClient.SqlClient>) =>
  Effect.gen(function* () {
    const fs = yield* FileSystem.FileSystem
    const path = yield* Path.Path
    const dir = yield* fs.makeTempDirectoryScoped()
    const file = path.join(dir, "nested", "app.db")
    return yield* f(file).pipe(Effect.provide(Layer.mergeAll(TickRepo.Default, TickWriter.Default, CandleRepo.Default).pipe(Layer.provideMerge(sqliteLayer(file)))))
  }).pipe(Effect.scoped, Effect.provide(NodeContext.layer))

const t0 = us("2026-01-15T14:00:00Z")
const batch = [
  makeEvent("BTCUSDT", t0, "100.10"),
  makeEvent("ETHUSDT", t0, "2000.20"),
  makeEvent("BTCUSDT", t0 + 60_000_000, "100.30"),
  makeEvent("BTCUSDT", t0 + 120_000_000 + 7, "100.40")
]

describe("SqliteStore", () => {
  it.effect("creates its directory, migrates, and runs in WAL mode", () =>
    withTempDb((file) =>
      Effect.gen(function* () {
        const fs = yield* FileSystem.FileSystem
        assert.isTrue(yield* fs.exists(file))
        assert.isTrue(yield* fs.exists(`${file}-wal`))
      }).pipe(Effect.provide(NodeContext.layer))
    )
  )
})

describe.each(STORE_KINDS)("the %s tick store", (kind) => {
  it.effect("stores the same batch twice as one row per event", () =>
    withStore(kind)(
      Effect.gen(function* () {
        const repo = yield* TickRepo
        const writer = yield* TickWriter
        const ticks = batch.map(toTick)
        assert.deepStrictEqual(yield* writer.insertMany(ticks), ticks)
        assert.deepStrictEqual(yield* writer.insertMany(ticks), [])
        assert.deepStrictEqual(yield* writer.insertMany([...ticks].reverse()), [])
        // partly a replay, with a repeat inside the batch: only the new ticks come back, once, in batch order
        const fresh = [makeTick("BTCUSDT", t0 + 1, "1.00"), makeTick("ETHUSDT", t0 + 2, "2.00")]
        assert.deepStrictEqual(yield* writer.insertMany([ticks[0]!, fresh[0]!, ticks[1]!, fresh[1]!, fresh[0]!]), fresh)
        const rows = yield* repo.range("BTCUSDT", 0, Number.MAX_SAFE_INTEGER, 100)
        assert.strictEqual(rows.length, 4)
        const symbols = yield* repo.symbols
        assert.deepStrictEqual(symbols, [
          { symbol: "BTCUSDT", latest_timestamp_utc: batch[3]!.timestamp_utc, events: 4 },
          { symbol: "ETHUSDT", latest_timestamp_utc: fresh[1]!.event.timestamp_utc, events: 2 }
        ])
      })
    )
  )

  it.effect("treats the same instant written with another offset or precision as the same event", () =>
    withStore(kind)(
      Effect.gen(function* () {
        const repo = yield* TickWriter
        yield* repo.insertMany([toTick({ ...makeEvent("BTCUSDT", t0), timestamp_utc: "2026-01-15T14:00:00+00:00" })])
        const added = yield* repo.insertMany([toTick({ ...makeEvent("BTCUSDT", t0), timestamp_utc: "2026-01-15T16:00:00.000000+02:00" })])
        assert.strictEqual(added.length, 0)
      })
    )
  )

  it.effect("returns the exact contract back: latest newest first, range oldest first with end exclusive", () =>
    withStore(kind)(
      Effect.gen(function* () {
        const repo = yield* TickRepo
        const writer = yield* TickWriter
        const withEventTime = { ...batch[0]!, event_time: "2026-01-15T13:59:59.999000+00:00" }
        yield* writer.insertMany([withEventTime, ...batch.slice(1)].map(toTick))
        const latest = yield* repo.latest("BTCUSDT", 2)
        assert.deepStrictEqual(latest, [batch[3], batch[2]])
        const range = yield* repo.range("BTCUSDT", t0, t0 + 120_000_000, 10)
        assert.deepStrictEqual(range, [withEventTime, batch[2]])
        assert.deepStrictEqual(yield* repo.range("BTCUSDT", t0, t0 + 120_000_000, 1), [withEventTime])
      })
    )
  )

  it.effect("the sink reports writes through TickRepo and stays idempotent in bigger batches", () =>
    withStore(kind)(
      Effect.gen(function* () {
        const sink = yield* makeSqliteSink
        const repo = yield* TickRepo
        const many = Array.from({ length: 2500 }, (_, i) => makeTick(i % 2 === 0 ? "BTCUSDT" : "ETHUSDT", t0 + i))
        yield* sink.writeBatch(many)
        yield* sink.writeBatch(many.slice(1000, 2000))
        const symbols = yield* repo.symbols
        assert.deepStrictEqual(symbols.map((s) => s.events), [1250, 1250])
      })
    )
  )
})

describe.each(STORE_KINDS)("candles from the live stream (%s)", (kind) => {
  it.effect("the sink derives 1m candles and today's daily candle from ticks; klines win where both exist", () =>
    withStore(kind)(
      Effect.gen(function* () {
        const sink = yield* makeSqliteSink
        const candles = yield* CandleRepo
        const m = us("2026-01-15T10:00:00Z")
        yield* sink.writeBatch([
          makeTick("BTCUSDT", m + 5_000_000, "100.00"),
          makeTick("BTCUSDT", m + 20_000_000, "103.00"),
          makeTick("BTCUSDT", m + 40_000_000, "99.00"),
          makeTick("BTCUSDT", m + 65_000_000, "101.00")
        ])
        const minutes = yield* candles.candles("BTCUSDT", "1m", Date.UTC(2026, 0, 15), Date.UTC(2026, 0, 16))
        assert.deepStrictEqual(
          minutes.map((c) => [c.open, c.high, c.low, c.close, c.volume]),
          [
            ["100.00", "103.00", "99.00", "99.00", "0"],
            ["101.00", "101.00", "101.00", "101.00", "0"]
          ]
        )
        const daily = yield* candles.daily("BTCUSDT", "2026-01-15", "2026-01-15")
        assert.deepStrictEqual(
          daily.map((d) => [d.open, d.high, d.low, d.close, d.source]),
          [["100.00", "103.00", "99.00", "101.00", "ticks"]]
        )
        // a Binance kline for the first minute replaces the tick-derived one in the day
        yield* candles.upsert(
          [
            {
              symbol: "BTCUSDT",
              interval: "1m",
              openTime: Date.UTC(2026, 0, 15, 10, 0),
              open: "100.50",
              high: "104.00",
              low: "98.00",
              close: "99.50",
              volume: "7.5",
              quoteVolume: "750",
              trades: 3,
              closed: true
            }
          ],
          "klines"
        )
        const merged = yield* candles.daily("BTCUSDT", "2026-01-15", "2026-01-15")
        assert.deepStrictEqual(
          merged.map((d) => [d.open, d.high, d.low, d.close, d.volume, d.source]),
          [["100.50", "104.00", "98.00", "101.00", "7.5", "klines+ticks"]]
        )
      })
    )
  )
})

describe("JsonlSink", () => {
  it.scoped("appends one contract event per line to RAW_DIR/YYYY-MM-DD.jsonl by the event's UTC day", () =>
    Effect.gen(function* () {
      const fs = yield* FileSystem.FileSystem
      const dir = `${yield* fs.makeTempDirectoryScoped()}/raw`
      const sink = yield* makeJsonlSink(dir)
      const lateEvening = makeEvent("BTCUSDT", us("2026-01-15T23:59:59.999Z") + 999)
      const nextDay = makeEvent("BTCUSDT", us("2026-01-16T00:00:00Z"))
      yield* sink.writeBatch([lateEvening, nextDay].map(toTick))
      yield* sink.writeBatch([makeTick("ETHUSDT", us("2026-01-16T00:00:01Z"))])
      assert.deepStrictEqual((yield* fs.readDirectory(dir)).sort(), ["2026-01-15.jsonl", "2026-01-16.jsonl"])
      const day1 = yield* fs.readFileString(`${dir}/2026-01-15.jsonl`)
      assert.strictEqual(day1, `${JSON.stringify(lateEvening)}\n`)
      assert.include(day1, '"timestamp_utc":"2026-01-15T23:59:59.999999+00:00"')
      const day2 = (yield* fs.readFileString(`${dir}/2026-01-16.jsonl`)).trimEnd().split("\n")
      assert.deepStrictEqual(day2.map((l) => JSON.parse(l).symbol), ["BTCUSDT", "ETHUSDT"])
    }).pipe(Effect.provide(NodeContext.layer))
  )

  it.scoped("writes each batch's lines exactly, whatever the size of the batch before and a source outside ASCII", () =>
    Effect.gen(function* () {
      const fs = yield* FileSystem.FileSystem
      const dir = yield* fs.makeTempDirectoryScoped()
      const sink = yield* makeJsonlSink(dir)
      const event = (i: number, source?: string) => (source === undefined ? makeEvent("BTCUSDT", t0 + i) : { ...makeEvent("BTCUSDT", t0 + i), source })
      // A big batch, then a small one (the bytes of the first must not follow it), then a bigger one.
      const batches = [
        Array.from({ length: 300 }, (_, i) => event(i, i % 2 === 0 ? "börse-π" : undefined)),
        [event(300, "€uro")],
        Array.from({ length: 900 }, (_, i) => event(301 + i))
      ]
      for (const batch of batches) yield* sink.writeBatch(batch.map(toTick))
      const text = yield* fs.readFileString(`${dir}/2026-01-15.jsonl`)
      assert.strictEqual(text, batches.flat().map((e) => `${JSON.stringify(e)}\n`).join(""))
    }).pipe(Effect.provide(NodeContext.layer))
  )

  it.scoped("does not append a replayed event again, even after a restart", () =>
    Effect.gen(function* () {
      const fs = yield* FileSystem.FileSystem
      const dir = yield* fs.makeTempDirectoryScoped()
      const ticks = [makeTick("BTCUSDT", t0), makeTick("ETHUSDT", t0), makeTick("BTCUSDT", t0)]
      const first = yield* makeJsonlSink(dir)
      yield* first.writeBatch(ticks)
      yield* first.writeBatch(ticks)
      const restarted = yield* makeJsonlSink(dir)
      yield* restarted.writeBatch([...ticks, makeTick("BTCUSDT", t0 + 1)])
      const lines = (yield* fs.readFileString(`${dir}/2026-01-15.jsonl`)).trimEnd().split("\n")
      assert.strictEqual(lines.length, 3)
    }).pipe(Effect.provide(NodeContext.layer))
  )
})

describe("JsonlSink after a crash", () => {
  it.scoped("cuts off a torn last line before appending, so every line is a whole event", () =>
    Effect.gen(function* () {
      const fs = yield* FileSystem.FileSystem
      const dir = yield* fs.makeTempDirectoryScoped()
      const file = `${dir}/2026-01-15.jsonl`
      const whole = makeEvent("BTCUSDT", t0)
      yield* fs.writeFileString(file, `${JSON.stringify(whole)}\n{"timestamp_utc":"2026-01-15T14:00:01`)
      const sink = yield* makeJsonlSink(dir)
      const next = makeEvent("ETHUSDT", t0 + 1)
      yield* sink.writeBatch([whole, next].map(toTick))
      const text = yield* fs.readFileString(file)
      assert.isTrue(text.endsWith("\n"))
      const lines = text.slice(0, -1).split("\n")
      assert.deepStrictEqual(lines.map((l) => JSON.parse(l)), [whole, next])
    }).pipe(Effect.provide(NodeContext.layer))
  )
})
