/**
 * The sinks on a REAL full filesystem: a small tmpfs mounted for each test (root only; CI runs as root).
 * A batch that runs out of space must not leave half of itself behind, and the retry after space is
 * freed (the consumer retries a failed batch until it succeeds) must store every event exactly once.
 */
import { existsSync, readFileSync } from "node:fs"
import { join } from "node:path"
import { Error as PlatformError, FileSystem } from "@effect/platform"
import { NodeContext } from "@effect/platform-node"
import { SqlClient } from "@effect/sql"
import { assert, describe, it } from "@effect/vitest"
import { Cause, Effect, Exit, Layer } from "effect"
import type { Tick, TickerEvent } from "../src/domain/Ticker.js"
import { CandleRepo } from "../src/store/CandleRepo.js"
import { makeJsonlSink } from "../src/store/JsonlSink.js"
import { sqliteLayer } from "../src/store/Sql.js"
import { makeSqliteSink } from "../src/store/SqliteSink.js"
import type { SinkError } from "../src/store/TickSink.js"
import { TickRepo } from "../src/store/TickRepo.js"
import { TickWriter } from "../src/store/TickWriter.js"
import { makeTick, us } from "./support/events.js"
import { fillDisk, freeBytes, freeDisk, tmpfsScoped } from "./support/tmpfs.js"

const DAY = "2026-01-15"
const t0 = us(`${DAY}T08:00:00Z`)

/** `n` distinct events one second apart from the `from`-th second after `start` (08:00 of DAY), BTC and ETH alternating. */
const events = (from: number, n: number, start = t0) =>
  Array.from({ length: n }, (_, i) =>
    makeTick(i % 2 === 0 ? "BTCUSDT" : "ETHUSDT", start + (from + i) * 1_000_000 + 123, `${100 + ((from + i) % 900)}.25`)
  )

const identity = (e: Pick<TickerEvent, "symbol" | "timestamp_utc">) => `${e.symbol}|${e.timestamp_utc}`
const bytesOf = (batch: ReadonlyArray<Tick>) => batch.reduce((n, t) => n + JSON.stringify(t.event).length + 1, 0)

/** Every line of the day file is a whole JSON document, each event appears once, and exactly `expected` are there. */
const assertWholeAndOnce = (file: string, expected: ReadonlyArray<Tick>) => {
  const text = readFileSync(file, "utf8")
  assert.isTrue(text.endsWith("\n"), "the day file ends in the middle of a line")
  const lines = text.slice(0, -1).split("\n")
  const counts = new Map<string, number>()
  lines.forEach((line, i) => {
    let parsed: TickerEvent
    try {
      parsed = JSON.parse(line) as TickerEvent
    } catch {
      return assert.fail(`line ${i + 1} of the day file is not a whole JSON document: ${line.slice(0, 120)}`)
    }
    counts.set(identity(parsed), (counts.get(identity(parsed)) ?? 0) + 1)
  })
  const duplicated = [...counts].filter(([, n]) => n > 1)
  assert.deepStrictEqual(duplicated, [], "events written more than once")
  const wanted = new Set(expected.map((t) => identity(t.event)))
  assert.deepStrictEqual([...counts.keys()].sort(), [...wanted].sort())
  assert.strictEqual(lines.length, wanted.size)
}

const assertNoSpace = (error: SinkError, sink: string) => {
  assert.strictEqual(error._tag, "SinkError")
  assert.strictEqual(error.sink, sink)
  assert.match(error.message, /no space left on device/i)
}

/** A JSONL sink's world on a fresh 256 KiB tmpfs. */
const jsonlOnTmpfs = Effect.gen(function* () {
  const mount = yield* tmpfsScoped("256k")
  const raw = join(mount, "raw")
  return { raw, file: join(raw, `${DAY}.jsonl`), filler: join(mount, "filler") }
})

