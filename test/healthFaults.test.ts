import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { type FakeBinance, startFakeBinance } from "./support/fakeBinance.js"
import { mountTmpfs } from "./support/mounts.js"
import { getJson, mainJs, type RunningMain, startRoleAll, waitFor } from "./support/process.js"
import { lockDatabase } from "./support/storageFaults.js"
import { fillDisk } from "./support/tmpfs.js"

let fake: FakeBinance
let dir: string
const running: Array<RunningMain> = []
beforeAll(async () => {
  if (!fs.existsSync(mainJs)) throw new Error("dist/main.js is missing: run `npm run build` (npm test does it first)")
  fake = await startFakeBinance()
  dir = fs.mkdtempSync(path.join(os.tmpdir(), "health-faults-"))
})
afterAll(async () => {
  for (const main of running) main.child.kill("SIGKILL")
  await fake.close()
  fs.rmSync(dir, { recursive: true, force: true })
})

const start = async (name: string, env: Record<string, string> = {}) => {
  // The ticker pipeline's faults: the stream (test/stream.test.ts) is left out.
  const started = await startRoleAll(fake.url, path.join(dir, name), { POLL_INTERVAL_SECONDS: "0.2", SOURCE: "poll", ...env })
  running.push(started.main)
  return started
}

const stop = async (main: RunningMain) => {
  main.child.kill("SIGTERM")
  return main.exited
}

/** /health once it satisfies `check`; fails with the last report after `timeoutMs`. */
const healthWhen = async (base: string, check: (report: any) => boolean, what: string, timeoutMs = 20_000) => {
  let last: unknown
  try {
    return await waitFor(
      async () => {
        const res = await getJson(`${base}/health`)
        last = res
        return res !== undefined && check(res) ? res : undefined
      },
      timeoutMs,
      what
    )
  } catch (e) {
    throw new Error(`${String(e)}; last /health: ${JSON.stringify(last)}`)
  }
}

const sink = (report: any, name: string) => report.body.components.store.sinks.find((s: any) => s.name === name)

describe("/health reports what is true", () => {
  it("reports the newest stored event and its age while everything works", async () => {
    const { main, base } = await start("healthy")
    const ok = await healthWhen(
      base,
      (r) => r.body.components.store.newest_event_at !== null && r.body.components.store.sinks.length === 2,
      "a batch stored by both sinks"
    )
    expect(ok.status).toBe(200)
    expect(ok.body.status).toBe("ok")
    const store = ok.body.components.store
    expect(store.state).toBe("up")
    expect(store.newest_event_age_seconds).toBeGreaterThanOrEqual(0)
    expect(store.newest_event_age_seconds).toBeLessThan(60)
    expect(store.sinks.map((s: any) => [s.name, s.state])).toEqual([
      ["sqlite", "up"],
      ["jsonl", "up"]
    ])
    expect(await stop(main)).toBe(0)
  })

  describe("with the raw log on a full disk", () => {
    let mount: ReturnType<typeof mountTmpfs>
    beforeAll(() => {
      mount = mountTmpfs("256k", { dir: path.join(dir, "full") })
    })
    afterAll(() => mount?.unmount())

    it("says the jsonl sink is down with the reason and since when, the producer blocked once the queue is full, and recovers when space is freed", async () => {
      const filler = path.join(mount.dir, "filler")
      const { main, base } = await start("raw-disk-full", {
        RAW_DIR: path.join(mount.dir, "raw"),
        // what the queue and the batch being collected hold before the producer has to wait
        DIRECT_QUEUE_CAPACITY: "4",
        CONSUMER_BATCH_SIZE: "4"
      })
      await healthWhen(base, (r) => sink(r, "jsonl")?.state === "up", "a first stored batch")
      fillDisk(filler)

      const down = await healthWhen(base, (r) => r.body.components.store.state === "down", "the store down")
      expect(down.status, JSON.stringify(down.body)).toBe(503)
      expect(down.body.status).toBe("down")
      const jsonl = sink(down, "jsonl")
      expect(jsonl.detail).toMatch(/no space left on device/i)
      expect(Date.parse(jsonl.since)).not.toBeNaN()
      expect(down.body.components.store.since, JSON.stringify(down.body.components.store)).toBe(jsonl.since)
      expect(down.body.components.store.detail).toMatch(/no space left on device/i)
      expect(sink(down, "sqlite").state).toBe("up")

      // The consumer holds the failing batch; the small queue fills and the producer waits.
      await healthWhen(base, (r) => r.body.components.producer.state === "blocked", "the producer blocked")
      await new Promise((r) => setTimeout(r, 1000))
      const blocked = (await getJson(`${base}/health`))!
      expect(blocked.body.components.producer.state).toBe("blocked")
      expect(blocked.body.components.producer.last_error).toMatch(/broker has not taken/)
      await new Promise((r) => setTimeout(r, 1500))
      const later = (await getJson(`${base}/health`))!
      expect(later.body.components.producer.state).toBe("blocked")
      // no poll completes while blocked, and nothing new is stored: the newest event only gets older
      expect(later.body.components.producer.last_success_at, JSON.stringify([blocked.body.components.producer, later.body.components.producer])).toBe(blocked.body.components.producer.last_success_at)
      expect(later.body.components.store.newest_event_age_seconds).toBeGreaterThan(blocked.body.components.store.newest_event_age_seconds)

      fs.rmSync(filler)
      const recovered = await healthWhen(base, (r) => r.status === 200, "recovery once space is free")
      expect(recovered.body.components.store.state).toBe("up")
      expect(sink(recovered, "jsonl").state).toBe("up")
      expect(await stop(main)).toBe(0)
    })
  })

  describe("with the raw log's directory read-only", () => {
    let mount: ReturnType<typeof mountTmpfs>
    beforeAll(() => {
      mount = mountTmpfs("256k", { dir: path.join(dir, "ro"), mode: "ro" })
    })
    afterAll(() => mount?.unmount())

    it("says the jsonl sink is down with the reason", async () => {
      const { main, base } = await start("read-only", { RAW_DIR: mount.dir })
      const down = await healthWhen(base, (r) => sink(r, "jsonl")?.state === "down", "the jsonl sink down")
      expect(down.status).toBe(503)
      expect(sink(down, "jsonl").detail).toMatch(/read-only file system/i)
      expect(sink(down, "sqlite").state).toBe("up")
      expect(await stop(main)).toBe(0)
    })
  })

  describe("with the database on a full disk", () => {
    let mount: ReturnType<typeof mountTmpfs>
    beforeAll(() => {
      mount = mountTmpfs("2m", { dir: path.join(dir, "dbfull") })
    })
    afterAll(() => mount?.unmount())

    it("says the sqlite sink is down and keeps running (a full disk at COMMIT is retried, not fatal)", async () => {
      const filler = path.join(mount.dir, "filler")
      const { main, base } = await start("db-full", { STORAGE_PATH: path.join(mount.dir, "app.db"), POLL_INTERVAL_SECONDS: "0.1" })
      await healthWhen(base, (r) => sink(r, "sqlite")?.state === "up", "a first stored batch")
      fillDisk(filler)
      const down = await healthWhen(base, (r) => sink(r, "sqlite")?.state === "down", "the sqlite sink down")
      expect(down.status).toBe(503)
      expect(sink(down, "sqlite").detail).toMatch(/full/i)
      fs.rmSync(filler)
      await healthWhen(base, (r) => r.status === 200 && sink(r, "sqlite")?.state === "up", "recovery")
      expect(await stop(main)).toBe(0)
    })
  })
})

