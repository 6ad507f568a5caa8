import { afterAll, assert, beforeAll, describe, it } from "@effect/vitest"
import { execFileSync } from "node:child_process"
import * as nodeFs from "node:fs"
import { tmpdir } from "node:os"
import * as nodePath from "node:path"
import { Effect, Either, Layer, Logger, Option, TestClock } from "effect"
import { BinanceClient } from "../src/binance/BinanceClient.js"
import {
  makeRateLimitStoreMemory,
  RATE_LIMIT_FILE,
  RateLimitStore,
  RateLimitStoreLive,
  RateLimitStoreMemory
} from "../src/binance/RateLimitStore.js"
import type { TickerSymbol } from "../src/domain/Ticker.js"
import { driveClock, realDelay, withEnv } from "./support/effect.js"
import { type FakeBinance, startFakeBinance } from "./support/fakeBinance.js"

const BTC = "BTCUSDT" as TickerSymbol
/** The TestClock's "now" when a test starts: a realistic instant, so logged dates read as dates. */
const T0 = Date.parse("2026-03-01T12:00:00.000Z")
const iso = (ms: number) => new Date(ms).toISOString()

let fake: FakeBinance
const scratch = nodeFs.mkdtempSync(nodePath.join(tmpdir(), "binance-ban-"))
beforeAll(async () => {
  fake = await startFakeBinance()
})
afterAll(async () => {
  await fake.close()
  nodeFs.rmSync(scratch, { recursive: true, force: true })
})

const tickerRequests = () => fake.requests.filter((r) => r.path === "/api/v3/ticker/24hr").length

/** A fresh data directory; returns the STORAGE_PATH in it and where the rate-limit file goes. */
const dataDir = (name: string) => {
  const dir = nodeFs.mkdtempSync(nodePath.join(scratch, `${name}-`))
  return { storagePath: nodePath.join(dir, "app.db"), file: nodePath.join(dir, RATE_LIMIT_FILE) }
}

/** The warnings (and worse) logged while the test runs. */
const captureWarnings = () => {
  const warnings: Array<string> = []
  const layer = Logger.add(
    Logger.make(({ logLevel, message }) => {
      if (logLevel._tag === "Warning" || logLevel._tag === "Error") {
        warnings.push((Array.isArray(message) ? message : [message]).map(String).join(" "))
      }
    })
  )
  return { warnings, layer }
}

/**
 * One "process": a BinanceClient with the file-backed store on `storagePath`, built as production
 * builds it, used by `f` and torn down when `f` ends. Calling it again is a restart.
 */
const runProcess = <A, E>(
  storagePath: string,
  f: (client: BinanceClient) => Effect.Effect<A, E>,
  logger: Layer.Layer<never> = Layer.empty
) =>
  Effect.flatMap(BinanceClient, f).pipe(
    Effect.provide(BinanceClient.Default.pipe(Layer.provide(RateLimitStoreLive))),
    Effect.provide(logger),
    withEnv({ BINANCE_BASE_URL: fake.url, STORAGE_PATH: storagePath })
  )

const readStored = (file: string) => JSON.parse(nodeFs.readFileSync(file, "utf8")) as Record<string, unknown>

/**
 * A 429 or 418 with `Retry-After: seconds`, then a restart 5 s later: the new process must send
 * nothing before the limit ends and exactly one request once it has.
 */
