import { HttpServer } from "@effect/platform"
import { afterAll, describe, expect, it } from "@effect/vitest"
import { ConfigProvider, Effect, Layer, ManagedRuntime } from "effect"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { ANSWER_MAX_BYTES, ANSWER_TTL_MS, AnswerCache, jsonAnswer } from "../src/api/AnswerCache.js"
import { listeningServer } from "../src/api/NodeServer.js"
import { Health } from "../src/status/Health.js"
import { sqliteStore } from "../src/store/Store.js"
import { TickWriter } from "../src/store/TickWriter.js"
import { makeTick, us } from "./support/events.js"

const dir = fs.mkdtempSync(path.join(os.tmpdir(), "hot-"))
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }))

/** The server as the roles run it on a free loopback port, with `env` as configuration. */
const start = (name: string, env: Record<string, string> = {}) => {
  const runtime = ManagedRuntime.make(
    listeningServer({ port: 0, host: "127.0.0.1" }).pipe(
      Layer.provideMerge(Health.Default),
      Layer.provideMerge(sqliteStore(path.join(dir, `${name}.db`))),
      Layer.provide(Layer.setConfigProvider(ConfigProvider.fromMap(new Map(Object.entries({ SYMBOLS: "BTCUSDT", ...env })))))
    )
  )
  const base = runtime.runPromise(
    Effect.map(HttpServer.HttpServer, (s) => `http://127.0.0.1:${(s.address as HttpServer.TcpAddress).port}`)
  )
  return { runtime, base }
}

/** Polls `condition` in real time until it holds or `timeoutMs` passed; returns whether it held. */
const eventually = async (condition: () => boolean, timeoutMs: number) => {
  const deadline = Date.now() + timeoutMs
  while (!condition()) {
    if (Date.now() > deadline) return false
    await new Promise((r) => setTimeout(r, 20))
  }
  return true
}

/** The answer cache the running server's handlers use. */
const cacheOf = (runtime: ReturnType<typeof start>["runtime"]) => runtime.runPromise(AnswerCache)

const HOT_MAX_BYTES = ANSWER_MAX_BYTES.live
const HOT_TTL_MS = ANSWER_TTL_MS.live

