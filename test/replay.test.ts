import { FileSystem, Path } from "@effect/platform"
import { NodeContext } from "@effect/platform-node"
import { assert, describe, it } from "@effect/vitest"
import { Deferred, Effect, Either, Fiber, Layer, Logger, Option, TestClock } from "effect"
import { StopRequested } from "../src/app/Shutdown.js"
import { Broker } from "../src/broker/Broker.js"
import { type Tick, type TickerEvent, toTick } from "../src/domain/Ticker.js"
import { MarketSource } from "../src/market/MarketSource.js"
import { listReplayFiles, REPLAY_BATCH, ReplaySourceLive, runReplay } from "../src/market/ReplaySource.js"
import { Health } from "../src/status/Health.js"
import { realDelay, withEnv } from "./support/effect.js"
import { makeEvent, us } from "./support/events.js"

const T0 = us("2026-01-15T10:00:00Z")

/** Captures every log line's message. */
const captureLogs = () => {
  const lines: Array<{ readonly level: string; readonly message: string }> = []
  const layer = Logger.add(
    Logger.make(({ logLevel, message }) =>
      void lines.push({ level: logLevel._tag, message: (Array.isArray(message) ? message : [message]).map(String).join(" ") })
    )
  )
  return { lines, layer, warnings: () => lines.filter((l) => l.level === "Warning").map((l) => l.message) }
}

/** A publish that records each batch, optionally running `before` first (to block or fail). */
const makeSpy = (before: (call: number) => Effect.Effect<void, { readonly message: string }> = () => Effect.void) => {
  const batches: Array<ReadonlyArray<Tick>> = []
  let calls = 0
  const publish = (ticks: ReadonlyArray<Tick>) => Effect.zipRight(before(++calls), Effect.sync(() => void batches.push(ticks)))
  return { batches, publish, all: () => batches.flat(), calls: () => calls }
}

/** A temporary directory with `files` (name → lines, each ended with a newline unless `torn`). */
const makeDir = (files: Record<string, ReadonlyArray<string>>, torn: ReadonlyArray<string> = []) =>
  Effect.gen(function* () {
    const fs = yield* FileSystem.FileSystem
    const path = yield* Path.Path
    const dir = yield* fs.makeTempDirectoryScoped({ prefix: "replay-" })
    for (const [name, lines] of Object.entries(files)) {
      const text = lines.join("\n") + (torn.includes(name) ? "" : "\n")
      yield* fs.writeFileString(path.join(dir, name), text)
    }
    return { dir, fs, path, file: (name: string) => path.join(dir, name) }
  })

const line = (e: TickerEvent) => JSON.stringify(e)

/** Waits in real time until a fiber sleeps on the TestClock (the source waits for its next event). */
const untilSleeping = Effect.gen(function* () {
  const deadline = Date.now() + 5_000
  while ((yield* TestClock.sleeps()).length === 0) {
    if (Date.now() > deadline) return yield* Effect.die(new Error("the replay never waited"))
    yield* realDelay(2)
  }
})

/** Like untilSleeping, but returns false when the fiber ended instead. */
const untilSleepingOrDone = (fiber: Fiber.Fiber<unknown, unknown>) =>
  Effect.gen(function* () {
    const deadline = Date.now() + 5_000
    while (Date.now() < deadline) {
      if (Option.isSome(yield* Fiber.poll(fiber))) return false
      if ((yield* TestClock.sleeps()).length > 0) return true
      yield* realDelay(2)
    }
    return yield* Effect.die(new Error("the replay neither waited nor ended"))
  })

const replay = (dir: string, speed: number, publish: ReturnType<typeof makeSpy>["publish"]) =>
  Effect.gen(function* () {
    const files = yield* listReplayFiles(dir)
    const health = yield* Health
    const fs = yield* FileSystem.FileSystem
    return yield* runReplay({ files, speed }, publish, health, fs)
  })

const Env = Layer.merge(NodeContext.layer, Health.Default)