const restartInsideLimit = (status: 429 | 418, seconds: number) =>
  Effect.gen(function* () {
    yield* TestClock.setTime(T0)
    const { file, storagePath } = dataDir(`restart-${status}`)
    const until = T0 + seconds * 1000

    fake.enqueueFaults({ kind: "status", status, retryAfterSeconds: seconds })
    const before = tickerRequests()
    const failure = yield* runProcess(storagePath, (client) => Effect.flip(client.ticker24h([BTC])))
    assert.strictEqual(failure._tag, "RateLimited")
    assert.strictEqual(failure._tag === "RateLimited" && failure.status, status)
    assert.strictEqual(tickerRequests(), before + 1)
    assert.deepInclude(readStored(file), { until, until_utc: iso(until), status })

    // the first process has ended; the restart comes 5 s into the limit
    yield* TestClock.adjust("5 seconds")
    const logs = captureWarnings()
    const batch = yield* runProcess(
      storagePath,
      (client) =>
        Effect.gen(function* () {
          assert.strictEqual(yield* client.blockedUntil, until)
          const next = yield* Effect.fork(client.ticker24h([BTC]))
          yield* TestClock.adjust(`${seconds - 5 - 1} seconds`)
          yield* realDelay(150)
          assert.strictEqual(tickerRequests(), before + 1, "no request may leave before the limit's end")
          yield* TestClock.adjust("999 millis")
          yield* realDelay(50)
          assert.strictEqual(tickerRequests(), before + 1, "not even 1 ms early")
          yield* TestClock.adjust("1 millis")
          const batch = yield* driveClock(next, "100 millis")
          // the end stays readable after it passed: the producer tells from it that a cycle waited
          assert.strictEqual(yield* client.blockedUntil, until)
          return batch
        }),
      logs.layer
    )
    assert.strictEqual(tickerRequests(), before + 2, "exactly one request once the limit is over")
    assert.strictEqual(batch.tickers.length, 1)
    assert.deepStrictEqual(logs.warnings, [
      `Binance rate limit from an earlier run: no request to Binance before ${iso(until)} (HTTP ${status})`
    ])
  })

describe("a Binance rate limit outlives a restart", () => {
  it.effect("a 418 ban (Retry-After: 30) holds a restarted client until the ban's end", () => restartInsideLimit(418, 30))

  it.effect("a 429's Retry-After (20 s) holds a restarted client the same way", () => restartInsideLimit(429, 20))

  it.effect("a later, shorter limit never shortens the recorded end", () =>
    Effect.gen(function* () {
      yield* TestClock.setTime(T0)
      const { file, storagePath } = dataDir("longest")
      fake.enqueueFaults({ kind: "status", status: 418, retryAfterSeconds: 120 })
      yield* runProcess(storagePath, (client) => Effect.flip(client.ticker24h([BTC])))
      const store = yield* RateLimitStore.pipe(
        Effect.provide(RateLimitStoreLive),
        withEnv({ STORAGE_PATH: storagePath })
      )
      yield* store.save({ until: T0 + 10_000, status: 429 })
      assert.deepInclude(readStored(file), { until: T0 + 120_000, status: 418 })
      assert.deepStrictEqual(yield* store.load, Option.some({ until: T0 + 120_000, status: 418 as const }))
      yield* store.save({ until: T0 + 300_000, status: 429 })
      assert.deepStrictEqual(yield* store.load, Option.some({ until: T0 + 300_000, status: 429 as const }))
    })
  )

  it.effect("a fractional Retry-After is recorded rounded up to the next millisecond", () =>
    Effect.gen(function* () {
      yield* TestClock.setTime(T0)
      const { file, storagePath } = dataDir("fraction")
      fake.enqueueFaults({ kind: "status", status: 429, retryAfterSeconds: 1.0005 })
      yield* runProcess(storagePath, (client) => Effect.flip(client.ticker24h([BTC])))
      assert.deepInclude(readStored(file), { until: T0 + 1001, status: 429 })
      const blocked = yield* runProcess(storagePath, (client) => client.blockedUntil)
      assert.strictEqual(blocked, T0 + 1001)
    })
  )

  it.effect("a limit that ended before the restart is ignored, silently", () =>
    Effect.gen(function* () {
      yield* TestClock.setTime(T0)
      const { file, storagePath } = dataDir("expired")
      nodeFs.writeFileSync(file, JSON.stringify({ until: T0 - 1, status: 418 }))
      const logs = captureWarnings()
      const before = tickerRequests()
      yield* runProcess(
        storagePath,
        (client) =>
          Effect.gen(function* () {
            assert.strictEqual(yield* client.blockedUntil, 0)
            yield* client.ticker24h([BTC])
          }),
        logs.layer
      )
      assert.strictEqual(tickerRequests(), before + 1)
      assert.deepStrictEqual(logs.warnings, [])
    })
  )
})

