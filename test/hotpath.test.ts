import { HttpServer } from "@effect/platform"
import { afterAll, describe, expect, it } from "@effect/vitest"
import { ConfigProvider, Effect, Layer, ManagedRuntime } from "effect"
import * as fs from "node:fs"
import type { IncomingMessage, ServerResponse } from "node:http"
import * as os from "node:os"
import * as path from "node:path"
import { HOT_MAX_BYTES, HOT_TTL_MS, HotResponses } from "../src/api/HotPath.js"
import { listeningServer } from "../src/api/NodeServer.js"
import { Health } from "../src/status/Health.js"
import { sqliteLayer } from "../src/store/Sql.js"
import { TickRepo } from "../src/store/TickRepo.js"
import { TickWriter } from "../src/store/TickWriter.js"
import { makeTick, us } from "./support/events.js"

const dir = fs.mkdtempSync(path.join(os.tmpdir(), "hot-"))
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }))

/** The server as the roles run it (hot path included) on a free loopback port, with `env` as configuration. */
const start = (name: string, env: Record<string, string> = {}) => {
  const runtime = ManagedRuntime.make(
    listeningServer({ port: 0, host: "127.0.0.1" }).pipe(
      Layer.provideMerge(Layer.mergeAll(TickRepo.Default, TickWriter.Default, Health.Default)),
      Layer.provideMerge(sqliteLayer(path.join(dir, `${name}.db`))),
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

/** What the hot path alone would answer for `url`, by calling it directly. */
const hotAnswer = (hot: HotResponses, url: string) => {
  let status = 0
  let headers: Record<string, unknown> = {}
  let body = ""
  const served = hot.tryServe({ method: "GET", url } as IncomingMessage, {
    writeHead: (s: number, h: Record<string, unknown>) => {
      status = s
      headers = h
    },
    end: (b: Buffer) => {
      body = b.toString("utf8")
    }
  } as unknown as ServerResponse)
  return { served, status, headers, body }
}

describe("hot path for /trades/latest", () => {
  it("answers a repeated request from memory with the pipeline's bytes and headers, for at most a second", async () => {
    const { base, runtime } = start("open")
    try {
      await runtime.runPromise(
        Effect.flatMap(TickWriter, (r) => r.insertMany([makeTick("BTCUSDT", us("2026-03-05T12:00:00Z"), "1.00")]))
      )
      const url = "/trades/latest?symbol=BTCUSDT&limit=5"
      const hot = await runtime.runPromise(HotResponses)
      expect(hotAnswer(hot, url).served).toBe(false)

      const first = await fetch(`${await base}${url}`)
      const text = await first.text()
      expect(first.status).toBe(200)
      const answer = hotAnswer(hot, url)
      expect(answer.served).toBe(true)
      expect(answer.body).toBe(text)
      for (const name of ["content-type", "x-content-type-options", "x-frame-options", "referrer-policy", "content-security-policy"]) {
        expect(answer.headers[name], name).toBe(first.headers.get(name))
      }
      // a second request over the socket gets the same bytes
      expect(await (await fetch(`${await base}${url}`)).text()).toBe(text)

      // new data shows once the remembered answer expired
      await runtime.runPromise(
        Effect.flatMap(TickWriter, (r) => r.insertMany([makeTick("BTCUSDT", us("2026-03-05T12:01:00Z"), "2.00")]))
      )
      await new Promise((r) => setTimeout(r, HOT_TTL_MS + 50))
      expect(hotAnswer(hot, url).served).toBe(false)
      const fresh = JSON.parse(await (await fetch(`${await base}${url}`)).text())
      expect(fresh.map((e: { lastPrice: string }) => e.lastPrice)).toEqual(["2.00", "1.00"])
    } finally {
      await runtime.dispose()
    }
  })

  it("stays off when a setting needs a decision per request (API keys)", async () => {
    const key = "a-long-enough-test-key-123"
    const { base, runtime } = start("keyed", { API_KEYS: key })
    try {
      const url = "/trades/latest?symbol=BTCUSDT"
      const keyed = await fetch(`${await base}${url}`, { headers: { "x-api-key": key } })
      expect(keyed.status).toBe(200)
      const hot = await runtime.runPromise(HotResponses)
      expect(hot.enabled).toBe(false)
      expect(hotAnswer(hot, url).served).toBe(false)
      expect((await fetch(`${await base}${url}`)).status).toBe(401)
    } finally {
      await runtime.dispose()
    }
  })

  it("holds at most HOT_MAX_BYTES whatever the URLs, never an answer larger than that, and frees expired answers on time", async () => {
    const runtime = ManagedRuntime.make(
      HotResponses.Default.pipe(Layer.provide(Layer.setConfigProvider(ConfigProvider.fromMap(new Map()))))
    )
    try {
      const hot = await runtime.runPromise(HotResponses)
      const body = `[${"x".repeat(100 * 1024)}]`
      for (let i = 0; i < 3000; i++) {
        await Effect.runPromise(hot.remember(`/trades/latest?symbol=BTCUSDT&limit=1000&n=${i}`, body))
        const { bytes } = hot.size()
        if (bytes > HOT_MAX_BYTES) expect.fail(`${bytes} bytes held after ${i + 1} answers, more than ${HOT_MAX_BYTES}`)
      }
      const full = hot.size()
      expect(full.entries).toBeGreaterThan(10)
      expect(full.bytes).toBeGreaterThan(HOT_MAX_BYTES / 2)
      // the newest answers are the ones kept
      expect(hotAnswer(hot, "/trades/latest?symbol=BTCUSDT&limit=1000&n=2999").served).toBe(true)
      expect(hotAnswer(hot, "/trades/latest?symbol=BTCUSDT&limit=1000&n=0").served).toBe(false)

      // an answer larger than the whole budget is not kept, and drops the older answer to its URL
      const huge = "/trades/latest?symbol=BTCUSDT&limit=1000&n=2999"
      await Effect.runPromise(hot.remember(huge, "y".repeat(HOT_MAX_BYTES + 1)))
      expect(hotAnswer(hot, huge).served).toBe(false)
      expect(hot.size().bytes).toBeLessThanOrEqual(HOT_MAX_BYTES)

      // with no request at all, every answer is gone once its TTL passed
      expect(hot.size().entries).toBeGreaterThan(0)
      expect(await eventually(() => hot.size().entries === 0, HOT_TTL_MS + 2000)).toBe(true)
      expect(hot.size()).toEqual({ entries: 0, bytes: 0 })
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
      const hot = await runtime.runPromise(HotResponses)
      let answered = 0
      for (let i = 0; i < 120; i++) {
        const res = await fetch(`${await base}/trades/latest?symbol=BTCUSDT&limit=1000&page=${i}`)
        answered += (await res.arrayBuffer()).byteLength
        expect(hot.size().bytes).toBeLessThanOrEqual(HOT_MAX_BYTES)
      }
      expect(answered).toBeGreaterThan(2 * HOT_MAX_BYTES)
      expect(hot.size().entries).toBeGreaterThan(0)
      expect(await eventually(() => hot.size().entries === 0, HOT_TTL_MS + 2000)).toBe(true)
    } finally {
      await runtime.dispose()
    }
  })
})
