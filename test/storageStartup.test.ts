import { NodeContext } from "@effect/platform-node"
import { assert, describe, it } from "@effect/vitest"
import { Cause, Effect, Exit, Layer } from "effect"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { afterAll, beforeAll, expect, it as vit } from "vitest"
import { sqliteLayer } from "../src/store/Sql.js"
import { TickRepo } from "../src/store/TickRepo.js"
import { TickWriter } from "../src/store/TickWriter.js"
import { makeTick, us } from "./support/events.js"
import { freePort, mainJs } from "./support/process.js"
import { type Finished, lockDatabase, readOnlyMount, runToExit, sha256 } from "./support/storageFaults.js"

let dir: string
beforeAll(() => {
  if (!fs.existsSync(mainJs)) throw new Error("dist/main.js is missing: run `npm run build` (npm test does it first)")
  dir = fs.mkdtempSync(path.join(os.tmpdir(), "storage-startup-"))
})
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }))

const t0 = us("2026-01-15T14:00:00Z")
const batch = [makeTick("BTCUSDT", t0, "100.10"), makeTick("ETHUSDT", t0, "2000.20")]

/** A migrated database holding `batch`, closed again (or kept open for `whileOpen`). */
const makeDatabase = (file: string, whileOpen: () => void = () => {}) =>
  Effect.runPromise(
    Effect.gen(function* () {
      const repo = yield* TickWriter
      yield* repo.insertMany(batch)
      whileOpen()
    }).pipe(Effect.provide(Layer.merge(TickRepo.Default, TickWriter.Default).pipe(Layer.provideMerge(sqliteLayer(file)))), Effect.provide(NodeContext.layer))
  )

/** `node dist/main.js --role=all` on `storagePath`, with nothing reachable on the internet. */
const start = async (storagePath: string, boundMs = 15_000) =>
  runToExit(
    ["--role=all"],
    {
      BINANCE_BASE_URL: "http://127.0.0.1:1",
      HOST: "127.0.0.1",
      PORT: String(await freePort()),
      RAW_DIR: fs.mkdtempSync(path.join(dir, "raw-")),
      STORAGE_PATH: storagePath
    },
    boundMs
  )

/** Exit 1, exactly `line` on stderr, and no stack trace anywhere in the output. */
const expectOneLine = (run: Finished, line: string) => {
  const all = `${run.stdout}\n${run.stderr}`
  expect(run.code, all).toBe(1)
  expect(run.stderr.trimEnd().split("\n"), all).toEqual([line])
  expect(all).not.toMatch(/SqliteError|^\s+at \S/m)
}

const siblings = (file: string) =>
  ["-wal", "-shm", "-journal"].map((suffix) => `${file}${suffix}`).filter((f) => fs.existsSync(f))

describe("node dist/main.js with unusable storage exits 1 with one line", () => {
  vit("a directory as STORAGE_PATH", async () => {
    const storage = fs.mkdtempSync(path.join(dir, "a-directory-"))
    const run = await start(storage)
    expectOneLine(
      run,
      `Storage error: STORAGE_PATH=${storage} cannot be used: it is a directory; set STORAGE_PATH to a file path such as data/app.db.`
    )
    expect(fs.readdirSync(storage)).toEqual([])
    expect(siblings(storage)).toEqual([])
  })

  vit("a text file, left byte for byte untouched with no -wal, -shm or -journal next to it", async () => {
    const storage = path.join(dir, "notes.txt")
    fs.writeFileSync(storage, "these are my notes, not a database\n".repeat(20))
    const before = sha256(storage)
    const run = await start(storage)
    expectOneLine(
      run,
      `Storage error: STORAGE_PATH=${storage} cannot be used: it is not a SQLite database (file is not a database), so it was left untouched; set STORAGE_PATH to the platform's database or to a new file path such as data/app.db.`
    )
    expect(sha256(storage)).toBe(before)
    expect(siblings(storage)).toEqual([])
  })

  vit("a new database in a directory on a read-only filesystem", async () => {
    const mount = await readOnlyMount()
    try {
      for (const storage of [path.join(mount.dir, "app.db"), path.join(mount.dir, "nested", "app.db")]) {
        const run = await start(storage)
        expectOneLine(
          run,
          `Storage error: STORAGE_PATH=${storage} cannot be used: ${mount.dir} is on a read-only file system, so the database cannot be created; mount it read-write or set STORAGE_PATH to a path on a writable disk.`
        )
      }
      expect(fs.readdirSync(mount.dir)).toEqual([])
    } finally {
      mount.release()
    }
  })

  vit("an existing database on a read-only filesystem, closed cleanly or with its -wal and -shm files", async () => {
    const mount = await readOnlyMount(async (mounted) => {
      await makeDatabase(path.join(mounted, "app.db"))
      // A copy taken while the database was open: its -wal holds the rows and its -shm exists.
      const open = path.join(mounted, "open.db")
      await makeDatabase(open, () => {
        for (const suffix of ["", "-wal", "-shm"]) fs.copyFileSync(`${open}${suffix}`, path.join(mounted, `dirty.db${suffix}`))
      })
    })
    try {
      for (const name of ["app.db", "dirty.db"]) {
        const storage = path.join(mount.dir, name)
        const before = sha256(storage)
        const run = await start(storage)
        expectOneLine(
          run,
          `Storage error: STORAGE_PATH=${storage} cannot be used: it is on a read-only file system (SQLite writes the database and its -wal and -shm files next to it); mount it read-write, or copy the database to a writable disk and set STORAGE_PATH to the copy.`
        )
        expect(sha256(storage)).toBe(before)
      }
    } finally {
      mount.release()
    }
  })

  describe.concurrent("a database another process holds the write lock of", () => {
    const lockedLine = (storage: string) =>
      `Storage error: STORAGE_PATH=${storage} cannot be used: another process holds its write lock (waited 5 s); stop the other writer or point STORAGE_PATH elsewhere.`

    vit("a migrated WAL database: waits its 5 s busy timeout, then says so", async () => {
      const storage = path.join(dir, "locked-wal.db")
      await makeDatabase(storage)
      const locker = lockDatabase(storage)
      try {
        await locker.locked
        const before = sha256(storage)
        const run = await start(storage, 25_000)
        expectOneLine(run, lockedLine(storage))
        expect(run.elapsedMs, "it gave up before waiting the busy timeout").toBeGreaterThanOrEqual(4_500)
        expect(sha256(storage)).toBe(before)
      } finally {
        await locker.kill()
      }
    }, 40_000)

    vit("a database in rollback-journal mode, locked before the platform ever opened it", async () => {
      const storage = path.join(dir, "locked-rollback.db")
      const locker = lockDatabase(storage)
      try {
        await locker.locked
        const run = await start(storage, 25_000)
        expectOneLine(run, lockedLine(storage))
        expect(run.elapsedMs, "it gave up before waiting the busy timeout").toBeGreaterThanOrEqual(4_500)
      } finally {
        await locker.kill()
      }
    }, 40_000)
  })
})