describe("answer cache for /trades/latest, inside the pipeline", () => {
  it("answers a repeated request from memory with the pipeline's bytes and headers, and new data at once", async () => {
    const { base, runtime } = start("open")
    try {
      await runtime.runPromise(
        Effect.flatMap(TickWriter, (r) => r.insertMany([makeTick("BTCUSDT", us("2026-03-05T12:00:00Z"), "1.00")]))
      )
      const url = "/trades/latest?symbol=BTCUSDT&limit=5"
      const cache = await cacheOf(runtime)
      expect(cache.size().entries).toBe(0)

      const first = await fetch(`${await base}${url}`)
      const text = await first.text()
      expect(first.status).toBe(200)
      expect(cache.size().entries).toBe(1)
      const hits = cache.size().hits
      // a second request over the socket gets the same bytes and headers, from the cache
      const second = await fetch(`${await base}${url}`)
      expect(await second.text()).toBe(text)
      expect(cache.size().hits).toBe(hits + 1)
      for (const name of ["content-type", "content-length", "x-content-type-options", "x-frame-options", "referrer-policy", "content-security-policy"]) {
        expect(second.headers.get(name), name).toBe(first.headers.get(name))
      }

      // new data shows on the next request, without waiting for the answer to expire
      await runtime.runPromise(
        Effect.flatMap(TickWriter, (r) => r.insertMany([makeTick("BTCUSDT", us("2026-03-05T12:01:00Z"), "2.00")]))
      )
      const fresh = JSON.parse(await (await fetch(`${await base}${url}`)).text())
      expect(fresh.map((e: { lastPrice: string }) => e.lastPrice)).toEqual(["2.00", "1.00"])
      expect(cache.size().hits).toBe(hits + 1)
    } finally {
      await runtime.dispose()
    }
  })

  it("applies API keys to cached answers: a kept answer never reaches a client without a key", async () => {
    const key = "a-long-enough-test-key-123"
    const { base, runtime } = start("keyed", { API_KEYS: key })
    try {
      const url = "/trades/latest?symbol=BTCUSDT"
      const keyed = await fetch(`${await base}${url}`, { headers: { "x-api-key": key } })
      expect(keyed.status).toBe(200)
      const cache = await cacheOf(runtime)
      expect(cache.size().entries).toBe(1)
      const hits = cache.size().hits
      expect((await fetch(`${await base}${url}`)).status).toBe(401)
      expect((await fetch(`${await base}${url}`, { headers: { "x-api-key": "wrong-key-wrong-key-wrong" } })).status).toBe(401)
      expect(cache.size().hits).toBe(hits)
      // the cache serves keyed clients as it serves everyone
      const again = await fetch(`${await base}${url}`, { headers: { "x-api-key": key } })
      expect(again.status).toBe(200)
      expect(await again.text()).toBe(await keyed.text())
      expect(cache.size().hits).toBe(hits + 1)
    } finally {
      await runtime.dispose()
    }
  })

  it("applies the rate limit to cached answers", async () => {
    const { base, runtime } = start("limited", { RATE_LIMIT_PER_MINUTE: "60", RATE_LIMIT_BURST: "2" })
    try {
      const url = "/trades/latest?symbol=BTCUSDT"
      const statuses: Array<number> = []
      for (let i = 0; i < 3; i++) statuses.push((await fetch(`${await base}${url}`)).status)
      expect(statuses).toEqual([200, 200, 429])
      expect((await cacheOf(runtime)).size().hits).toBe(1)
    } finally {
      await runtime.dispose()
    }
  })

  it("holds at most its budget whatever the URLs, never an answer larger than that, and frees expired answers on time", async () => {
    const { runtime } = start("bounded")
    try {
      const cache = await cacheOf(runtime)
      const body = jsonAnswer(`[${"x".repeat(100 * 1024)}]`)
      const url = (i: number) => `/trades/latest?symbol=BTCUSDT&limit=1000&n=${i}`
      for (let i = 0; i < 3000; i++) {
        cache.remember("live", url(i), "v1", body)
        const { bytes } = cache.size().live
        if (bytes > HOT_MAX_BYTES) expect.fail(`${bytes} bytes held after ${i + 1} answers, more than ${HOT_MAX_BYTES}`)
      }
      const full = cache.size().live
      expect(full.entries).toBeGreaterThan(10)
      expect(full.bytes).toBeGreaterThan(HOT_MAX_BYTES / 2)
      // the newest answers are the ones kept, and only at the version they were built at
      expect(cache.kept("live", url(2999), "v1")).toBeDefined()
      expect(cache.kept("live", url(0), "v1")).toBeUndefined()
      expect(cache.kept("live", url(2998), "v2")).toBeUndefined()

      // an answer larger than the whole budget is not kept, and drops the older answer to its URL
      cache.remember("live", url(2999), "v1", jsonAnswer("y".repeat(HOT_MAX_BYTES + 1)))
      expect(cache.kept("live", url(2999), "v1")).toBeUndefined()
      expect(cache.size().live.bytes).toBeLessThanOrEqual(HOT_MAX_BYTES)

      // with no request at all, every answer is gone once its TTL passed
      expect(cache.size().live.entries).toBeGreaterThan(0)
      expect(await eventually(() => cache.size().live.entries === 0, HOT_TTL_MS + 2000)).toBe(true)
      expect(cache.size().live).toEqual({ entries: 0, bytes: 0 })
    } finally {
      await runtime.dispose()
    }
  })

  it("stays bounded when the pipeline answers many distinct URLs over the socket", async () => {
    const { base, runtime } = start("many")
    try {
      const t0 = us("2026-03-05T00:00:00Z")
      await runtime.runPromise(
        Effect.flatMap(TickWriter, (r) =>
          r.insertMany(Array.from({ length: 1000 }, (_, i) => makeTick("BTCUSDT", t0 + i * 60_000_000, `${i}.00`)))
        )
      )
      const cache = await cacheOf(runtime)
      let answered = 0
      for (let i = 0; i < 120; i++) {
        const res = await fetch(`${await base}/trades/latest?symbol=BTCUSDT&limit=1000&page=${i}`)
        answered += (await res.arrayBuffer()).byteLength
        expect(cache.size().live.bytes).toBeLessThanOrEqual(HOT_MAX_BYTES)
      }
      expect(answered).toBeGreaterThan(2 * HOT_MAX_BYTES)
      expect(cache.size().live.entries).toBeGreaterThan(0)
      expect(await eventually(() => cache.size().live.entries === 0, HOT_TTL_MS + 2000)).toBe(true)
    } finally {
      await runtime.dispose()
    }
  })
})