describe("/health under another process's write lock", () => {
  it("answers within its deadline, says the store is down while locked, and recovers", async () => {
    const { main, base } = await start("locked")
    const dbFile = path.join(dir, "locked", "app.db")
    await healthWhen(base, (r) => sink(r, "sqlite")?.state === "up", "a first stored batch")
    const locker = lockDatabase(dbFile, { holdMs: 8000 })
    await locker.locked
    let released = false
    void locker.released.then(() => (released = true))
    const slowest = { ms: 0 }
    const down = await healthWhen(
      base,
      (r) => sink(r, "sqlite")?.state === "down",
      "the sqlite sink down while locked"
    )
    // the probe keeps answering while the lock is held: each answer within the 1 s store deadline and a margin
    for (let i = 0; i < 5; i++) {
      const t = Date.now()
      await getJson(`${base}/health`)
      slowest.ms = Math.max(slowest.ms, Date.now() - t)
    }
    expect(released, "the lock was released before the probes ran").toBe(false)
    expect(slowest.ms).toBeLessThan(1500)
    expect(down.status).toBe(503)
    expect(sink(down, "sqlite").detail).toMatch(/locked/i)
    await locker.released
    await healthWhen(base, (r) => r.status === 200 && sink(r, "sqlite")?.state === "up", "recovery once the lock is gone")
    expect(await stop(main)).toBe(0)
  })
})

describe("a Binance ban across a restart", () => {
  it("sends no request before the ban ends after a restart, while /health/live stays 200", async () => {
    const count = () => fake.requests.filter((r) => r.path === "/api/v3/ticker/24hr").length
    fake.enqueueFaults({ kind: "status", status: 418, retryAfterSeconds: 30 })
    const first = await start("ban", { POLL_INTERVAL_SECONDS: "1" })
    const banned = await healthWhen(first.base, (r) => r.body.components.producer.rate_limited_until !== null, "the ban seen")
    expect(banned.body.components.producer.last_error).toMatch(/418/)
    const before = count()
    expect(await stop(first.main)).toBe(0)

    const second = await start("ban", { POLL_INTERVAL_SECONDS: "1" })
    const report = await healthWhen(second.base, (r) => r.body.components.producer.rate_limited_until !== null, "the ban remembered")
    expect(report.body.components.producer.rate_limited_until).toBe(banned.body.components.producer.rate_limited_until)
    expect(report.status).toBe(503)
    expect((await getJson(`${second.base}/health/live`))!.status).toBe(200)
    await new Promise((r) => setTimeout(r, 3000))
    expect(count()).toBe(before)
    expect(await stop(second.main)).toBe(0)
  })
})