/** Records the longest pause of the event loop (a 10 ms timer's lateness) while it runs. */
const loopWatch = () => {
  let last = Date.now()
  let longest = 0
  const timer = setInterval(() => {
    const now = Date.now()
    longest = Math.max(longest, now - last)
    last = now
  }, 10)
  return {
    stop: () => {
      clearInterval(timer)
      return Math.max(longest, Date.now() - last)
    }
  }
}

const sqliteCodes = (cause: Cause.Cause<unknown>) =>
  Cause.failures(cause).pipe((errors) =>
    Array.from(errors).map((e) => String((e as { cause?: { code?: unknown } }).cause?.code ?? (e as { _tag?: string })._tag))
  )

describe("an in-memory STORAGE_PATH", () => {
  it.effect("is refused at start with one sentence: the platform's connections would each see another, empty database", () =>
    Effect.gen(function* () {
      const exit = yield* Effect.exit(Layer.build(sqliteLayer(":memory:")).pipe(Effect.scoped))
      assert.isTrue(Exit.isFailure(exit))
      if (Exit.isFailure(exit)) {
        const [error] = Cause.failures(exit.cause)
        assert.strictEqual(error?._tag, "StorageUnavailable")
        assert.include(error?.message, "STORAGE_PATH=:memory: cannot be used")
      }
    })
  )
})

describe("SQLite under another process's write lock (in process)", () => {
  it.live("start-up waits for the lock with the event loop free, and starts once it is released", () =>
    Effect.gen(function* () {
      const file = path.join(dir, "briefly-locked.db")
      yield* Effect.promise(() => makeDatabase(file))
      const locker = lockDatabase(file, { holdMs: 1_500 })
      yield* Effect.addFinalizer(() => Effect.promise(locker.kill))
      yield* Effect.promise(() => locker.locked)
      const watch = loopWatch()
      const started = Date.now()
      const added = yield* Effect.gen(function* () {
        const repo = yield* TickWriter
        return (yield* repo.insertMany([makeTick("SOLUSDT", t0, "150.00")])).length
      }).pipe(Effect.provide(Layer.merge(TickRepo.Default, TickWriter.Default).pipe(Layer.provideMerge(sqliteLayer(file)))), Effect.ensuring(Effect.sync(() => watch.stop())))
      const waited = Date.now() - started
      const longestPause = watch.stop()
      assert.strictEqual(added, 1)
      assert.isAtLeast(waited, 1_000, "start-up did not wait for the other process's lock")
      assert.isBelow(longestPause, 500, `the event loop froze for ${longestPause} ms while waiting for the lock`)
    }).pipe(Effect.scoped)
  , 20_000)

  it.live("after start-up a write under the lock fails fast with SQLITE_BUSY (no 5 s freeze) and succeeds once it is released", () =>
    Effect.gen(function* () {
      const file = path.join(dir, "locked-after-start.db")
      yield* Effect.gen(function* () {
        const repo = yield* TickWriter
        yield* repo.insertMany(batch)
        const locker = lockDatabase(file)
        yield* Effect.promise(() => locker.locked)
        const started = Date.now()
        const exit = yield* Effect.exit(repo.insertMany([makeTick("SOLUSDT", t0, "150.00")])).pipe(
          Effect.ensuring(Effect.promise(locker.kill))
        )
        const tookMs = Date.now() - started
        assert.isTrue(Exit.isFailure(exit), "the write succeeded under another process's write lock")
        if (Exit.isFailure(exit)) assert.deepStrictEqual(sqliteCodes(exit.cause), ["SQLITE_BUSY"])
        assert.isBelow(tookMs, 1_000, `the write under the lock took ${tookMs} ms to fail (a long synchronous busy wait)`)
        assert.strictEqual((yield* repo.insertMany([makeTick("SOLUSDT", t0, "150.00")])).length, 1)
      }).pipe(Effect.provide(Layer.merge(TickRepo.Default, TickWriter.Default).pipe(Layer.provideMerge(sqliteLayer(file)))))
    })
  , 20_000)
})