describe("the rate-limit file never stops the client", () => {
  const garbage: ReadonlyArray<readonly [string, string]> = [
    ["not JSON", "{until: soon"],
    ["empty", ""],
    ["a string end", JSON.stringify({ until: "tomorrow", status: 418 })],
    ["another status", JSON.stringify({ until: T0 + 60_000, status: 503 })],
    ["an end beyond any date", JSON.stringify({ until: 1e300, status: 418 })],
    ["a list", JSON.stringify([T0 + 60_000, 418])]
  ]
  for (const [what, content] of garbage) {
    it.effect(`a malformed file (${what}) means no ban, one warning, and the request goes out`, () =>
      Effect.gen(function* () {
        yield* TestClock.setTime(T0)
        const { file, storagePath } = dataDir("garbage")
        nodeFs.writeFileSync(file, content)
        const logs = captureWarnings()
        const before = tickerRequests()
        const batch = yield* runProcess(storagePath, (client) => client.ticker24h([BTC]), logs.layer)
        assert.strictEqual(batch.tickers.length, 1)
        assert.strictEqual(tickerRequests(), before + 1)
        assert.strictEqual(logs.warnings.length, 1)
        assert.include(logs.warnings[0], file)
        assert.include(logs.warnings[0], "no ban")
      })
    )
  }

  it.effect("a malformed file is replaced by the next limit", () =>
    Effect.gen(function* () {
      yield* TestClock.setTime(T0)
      const { file, storagePath } = dataDir("replace")
      nodeFs.writeFileSync(file, "garbage")
      fake.enqueueFaults({ kind: "status", status: 429, retryAfterSeconds: 60 })
      yield* runProcess(storagePath, (client) => Effect.flip(client.ticker24h([BTC])))
      assert.deepInclude(readStored(file), { until: T0 + 60_000, status: 429 })
    })
  )

  it.effect("a missing data directory is created when a limit is recorded", () =>
    Effect.gen(function* () {
      yield* TestClock.setTime(T0)
      const dir = nodePath.join(scratch, "not-yet", "data")
      const file = nodePath.join(dir, RATE_LIMIT_FILE)
      const logs = captureWarnings()
      fake.enqueueFaults({ kind: "status", status: 418, retryAfterSeconds: 120 })
      const failure = yield* runProcess(
        nodePath.join(dir, "app.db"),
        (client) => Effect.flip(client.ticker24h([BTC])),
        logs.layer
      )
      assert.strictEqual(failure._tag, "RateLimited")
      assert.deepStrictEqual(logs.warnings, [])
      assert.deepInclude(readStored(file), { until: T0 + 120_000, status: 418 })
      assert.deepStrictEqual(
        nodeFs.readdirSync(dir).filter((f) => f.endsWith(".tmp")),
        [],
        "no temporary file is left behind"
      )
    })
  )

  /**
   * Places where the file cannot be written: a read-only directory (a read-only tmpfs when running
   * as root, whom mode bits do not stop), a "directory" that is a regular file, and a file name
   * taken by a directory. Each is checked to refuse writes before the client is tried on it.
   */
  const unwritable: ReadonlyArray<readonly [string, () => { storagePath: string; release: () => void }]> = [
    [
      "a read-only directory",
      () => {
        const dir = nodeFs.mkdtempSync(nodePath.join(scratch, "read-only-"))
        if (process.getuid?.() === 0) {
          execFileSync("mount", ["-t", "tmpfs", "-o", "ro,size=64k", "tmpfs", dir])
          return { storagePath: nodePath.join(dir, "app.db"), release: () => execFileSync("umount", ["-l", dir]) }
        }
        nodeFs.chmodSync(dir, 0o555)
        return { storagePath: nodePath.join(dir, "app.db"), release: () => nodeFs.chmodSync(dir, 0o755) }
      }
    ],
    [
      "a data directory that is a regular file",
      () => {
        const notADir = nodePath.join(nodeFs.mkdtempSync(nodePath.join(scratch, "file-")), "data")
        nodeFs.writeFileSync(notADir, "")
        return { storagePath: nodePath.join(notADir, "app.db"), release: () => {} }
      }
    ],
    [
      "a rate-limit file that is a directory",
      () => {
        const { file, storagePath } = dataDir("is-a-dir")
        nodeFs.mkdirSync(file)
        return { storagePath, release: () => {} }
      }
    ]
  ]
  for (const [what, setUp] of unwritable) {
    it.effect(`${what}: the client starts, the 418 is still honoured in memory, and a warning says why`, () =>
      Effect.acquireUseRelease(
        Effect.sync(setUp),
        ({ storagePath }) =>
          Effect.gen(function* () {
            const file = nodePath.join(nodePath.dirname(storagePath), RATE_LIMIT_FILE)
            const probe = Either.try(() => nodeFs.writeFileSync(file, "{}"))
            assert.isTrue(Either.isLeft(probe), `precondition: ${file} must not be writable`)

            yield* TestClock.setTime(T0)
            const logs = captureWarnings()
            fake.enqueueFaults({ kind: "status", status: 418, retryAfterSeconds: 120 })
            const before = tickerRequests()
            yield* runProcess(
              storagePath,
              (client) =>
                Effect.gen(function* () {
                  const failure = yield* Effect.flip(client.ticker24h([BTC]))
                  assert.strictEqual(failure._tag, "RateLimited")
                  assert.strictEqual(yield* client.blockedUntil, T0 + 120_000)
                  const next = yield* Effect.fork(client.ticker24h([BTC]))
                  yield* TestClock.adjust("119 seconds")
                  yield* realDelay(100)
                  assert.strictEqual(tickerRequests(), before + 1, "the ban holds even when it cannot be recorded")
                  yield* TestClock.adjust("1 second")
                  yield* driveClock(next, "100 millis")
                  assert.strictEqual(tickerRequests(), before + 2)
                }),
              logs.layer
            )
            const recordFailed = logs.warnings.filter((w) => w.startsWith("cannot record the Binance rate limit"))
            assert.strictEqual(recordFailed.length, 1, logs.warnings.join("\n"))
            assert.include(recordFailed[0], file)
            assert.include(recordFailed[0], iso(T0 + 120_000))
          }),
        ({ release }) => Effect.sync(release)
      )
    )
  }
})