describe("JsonlSink on a full disk", () => {
  it.scoped("a batch that runs out of space part-way leaves the day file as it was; the retry writes each event once", () =>
    Effect.gen(function* () {
      const { file, filler, raw } = yield* jsonlOnTmpfs
      const sink = yield* makeJsonlSink(raw)
      const first = events(0, 20)
      yield* sink.writeBatch(first)
      const before = readFileSync(file)

      // 5 events already stored (a replay) and 300 new ones: ~50 KiB against ~8 KiB of free space
      const batch = [...first.slice(15), ...events(20, 300)]
      const free = fillDisk(filler, 8 * 1024)
      assert.isAbove(free, 0, "the disk should have a little space left, so that the append fails part-way")
      assert.isBelow(free, bytesOf(batch) / 2, "the batch should not fit in the space left")

      assertNoSpace(yield* Effect.flip(sink.writeBatch(batch)), "jsonl")
      assert.isTrue(readFileSync(file).equals(before), "the failed append changed the day file")

      freeDisk(filler)
      yield* sink.writeBatch(batch)
      assertWholeAndOnce(file, [...first, ...batch])
    }).pipe(Effect.provide(NodeContext.layer))
  )

  it.scoped("the same batch retried while the disk stays full, then after space is freed, is stored once", () =>
    Effect.gen(function* () {
      const { file, filler, raw } = yield* jsonlOnTmpfs
      const sink = yield* makeJsonlSink(raw)
      const first = events(0, 20)
      yield* sink.writeBatch(first)
      const before = readFileSync(file)

      const batch = [...events(20, 150), ...first.slice(0, 3), ...events(170, 150)]
      assert.isBelow(fillDisk(filler, 8 * 1024), bytesOf(batch) / 2)
      for (let attempt = 1; attempt <= 4; attempt++) {
        assertNoSpace(yield* Effect.flip(sink.writeBatch(batch)), "jsonl")
        assert.isTrue(readFileSync(file).equals(before), `failed attempt ${attempt} changed the day file`)
      }
      // completely full now: the append cannot write a single byte
      fillDisk(`${filler}-2`)
      assertNoSpace(yield* Effect.flip(sink.writeBatch(batch)), "jsonl")
      assert.isTrue(readFileSync(file).equals(before), "the failed attempt on a completely full disk changed the day file")

      freeDisk(filler)
      freeDisk(`${filler}-2`)
      yield* sink.writeBatch(batch)
      assertWholeAndOnce(file, [...first, ...batch])

      // a restart replays the batch (Kafka redelivery): recognised from the file, nothing appended
      const after = readFileSync(file)
      const restarted = yield* makeJsonlSink(raw)
      yield* restarted.writeBatch(batch)
      assert.isTrue(readFileSync(file).equals(after), "a replay after the restart was appended again")
    }).pipe(Effect.provide(NodeContext.layer))
  )

  it.scoped("when even the rollback fails, the partial lines are cut off before the retry appends", () =>
    Effect.gen(function* () {
      const { file, filler, raw } = yield* jsonlOnTmpfs
      // the real file system, except that the first truncation (the rollback of the failed append) fails
      let truncations = 0
      const flakyTruncate = Layer.effect(
        FileSystem.FileSystem,
        Effect.map(FileSystem.FileSystem, (fs) =>
          FileSystem.FileSystem.of({
            ...fs,
            truncate: (path, length) =>
              ++truncations === 1
                ? Effect.fail(
                    new PlatformError.SystemError({
                      reason: "Unknown",
                      module: "FileSystem",
                      method: "truncate",
                      description: "EIO: i/o error, ftruncate"
                    })
                  )
                : fs.truncate(path, length)
          })
        )
      ).pipe(Layer.provide(NodeContext.layer))

      const sink = yield* makeJsonlSink(raw).pipe(Effect.provide(flakyTruncate))
      const first = events(0, 20)
      yield* sink.writeBatch(first)
      const batch = events(20, 300)
      const before = readFileSync(file)
      fillDisk(filler, 8 * 1024)
      // the error still says what went wrong first
      assertNoSpace(yield* Effect.flip(sink.writeBatch(batch)), "jsonl")
      assert.isFalse(readFileSync(file).equals(before), "the partial append should still be there: its rollback failed")

      freeDisk(filler)
      yield* sink.writeBatch(batch)
      assertWholeAndOnce(file, [...first, ...batch])
      assert.isAtLeast(truncations, 2)
    }).pipe(Effect.provide(NodeContext.layer))
  )

  it.scoped("a batch over two days: the day that fit is kept once, the new day file that did not fit is removed", () =>
    Effect.gen(function* () {
      const { file, filler, raw } = yield* jsonlOnTmpfs
      const nextFile = join(raw, "2026-01-16.jsonl")
      const sink = yield* makeJsonlSink(raw)
      const first = events(0, 20)
      yield* sink.writeBatch(first)

      const today = events(20, 10)
      const tomorrow = events(0, 300, us("2026-01-16T00:00:00Z"))
      const batch = [...today, ...tomorrow]
      fillDisk(filler, 8 * 1024)
      assertNoSpace(yield* Effect.flip(sink.writeBatch(batch)), "jsonl")
      assertWholeAndOnce(file, [...first, ...today])
      assert.isFalse(existsSync(nextFile), "the new day file that did not fit was left behind")

      freeDisk(filler)
      yield* sink.writeBatch(batch)
      assertWholeAndOnce(file, [...first, ...today])
      assertWholeAndOnce(nextFile, tomorrow)
    }).pipe(Effect.provide(NodeContext.layer))
  )
})