describe("replay source", () => {
  it.scoped("publishes two day files in order, skipping malformed lines with file and line number", () => {
    const logs = captureLogs()
    return Effect.gen(function* () {
      const day1 = [makeEvent("BTCUSDT", T0, "68000.10"), makeEvent("ETHUSDT", T0 + 1, "3500.00"), makeEvent("BTCUSDT", T0 + 2_000_000, "68001.20")]
      const day2 = [makeEvent("BTCUSDT", T0 + 86_400_000_000, "69000.00"), makeEvent("SOLUSDT", T0 + 86_400_000_001, "150.000")]
      const { dir, file } = yield* makeDir(
        {
          // written out of order: the replay sorts by name
          "2026-01-16.jsonl": [line(day2[0]!), "", `{"timestamp_utc":"2026-01-16T10:00:00Z","symbol":"btc usdt"}`, line(day2[1]!), `{"timestamp_utc":"2026-01-16T1`],
          "2026-01-15.jsonl": [line(day1[0]!), "{not json", line(day1[1]!), line(day1[2]!)],
          "notes.txt": ["not a day file"]
        },
        ["2026-01-16.jsonl"] // a torn last line, as a killed process leaves it
      )
      const spy = makeSpy()
      yield* replay(dir, 0, spy.publish)
      assert.deepStrictEqual(spy.all(), [...day1, ...day2].map(toTick))
      const warnings = logs.warnings()
      assert.strictEqual(warnings.length, 3, warnings.join("\n"))
      assert.match(warnings[0]!, new RegExp(`^replay: ${file("2026-01-15.jsonl")} line 2 is not a contract event \\(.+\\); skipped$`))
      assert.match(warnings[1]!, new RegExp(`^replay: ${file("2026-01-16.jsonl")} line 3 is not a contract event \\(.*symbol.*\\); skipped$`))
      assert.match(warnings[2]!, new RegExp(`^replay: ${file("2026-01-16.jsonl")} line 5 is not a contract event \\(.+\\); skipped$`))
      const last = logs.lines[logs.lines.length - 1]!
      assert.strictEqual(last.level, "Info")
      assert.strictEqual(last.message, "replay finished: 5 event(s) published, 3 malformed line(s) skipped, 2 file(s) read")
      const producer = yield* (yield* Health).producer
      assert.strictEqual(producer.state, "up")
      assert.sameMembers([...producer.symbols], ["BTCUSDT", "ETHUSDT", "SOLUSDT"])
    }).pipe(Effect.provide(Layer.merge(Env, logs.layer)))
  })

  it.scoped("at REPLAY_SPEED=0 publishes everything, in batches of at most 500, as fast as publish returns", () =>
    Effect.gen(function* () {
      const events = Array.from({ length: 1_234 }, (_, i) => makeEvent(i % 2 === 0 ? "BTCUSDT" : "ETHUSDT", T0 + i * 3_600_000_000))
      // a file larger than one 64 KiB read: lines cross chunk boundaries
      const { dir } = yield* makeDir({ "2026-01-15.jsonl": events.map(line) })
      const spy = makeSpy()
      yield* replay(dir, 0, spy.publish) // hours between events, yet no clock movement is needed
      assert.deepStrictEqual(
        spy.batches.map((b) => b.length),
        [REPLAY_BATCH, REPLAY_BATCH, 234]
      )
      assert.deepStrictEqual(spy.all(), events.map(toTick))
    }).pipe(Effect.provide(Env))
  )

  it.scoped("at REPLAY_SPEED=1 keeps the recorded pace by timestamp_utc (TestClock)", () =>
    Effect.gen(function* () {
      const events = [
        makeEvent("BTCUSDT", T0),
        makeEvent("BTCUSDT", T0 + 200_000),
        makeEvent("ETHUSDT", T0 + 1_000_000),
        makeEvent("BTCUSDT", T0 + 3_000_000),
        makeEvent("ETHUSDT", T0 + 2_000_000) // older than the one before: due at once
      ]
      const { dir } = yield* makeDir({ "2026-01-15.jsonl": events.map(line) })
      const spy = makeSpy()
      const fiber = yield* Effect.fork(replay(dir, 1, spy.publish))
      yield* untilSleeping
      assert.strictEqual(spy.all().length, 1)
      yield* TestClock.adjust("199 millis")
      assert.strictEqual(spy.all().length, 1)
      yield* TestClock.adjust("1 millis")
      yield* untilSleeping
      assert.strictEqual(spy.all().length, 2)
      yield* TestClock.adjust("800 millis")
      yield* untilSleeping
      assert.strictEqual(spy.all().length, 3)
      yield* TestClock.adjust("1999 millis")
      assert.strictEqual(spy.all().length, 3)
      yield* TestClock.adjust("1 millis")
      yield* Fiber.join(fiber)
      assert.deepStrictEqual(
        spy.batches.map((b) => b.length),
        [1, 1, 1, 2]
      )
      assert.deepStrictEqual(spy.all(), events.map(toTick))
    }).pipe(Effect.provide(Env))
  )

  it.scoped("at REPLAY_SPEED=4 takes a quarter of the recorded time", () =>
    Effect.gen(function* () {
      const events = Array.from({ length: 9 }, (_, i) => makeEvent("BTCUSDT", T0 + i * 500_000)) // 4 s recorded
      const { dir } = yield* makeDir({ "2026-01-15.jsonl": events.map(line) })
      const spy = makeSpy()
      const fiber = yield* Effect.fork(replay(dir, 4, spy.publish))
      let waited = 0
      while (yield* untilSleepingOrDone(fiber)) {
        yield* TestClock.adjust("125 millis")
        waited += 125
      }
      assert.strictEqual(waited, 1_000)
      assert.deepStrictEqual(spy.all(), events.map(toTick))
    }).pipe(Effect.provide(Env))
  )

  it.scoped("a stop request ends a paced replay while it waits; the batch in hand was published", () => {
    const logs = captureLogs()
    return Effect.gen(function* () {
      const events = [makeEvent("BTCUSDT", T0), makeEvent("BTCUSDT", T0 + 1), makeEvent("BTCUSDT", T0 + 3_600_000_000)]
      const { dir } = yield* makeDir({ "2026-01-15.jsonl": events.map(line) })
      const stop = yield* Deferred.make<void>()
      const spy = makeSpy()
      const fiber = yield* Effect.fork(replay(dir, 1, spy.publish).pipe(Effect.provideService(StopRequested, stop)))
      yield* untilSleeping
      yield* Deferred.succeed(stop, undefined)
      yield* Fiber.join(fiber) // without moving the clock
      assert.deepStrictEqual(spy.all(), events.slice(0, 2).map(toTick))
      assert.isTrue(logs.lines.some((l) => l.message.includes("comes 1h later at REPLAY_SPEED=1; waiting")))
      assert.strictEqual(
        logs.lines[logs.lines.length - 1]!.message,
        "replay stopped: 2 event(s) published, 0 malformed line(s) skipped, 0 file(s) read"
      )
    }).pipe(Effect.provide(Layer.merge(Env, logs.layer)))
  })

  it.scoped("a stop request during a fast replay ends it after the batch in flight", () =>
    Effect.gen(function* () {
      const events = Array.from({ length: 3_000 }, (_, i) => makeEvent("BTCUSDT", T0 + i))
      const { dir } = yield* makeDir({ "2026-01-15.jsonl": events.map(line) })
      const stop = yield* Deferred.make<void>()
      const spy = makeSpy((call) => (call === 2 ? Deferred.succeed(stop, undefined) : Effect.void))
      yield* replay(dir, 0, spy.publish).pipe(Effect.provideService(StopRequested, stop))
      assert.strictEqual(spy.calls(), 2)
      assert.deepStrictEqual(spy.all(), events.slice(0, 2 * REPLAY_BATCH).map(toTick))
    }).pipe(Effect.provide(Env))
  )

  it.scoped("retries a failed publish with the same events and shows the failure on /health", () =>
    Effect.gen(function* () {
      const events = [makeEvent("BTCUSDT", T0), makeEvent("ETHUSDT", T0 + 1)]
      const { dir } = yield* makeDir({ "2026-01-15.jsonl": events.map(line) })
      const spy = makeSpy((call) => (call === 1 ? Effect.fail({ message: "broker publish failed: kafka is down" }) : Effect.void))
      const health = yield* Health
      const fiber = yield* Effect.fork(replay(dir, 0, spy.publish))
      yield* untilSleeping
      assert.strictEqual((yield* health.producer).state, "down")
      assert.include((yield* health.producer).last_error, "kafka is down")
      yield* TestClock.adjust("1 second")
      yield* Fiber.join(fiber)
      assert.deepStrictEqual(spy.all(), events.map(toTick))
      assert.strictEqual((yield* health.producer).state, "up")
    }).pipe(Effect.provide(Env))
  )

  it.scoped("reads only what the day files held when they were listed", () =>
    Effect.gen(function* () {
      const { dir, fs, file } = yield* makeDir({ "2026-01-15.jsonl": [line(makeEvent("BTCUSDT", T0))] })
      const files = yield* listReplayFiles(dir)
      // the consumer appends to the same file meanwhile (REPLAY_DIR = RAW_DIR)
      yield* fs.writeFileString(file("2026-01-15.jsonl"), `${line(makeEvent("BTCUSDT", T0 + 1))}\n`, { flag: "a" })
      const spy = makeSpy()
      yield* runReplay({ files, speed: 0 }, spy.publish, yield* Health, fs)
      assert.deepStrictEqual(spy.all(), [toTick(makeEvent("BTCUSDT", T0))])
    }).pipe(Effect.provide(Env))
  )

  it.scoped("cannot start without day files: one line says why and what to do", () =>
    Effect.gen(function* () {
      const { dir, path } = yield* makeDir({ "notes.txt": ["x"] })
      const failure = (d: string) =>
        Effect.either(listReplayFiles(d)).pipe(Effect.map((e) => (Either.isLeft(e) ? `${e.left._tag}: ${e.left.message}` : "no error")))
      assert.strictEqual(
        yield* failure(dir),
        `ReplayUnavailable: SOURCE=replay cannot start: the replay directory ${dir} (REPLAY_DIR, by default RAW_DIR) holds no *.jsonl day file; record some first (SOURCE=poll or sim writes them to RAW_DIR), or set REPLAY_DIR.`
      )
      const missing = path.join(dir, "nope")
      assert.strictEqual(
        yield* failure(missing),
        `ReplayUnavailable: SOURCE=replay cannot start: the replay directory ${missing} (REPLAY_DIR, by default RAW_DIR) does not exist; set REPLAY_DIR to a directory of recorded YYYY-MM-DD.jsonl day files.`
      )
      assert.include(yield* failure(path.join(dir, "notes.txt")), "is not a directory")
      for (const message of [yield* failure(dir), yield* failure(missing)]) assert.notInclude(message, "\n")
    }).pipe(Effect.provide(Env))
  )
})