describe("without a file", () => {
  it.effect("BinanceClient.Default alone keeps the limit in memory and writes nothing", () =>
    Effect.gen(function* () {
      yield* TestClock.setTime(T0)
      const { file, storagePath } = dataDir("no-store")
      fake.enqueueFaults({ kind: "status", status: 418, retryAfterSeconds: 120 })
      yield* Effect.flatMap(BinanceClient, (client) =>
        Effect.gen(function* () {
          yield* Effect.flip(client.ticker24h([BTC]))
          assert.strictEqual(yield* client.blockedUntil, T0 + 120_000)
        })
      ).pipe(Effect.provide(BinanceClient.Default), withEnv({ BINANCE_BASE_URL: fake.url, STORAGE_PATH: storagePath }))
      assert.isFalse(nodeFs.existsSync(file))
    })
  )

  it.effect("RateLimitStoreMemory records the limit; a shared in-memory store carries it to a new client", () =>
    Effect.gen(function* () {
      yield* TestClock.setTime(T0)
      const env = withEnv({ BINANCE_BASE_URL: fake.url })
      fake.enqueueFaults({ kind: "status", status: 429, retryAfterSeconds: 45 })
      const recorded = yield* Effect.gen(function* () {
        const client = yield* BinanceClient
        yield* Effect.flip(client.ticker24h([BTC]))
        return yield* (yield* RateLimitStore).load
      }).pipe(Effect.provide(BinanceClient.Default.pipe(Layer.provideMerge(RateLimitStoreMemory))), env)
      assert.deepStrictEqual(recorded, Option.some({ until: T0 + 45_000, status: 429 as const }))

      const shared = Layer.succeed(RateLimitStore, yield* makeRateLimitStoreMemory(recorded))
      const blocked = yield* Effect.flatMap(BinanceClient, (client) => client.blockedUntil).pipe(
        Effect.provide(BinanceClient.Default.pipe(Layer.provide(shared))),
        env
      )
      assert.strictEqual(blocked, T0 + 45_000)
    })
  )
})