/** Rows in ticks, distinct identities among them, events counted in symbol_stats, and the integrity check. */
const tableState = (sql: SqlClient.SqlClient) =>
  Effect.gen(function* () {
    const [counts] = yield* sql<{ n: number; distinct_events: number; stats: number | null }>`
      SELECT COUNT(*) AS n, COUNT(DISTINCT symbol || '|' || ts_us) AS distinct_events,
             (SELECT SUM(events) FROM symbol_stats) AS stats
      FROM ticks`
    const integrity = yield* sql<{ integrity_check: string }>`PRAGMA integrity_check`
    return { ...counts!, integrity: integrity.map((r) => r.integrity_check) }
  })

/** The messages of an error and of the causes under it. */
const messages = (error: unknown): string => {
  const parts: Array<string> = []
  for (let e: unknown = error, depth = 0; e !== undefined && e !== null && depth < 8; depth++) {
    parts.push(e instanceof Error ? e.message : String(e))
    e = (e as { readonly cause?: unknown }).cause
  }
  return parts.join(" <- ")
}

describe("SQLite sink on a full disk", () => {
  it.scoped("a batch that hits SQLITE_FULL is rolled back; after space is freed the retry stores every event once", () =>
    Effect.gen(function* () {
      const mount = yield* tmpfsScoped("2m")
      const dbFile = join(mount, "db", "ticks.db")
      const filler = join(mount, "filler")
      const batches = Array.from({ length: 60 }, (_, b) => events(b * 200, 200))

      yield* Effect.gen(function* () {
        const sink = yield* makeSqliteSink
        const sql = yield* SqlClient.SqlClient
        yield* sink.writeBatch(batches[0]!)
        fillDisk(filler)
        assert.strictEqual(freeBytes(mount), 0)

        let failedAt = -1
        for (let b = 1; b < batches.length && failedAt < 0; b++) {
          const exit = yield* Effect.exit(sink.writeBatch(batches[b]!))
          if (Exit.isFailure(exit)) {
            failedAt = b
            // In WAL mode SQLITE_FULL comes from COMMIT, which @effect/sql turns into a defect; the sink
            // must report it as a failure (the consumer retries failures, a defect would stop it).
            const failure = Cause.failureOption(exit.cause)
            assert.isTrue(failure._tag === "Some" && failure.value._tag === "SinkError", `not a SinkError: ${Cause.pretty(exit.cause)}`)
            assert.match(messages(Cause.squash(exit.cause)), /full/i)
          }
        }
        assert.isAbove(failedAt, 0, "no batch failed although the disk was full")
        assert.strictEqual((yield* tableState(sql)).n, failedAt * 200, "the failed batch was not rolled back whole")
        // still full: the retry fails again
        const again = yield* Effect.exit(sink.writeBatch(batches[failedAt]!))
        assert.isTrue(Exit.isFailure(again), "the batch was stored although the disk is still full")

        freeDisk(filler)
        yield* sink.writeBatch(batches[failedAt]!)
        // and replays of everything before it (at-least-once delivery)
        for (let b = 0; b <= failedAt; b++) yield* sink.writeBatch(batches[b]!)

        const expected = (failedAt + 1) * 200
        const rows = yield* tableState(sql)
        assert.deepStrictEqual(rows, { n: expected, distinct_events: expected, stats: expected, integrity: ["ok"] })
      }).pipe(
        Effect.provide(Layer.mergeAll(TickRepo.Default, TickWriter.Default, CandleRepo.Default).pipe(Layer.provideMerge(sqliteLayer(dbFile))))
      )
    }).pipe(Effect.provide(NodeContext.layer))
  )
})