describe("ReplaySourceLive", () => {
  it.scoped("replays REPLAY_DIR through the Broker at REPLAY_SPEED, and fails to build without day files", () =>
    Effect.gen(function* () {
      const events = [makeEvent("BTCUSDT", T0), makeEvent("ETHUSDT", T0 + 5_000_000)]
      const { dir, path } = yield* makeDir({ "2026-01-15.jsonl": events.map(line) })
      const published: Array<Tick> = []
      const broker = Layer.succeed(
        Broker,
        // the spy takes ticks, as Broker.publish does
        Broker.of({ publish: ((ticks: ReadonlyArray<Tick>) => Effect.sync(() => void published.push(...ticks))) as never } as never)
      )
      const live = ReplaySourceLive.pipe(Layer.provide(Layer.mergeAll(broker, Env)))
      const source = yield* MarketSource.pipe(Effect.provide(live), withEnv({ REPLAY_DIR: dir, REPLAY_SPEED: "0" }))
      assert.strictEqual(source.name, "replay")
      yield* source.run
      assert.deepStrictEqual(published, events.map(toTick))

      // RAW_DIR is the default
      const fromRaw = yield* MarketSource.pipe(Effect.provide(live), withEnv({ RAW_DIR: dir, REPLAY_SPEED: "0" }))
      yield* fromRaw.run
      assert.strictEqual(published.length, 4)

      const empty = path.join(dir, "empty")
      yield* (yield* FileSystem.FileSystem).makeDirectory(empty)
      const failed = yield* Effect.either(MarketSource.pipe(Effect.provide(live), withEnv({ REPLAY_DIR: empty })))
      assert.isTrue(Either.isLeft(failed) && failed.left._tag === "ReplayUnavailable")
    }).pipe(Effect.provide(NodeContext.layer))
  )
})
